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

/// One line of `SHOW GRANTS`: a grant, or (MySQL 8 with
/// `partial_revokes`) a revocation carved out of a global grant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// The user or role it is `TO`/`FROM`, as printed.
    grantee: String,
    privileges: Vec<String>,
    level: Level,
    revoke: bool,
}

impl Line {
    fn has(&self, privilege: &str) -> bool {
        self.privileges
            .iter()
            .any(|p| p == privilege || p == "ALL PRIVILEGES" || p == "ALL")
    }
}

/// The privileges one role holds, as `SHOW GRANTS` (the user's own and
/// those of its enabled roles) listed them.
#[derive(Debug, Default)]
pub struct Grants(Vec<Line>);

impl Grants {
    /// Reads `SHOW GRANTS`' lines; lines that are neither `GRANT … ON …
    /// TO` nor `REVOKE … ON … FROM` (role memberships, `SET DEFAULT
    /// ROLE`) grant nothing here.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Grants {
        Grants(lines.into_iter().filter_map(parse_line).collect())
    }

    fn grants(&self) -> impl Iterator<Item = &Line> {
        self.0.iter().filter(|line| !line.revoke)
    }

    fn holds(&self, privilege: &str, applies: impl Fn(&Level) -> bool) -> bool {
        self.grants()
            .any(|line| applies(&line.level) && line.has(privilege))
    }

    /// Whether one of the grantees holds `privilege` on `database`. As
    /// the server decides: a global grant unless revoked for exactly that
    /// database; else the most specific database-level row that matches,
    /// alone (rows of one grantee are not added together).
    fn holds_on_database(&self, privilege: &str, database: &str) -> bool {
        let grantees: std::collections::BTreeSet<&str> =
            self.0.iter().map(|line| line.grantee.as_str()).collect();
        grantees.into_iter().any(|grantee| {
            let of_grantee = || self.0.iter().filter(move |line| line.grantee == grantee);
            // a partial revoke names one database, wildcards or not
            let revoked = of_grantee().any(|line| {
                line.revoke
                    && line.has(privilege)
                    && matches!(&line.level, Level::Database(name)
                        if *name == database || *name == escape_like(database))
            });
            let global = of_grantee()
                .any(|line| !line.revoke && line.level == Level::Global && line.has(privilege));
            if global && !revoked {
                return true;
            }
            of_grantee()
                .filter(|line| !line.revoke)
                .filter_map(|line| match &line.level {
                    Level::Database(pattern) if like(pattern, database) => {
                        Some((specificity(pattern), line))
                    }
                    _ => None,
                })
                .max_by_key(|(specificity, _)| *specificity)
                .is_some_and(|(_, line)| line.has(privilege))
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

/// `GRANT <privileges> ON <level> TO <grantee> …` or `REVOKE <privileges>
/// ON <level> FROM <grantee>` → one [`Line`].
fn parse_line(line: &str) -> Option<Line> {
    let line = line.trim();
    let (rest, revoke, to) = match (line.strip_prefix("GRANT "), line.strip_prefix("REVOKE ")) {
        (Some(rest), _) => (rest, false, " TO "),
        (None, Some(rest)) => (rest, true, " FROM "),
        (None, None) => return None,
    };
    let on = find_outside_quotes(rest, " ON ")?;
    let privileges = split_outside_parentheses(&rest[..on])
        .into_iter()
        // a column list grants on some columns only
        .filter(|p| !p.contains('('))
        .map(|p| p.trim().to_ascii_uppercase())
        .collect();
    let target = &rest[on + " ON ".len()..];
    let at = find_outside_quotes(target, to)?;
    let grantee = &target[at + to.len()..];
    let grantee = match find_outside_quotes(grantee, " ") {
        Some(end) => &grantee[..end],
        None => grantee,
    };
    Some(Line {
        grantee: grantee.to_owned(),
        privileges,
        level: parse_level(&target[..at]),
        revoke,
    })
}

/// `a, b (x, y),c` → `a`, `b (x, y)`, `c`: MySQL 8 joins dynamic
/// privileges with a bare comma, and column lists hold commas.
fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut in_quotes) = (0u32, 0, false);
    for (at, c) in text.char_indices() {
        match c {
            '`' => in_quotes = !in_quotes,
            '(' if !in_quotes => depth += 1,
            ')' if !in_quotes => depth = depth.saturating_sub(1),
            ',' if !in_quotes && depth == 0 => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// How specific a database pattern is, as the server orders them: an
/// exact name first, then the longer literal start before a wildcard.
fn specificity(pattern: &str) -> (bool, usize) {
    let mut literal = 0;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => return (false, literal),
            '\\' => {
                chars.next();
                literal += 1;
            }
            _ => literal += 1,
        }
    }
    (true, literal)
}

/// `name` as a database-level grant pattern matching only itself.
fn escape_like(name: &str) -> String {
    let mut pattern = String::new();
    for c in name.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
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
/// run, `_` any one character, `\` escapes the next. Table-driven, so
/// no pattern can make it backtrack for long.
fn like(pattern: &str, name: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => Token::Any,
            '_' => Token::One,
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let name: Vec<char> = name.chars().collect();
    // matched[j]: the tokens so far match the first j characters
    let mut matched = vec![false; name.len() + 1];
    matched[0] = true;
    for token in tokens {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            next[j] = match token {
                Token::Any => matched[j] || (j > 0 && next[j - 1]),
                Token::One => j > 0 && matched[j - 1],
                Token::Char(c) => j > 0 && matched[j - 1] && name[j - 1] == c,
            };
        }
        matched = next;
    }
    matched[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lacking(grants: &str, databases: &[&str]) -> Vec<(Option<String>, Vec<String>)> {
        let databases: Vec<String> = databases.iter().map(|d| d.to_string()).collect();
        Grants::parse(grants.lines()).lacking(&databases)
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
    fn a_partial_revoke_takes_a_privilege_back_from_one_database() {
        // MySQL 8 with partial_revokes
        let grants = "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON *.* TO `u`@`%`\n\
                      REVOKE TRIGGER ON `app`.* FROM `u`@`%`";
        assert_eq!(
            lacking(grants, &["app", "crm"]),
            vec![(
                Some("app".to_owned()),
                vec!["TRIGGER (its triggers)".to_owned()]
            )]
        );
    }

    #[test]
    fn only_the_most_specific_database_row_counts() {
        // the server applies the exact row alone, not both rows
        let grants = "GRANT SELECT ON *.* TO `u`@`%`\n\
                      GRANT SELECT, SHOW VIEW ON `shop\\_eu`.* TO `u`@`%`\n\
                      GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `shop\\_%`.* TO `u`@`%`";
        assert_eq!(lacking(grants, &["shop_us"]), vec![]);
        assert_eq!(
            lacking(grants, &["shop_eu"]),
            vec![(
                Some("shop_eu".to_owned()),
                vec![
                    "TRIGGER (its triggers)".to_owned(),
                    "EVENT (its events)".to_owned()
                ]
            )]
        );
        // but a role's row is added to the user's own
        let with_role = format!("{grants}\nGRANT TRIGGER, EVENT ON `shop\\_eu`.* TO `r`");
        assert_eq!(lacking(&with_role, &["shop_eu"]), vec![]);
    }

    #[test]
    fn dynamic_privileges_joined_by_a_bare_comma_are_read() {
        // MySQL 8's SHOW GRANTS
        let grants = "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON *.* TO `u`@`%`\n\
                      GRANT BACKUP_ADMIN,SHOW_ROUTINE ON *.* TO `u`@`%`";
        let parsed = Grants::parse(grants.lines());
        assert!(parsed.holds("SHOW_ROUTINE", |level| *level == Level::Global));
        assert_eq!(
            split_outside_parentheses("SELECT (`a,b`, c),INSERT"),
            vec!["SELECT (`a,b`, c)", "INSERT"]
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
        // no exponential backtracking: 64 wildcards against 64 characters
        let pattern = "%a".repeat(32) + "b";
        assert!(!like(&pattern, &"a".repeat(64)));
        assert!(like("a\\%b", "a%b") && !like("a\\%b", "axb"));
    }
}
