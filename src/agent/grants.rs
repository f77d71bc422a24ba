//! What a MySQL/MariaDB backup role can see, read from its `SHOW GRANTS`.
//!
//! The server hides from a role every table, trigger, event and routine
//! it holds no privilege on, and the dump tools then leave them out and
//! exit 0: tried on MariaDB 10.11 with a role granted `SELECT, SHOW VIEW,
//! EVENT` on a database, mysqldump and mydumper both dumped it without its
//! trigger, procedure and function, and said nothing. What a role cannot
//! see cannot be accounted for against the catalog either, so the agent
//! checks the grants before dumping. `information_schema`'s privilege
//! views leave out what MariaDB roles grant; `SHOW GRANTS` lists both.

/// Privileges a role must hold on every dumped database (globally or on
/// the database), each with what the server hides without it.
const DATABASE_PRIVILEGES: [(&str, &str); 4] = [
    ("SELECT", "its tables"),
    ("SHOW VIEW", "its views"),
    ("TRIGGER", "its triggers"),
    ("EVENT", "its events"),
];

/// Privileges that each let a role read every routine's definition:
/// global `SELECT` or `SELECT` on `mysql.proc` (MariaDB's documentation
/// of SHOW CREATE PROCEDURE: the owner, or SELECT on mysql.proc), global
/// `SHOW_ROUTINE` (MySQL 8.0.20 and later) or `SHOW CREATE ROUTINE`
/// (MariaDB 11.3 and later).
const ROUTINE_PRIVILEGES: [&str; 2] = ["SHOW_ROUTINE", "SHOW CREATE ROUTINE"];

/// Where one `GRANT … ON <level>` applies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    /// `*.*`
    Global,
    /// `` `db`.* ``: a pattern in which `%` and `_` are wildcards unless
    /// escaped with `\`.
    Database(String),
    /// `` `db`.`table` ``
    Table { database: String, table: String },
    /// Routines, proxies, roles, column lists: nothing that lets a role
    /// see a whole database.
    Other,
}

/// The privileges one role holds, as `SHOW GRANTS` (the user's own and
/// those of its enabled roles) listed them.
#[derive(Debug, Default)]
pub struct Grants(Vec<(Vec<String>, Level)>);

impl Grants {
    /// Reads `SHOW GRANTS`' lines; lines that are not `GRANT … ON … TO`
    /// (role memberships, `SET DEFAULT ROLE`) grant nothing here.
    pub fn parse(show_grants: &str) -> Grants {
        Grants(show_grants.lines().filter_map(parse_line).collect())
    }

    fn holds(&self, privilege: &str, applies: impl Fn(&Level) -> bool) -> bool {
        self.0.iter().any(|(privileges, level)| {
            applies(level)
                && privileges
                    .iter()
                    .any(|p| p == privilege || p == "ALL PRIVILEGES" || p == "ALL")
        })
    }

    fn holds_on_database(&self, privilege: &str, database: &str) -> bool {
        self.holds(privilege, |level| match level {
            Level::Global => true,
            Level::Database(pattern) => like(pattern, database),
            _ => false,
        })
    }

    /// What the role lacks to dump `databases` whole: `(database, missing
    /// privileges with what goes missing)`, with `None` as the database
    /// for routine definitions, which are granted server-wide.
    pub fn lacking(&self, databases: &[String]) -> Vec<(Option<String>, Vec<String>)> {
        let mut lacking: Vec<(Option<String>, Vec<String>)> = databases
            .iter()
            .filter_map(|database| {
                let missing: Vec<String> = DATABASE_PRIVILEGES
                    .iter()
                    .filter(|(privilege, _)| !self.holds_on_database(privilege, database))
                    .map(|(privilege, hidden)| format!("{privilege} ({hidden})"))
                    .collect();
                (!missing.is_empty()).then(|| (Some(database.clone()), missing))
            })
            .collect();
        let routines = self.holds("SELECT", |level| match level {
            Level::Global => true,
            Level::Database(pattern) => like(pattern, "mysql"),
            Level::Table { database, table } => database == "mysql" && table == "proc",
            Level::Other => false,
        }) || ROUTINE_PRIVILEGES
            .iter()
            .any(|privilege| self.holds(privilege, |level| *level == Level::Global));
        if !routines {
            lacking.push((
                None,
                vec!["SELECT on mysql.proc (every routine's definition)".to_owned()],
            ));
        }
        lacking
    }
}

/// `GRANT <privileges> ON <level> TO …` → its privileges and level.
fn parse_line(line: &str) -> Option<(Vec<String>, Level)> {
    let rest = line.trim().strip_prefix("GRANT ")?;
    let on = find_outside_quotes(rest, " ON ")?;
    let privileges = rest[..on]
        .split(", ")
        .filter(|p| !p.contains('('))
        .map(|p| p.trim().to_ascii_uppercase())
        .collect();
    let target = &rest[on + " ON ".len()..];
    let to = find_outside_quotes(target, " TO ")?;
    Some((privileges, parse_level(&target[..to])))
}

fn parse_level(target: &str) -> Level {
    if target == "*.*" {
        return Level::Global;
    }
    let Some((database, rest)) = quoted(target) else {
        return Level::Other;
    };
    match rest.strip_prefix('.') {
        Some("*") => Level::Database(database),
        Some(table) => match quoted(table) {
            Some((table, "")) => Level::Table { database, table },
            _ => Level::Other,
        },
        None => Level::Other,
    }
}

/// A backquoted identifier at the start of `text` (doubled backquotes
/// inside), and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut rest = text.strip_prefix('`')?;
    let mut name = String::new();
    loop {
        let end = rest.find('`')?;
        name.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('`') {
            Some(after) => {
                name.push('`');
                rest = after;
            }
            None => return Some((name, rest)),
        }
    }
}

/// The byte offset of `needle` in `text` outside backquoted identifiers.
fn find_outside_quotes(text: &str, needle: &str) -> Option<usize> {
    let mut in_quotes = false;
    for (at, c) in text.char_indices() {
        if c == '`' {
            in_quotes = !in_quotes;
        } else if !in_quotes && text[at..].starts_with(needle) {
            return Some(at);
        }
    }
    None
}

/// Whether `name` matches a database-level grant's `pattern`: `%` any
/// run, `_` any one character, `\` escapes the next.
fn like(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    like_from(&pattern, &name)
}

fn like_from(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('%', rest)) => (0..=name.len()).any(|skip| like_from(rest, &name[skip..])),
        Some(('_', rest)) => !name.is_empty() && like_from(rest, &name[1..]),
        Some(('\\', [escaped, rest @ ..])) => {
            name.first() == Some(escaped) && like_from(rest, &name[1..])
        }
        Some((c, rest)) => name.first() == Some(c) && like_from(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lacking(grants: &str, databases: &[&str]) -> Vec<(Option<String>, Vec<String>)> {
        let databases: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
        Grants::parse(grants).lacking(&databases)
    }

    #[test]
    fn global_read_privileges_see_everything() {
        let grants =
            "GRANT SELECT, RELOAD, PROCESS, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON *.* \
                      TO `backup`@`%` IDENTIFIED BY PASSWORD '*8AE2'";
        assert!(lacking(grants, &["shop", "crm"]).is_empty());
        assert!(lacking("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`", &["x"]).is_empty());
    }

    #[test]
    fn privileges_through_a_role_count_and_each_gap_is_named() {
        // MariaDB 10.11's SHOW GRANTS for a user whose default role holds
        // what it may read
        let grants = "GRANT `bkrole` TO `lim`@`%`\n\
                      GRANT USAGE ON *.* TO `lim`@`%` IDENTIFIED BY PASSWORD '*F47C'\n\
                      GRANT USAGE ON *.* TO `bkrole`\n\
                      GRANT SELECT, SHOW VIEW, EVENT, TRIGGER ON `exp1`.* TO `bkrole`\n\
                      GRANT SELECT ON `mysql`.`proc` TO `bkrole`\n\
                      SET DEFAULT ROLE `bkrole` FOR `lim`@`%`";
        assert!(lacking(grants, &["exp1"]).is_empty());
        assert_eq!(
            lacking(grants, &["exp2"]),
            vec![(
                Some("exp2".to_owned()),
                vec![
                    "SELECT (its tables)".to_owned(),
                    "SHOW VIEW (its views)".to_owned(),
                    "TRIGGER (its triggers)".to_owned(),
                    "EVENT (its events)".to_owned()
                ]
            )]
        );
    }

    #[test]
    fn routines_need_a_server_wide_way_to_read_them() {
        let database = "GRANT SELECT, SHOW VIEW, EVENT, TRIGGER ON `app`.* TO `u`@`%`";
        let missing = lacking(database, &["app"]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, None);
        for routines in [
            "GRANT SELECT ON `mysql`.* TO `u`@`%`",
            "GRANT SELECT ON `mysql`.`proc` TO `u`@`%`",
            "GRANT SHOW_ROUTINE ON *.* TO `u`@`%`",
        ] {
            assert!(
                lacking(&format!("{database}\n{routines}"), &["app"]).is_empty(),
                "{routines}"
            );
        }
        // a table-level grant on another table, or EXECUTE on one routine,
        // does not do
        for not_routines in [
            "GRANT SELECT ON `mysql`.`user` TO `u`@`%`",
            "GRANT EXECUTE ON PROCEDURE `app`.`p` TO `u`@`%`",
        ] {
            assert_eq!(
                lacking(&format!("{database}\n{not_routines}"), &["app"]).len(),
                1,
                "{not_routines}"
            );
        }
    }

    #[test]
    fn table_and_column_grants_do_not_cover_a_database() {
        let grants = "GRANT SELECT, SHOW VIEW, EVENT, TRIGGER ON `app`.`a` TO `u`@`%`\n\
                      GRANT SELECT (`id`), INSERT ON `app`.* TO `u`@`%`\n\
                      GRANT SELECT ON *.* TO `u`@`%`";
        let missing = lacking(grants, &["app"]);
        assert_eq!(
            missing,
            vec![(
                Some("app".to_owned()),
                vec![
                    "SHOW VIEW (its views)".to_owned(),
                    "TRIGGER (its triggers)".to_owned(),
                    "EVENT (its events)".to_owned()
                ]
            )]
        );
    }

    #[test]
    fn database_patterns_match_as_the_server_does() {
        let grants = "GRANT SELECT, SHOW VIEW, EVENT, TRIGGER ON `shop\\_%`.* TO `u`@`%`\n\
                      GRANT SELECT, SHOW VIEW, EVENT, TRIGGER ON `a``b c. TO x`.* TO `u`@`%`\n\
                      GRANT SELECT ON *.* TO `u`@`%`";
        assert!(lacking(grants, &["shop_eu", "shop_", "a`b c. TO x"]).is_empty());
        // the escaped `_` is literal
        assert_eq!(lacking(grants, &["shopXeu"]).len(), 1);
        assert!(like("a_c", "abc") && !like("a_c", "ac") && like("%", ""));
        assert!(like("x%y", "xaaay") && !like("x%y", "xaaa"));
    }
}
