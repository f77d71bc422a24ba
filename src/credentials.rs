//! The files that hand a database password to the stock client tools, so
//! that it never reaches a command line or the environment.
//!
//! The agent writes one for the dump tools and the restore commands one
//! for the restore tools; both escape the password the same way, here.
//! Neither format can hold a line break, so such a password is refused
//! rather than cut short.

/// The password holds a line break, which neither file format can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the password contains a line break, which a password file cannot hold")]
pub struct LineBreak;

/// A libpq password file (`PGPASSFILE`) matching any server, database and
/// user: the file is private to one job or one tool, so the wildcards
/// cannot pick up a wrong password. `\` and `:` are escaped as libpq reads
/// them.
pub fn pgpass(password: &str) -> Result<String, LineBreak> {
    refuse_line_breaks(password)?;
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    Ok(format!("*:*:*:*:{escaped}\n"))
}

/// A MySQL option file giving `password` to the programs reading each of
/// `groups` (`client` is read by mysql, mysqldump and mydumper alike;
/// myloader reads `myloader`). The value is double-quoted, with `\` and
/// `"` escaped.
pub fn mysql_options(password: &str, groups: &[&str]) -> Result<String, LineBreak> {
    refuse_line_breaks(password)?;
    let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(groups
        .iter()
        .map(|group| format!("[{group}]\npassword=\"{escaped}\"\n"))
        .collect())
}

/// Writes `data` to `path`, readable by its owner only (created so, or
/// replaced), and syncs it: session keys, client password files.
pub fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

fn refuse_line_breaks(password: &str) -> Result<(), LineBreak> {
    if password.contains(['\n', '\r']) {
        Err(LineBreak)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_escaped_for_each_format() {
        assert_eq!(pgpass(r"a:b\c").unwrap(), "*:*:*:*:a\\:b\\\\c\n");
        assert_eq!(
            mysql_options(r#"a"b\c"#, &["client", "myloader"]).unwrap(),
            "[client]\npassword=\"a\\\"b\\\\c\"\n[myloader]\npassword=\"a\\\"b\\\\c\"\n"
        );
        for broken in ["a\nb", "a\rb"] {
            assert_eq!(pgpass(broken), Err(LineBreak));
            assert_eq!(mysql_options(broken, &["client"]), Err(LineBreak));
        }
    }
}
