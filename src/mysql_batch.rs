//! Reading `mysql --batch` answers, as both the agent (its pre-dump
//! checks) and the drill (the tables a restore holds) read them.
//!
//! Rows are tab-separated, and the batch format escapes the tabs, line
//! breaks, backslashes and NULs that values (names included) may hold:
//! undone here, so a name comes back as the server holds it.

/// The rows of a `mysql --batch` answer, each of `N` tab-separated
/// fields with the batch format's escapes undone; `None` if a row has
/// another number of fields.
pub fn rows<const N: usize>(output: &str) -> Option<Vec<[String; N]>> {
    output
        .lines()
        .map(|line| {
            let fields: Vec<String> = line.split('\t').map(unescape_batch).collect();
            <[String; N]>::try_from(fields).ok()
        })
        .collect()
}

/// Undoes `mysql --batch`'s escapes: `\\`, `\t`, `\n`, `\0`.
fn unescape_batch(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_rows_are_unescaped_and_must_be_whole() {
        let parsed: Vec<[String; 2]> = rows("a\tb\\tc\nline\\nbreak\tback\\\\slash\n\t\n").unwrap();
        assert_eq!(
            parsed,
            vec![
                ["a".to_owned(), "b\tc".to_owned()],
                ["line\nbreak".to_owned(), "back\\slash".to_owned()],
                [String::new(), String::new()]
            ]
        );
        assert_eq!(rows::<2>("a\tb\nbroken\n"), None);
    }
}
