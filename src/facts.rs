//! The facts protocol between a dump and a drill: per table, the row
//! count and an order-independent checksum of every row, recorded at dump
//! time so a drill can prove a restore complete by computing the same
//! facts on the restored database and comparing.
//!
//! Both sides must compute them identically, so the definitions, the
//! method names recorded in the manifest and the readers of the clients'
//! output live here, used by the agent (at dump time) and by `restore` (in
//! a drill).
//!
//! PostgreSQL ([`POSTGRES_COPY_METHOD`]): the facts come from the dump
//! itself. pg_dump reads every table once with `COPY … TO stdout`; the
//! agent reads the archive as it streams past ([`crate::pg_archive`]),
//! counts each table's rows and adds up a 64-bit XXH3 hash of each row's
//! text. So production pays for one scan, not two: the facts of older
//! agents ([`POSTGRES_METHOD`], a server-side `hashtextextended` sum run
//! beside the dump) cost the server 8.6 s of CPU on 9 million order rows
//! against 6.8 s for the whole `pg_dump`. A drill reads every table of the
//! restore back the same way: `COPY` with the dump's own column list (a
//! correct restore may reorder a table's columns: pg_dump recreates an
//! inheritance child with `INHERITS`, so a column its parent gained later
//! moves) and the session settings that shape COPY's text as they were for
//! the dump ([`COPY_TEXT_SETTINGS`]), hashing the rows psql passes on.
//! A parent's facts are its own rows, as pg_dump copies them.
//!
//! Drills still check `v3` and `v2` facts of older backups with their
//! server-side scripts: `v3` lists columns in name order, `v2` in physical
//! order.
//!
//! On MySQL/MariaDB the facts ([`MYSQL_METHOD`]) are `SELECT COUNT(*)` and
//! `CHECKSUM TABLE` per base table, a second scan after the dump: the
//! dump tools write rows as SQL `INSERT` text whose value formatting is
//! theirs (and changes between versions), which a drill could not produce
//! again from a restored table without reimplementing each tool.

use std::collections::BTreeMap;

use crate::schema::{DumpFacts, TableFacts};

/// Name of the facts the agent takes from the dump itself: per table of
/// the archive, its COPY rows counted and each row's text hashed with
/// XXH3-64 (seed 0), the hashes added up as a 128-bit sum ([`CopyDigest`]).
pub const POSTGRES_COPY_METHOD: &str = "postgres-copy-hash-sum-v4";

/// Name of the facts older agents computed on the server, beside the dump
/// (a second scan of every table).
pub const POSTGRES_METHOD: &str = "postgres-row-hash-sum-v3";

/// The method of backups taken before [`POSTGRES_METHOD`]: rows in
/// physical column order.
pub const POSTGRES_METHOD_V2: &str = "postgres-row-hash-sum-v2";

/// psql script printing `schema \t table \t rows \t checksum` per table,
/// then the end marker ([`POSTGRES_METHOD`]). Runs in the current
/// transaction. Column names sort by the `name` type's own "C" collation,
/// the same on every server. `row_security` off: a table whose
/// row-level security policies would hide rows from this role is an
/// error, never facts of the rows it happens to see.
const POSTGRES_FACTS_SCRIPT: &str = r"SET row_security = off;
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 3;
SET bytea_output = 'hex';
SELECT format('SELECT %L, %L, count(*), coalesce(sum(hashtextextended(ROW(%s)::text, 0)::numeric), 0) FROM %I.%I AS t',
    schemaname, tablename,
    (SELECT string_agg(format('t.%I', a.attname), ', ' ORDER BY a.attname)
       FROM pg_attribute a
      WHERE a.attrelid = format('%I.%I', schemaname, tablename)::regclass
        AND a.attnum > 0 AND NOT a.attisdropped),
    schemaname, tablename)
FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY schemaname, tablename
\gexec
\echo --backup-cloud-facts-end--
";

/// The script of [`POSTGRES_METHOD_V2`], for drills of older backups.
const POSTGRES_FACTS_SCRIPT_V2: &str = r"SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 3;
SET bytea_output = 'hex';
SELECT format('SELECT %L, %L, count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) FROM %I.%I AS t', schemaname, tablename, schemaname, tablename)
FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY schemaname, tablename
\gexec
\echo --backup-cloud-facts-end--
";

/// The script that computes PostgreSQL facts of `method`; `None` for a
/// method this build does not know.
pub fn postgres_facts_script(method: &str) -> Option<&'static str> {
    match method {
        POSTGRES_METHOD => Some(POSTGRES_FACTS_SCRIPT),
        POSTGRES_METHOD_V2 => Some(POSTGRES_FACTS_SCRIPT_V2),
        _ => None,
    }
}

/// Name of the MySQL facts: row count and `CHECKSUM TABLE`.
pub const MYSQL_METHOD: &str = "mysql-checksum-table-v1";

/// A MySQL identifier, backquoted.
fn mysql_name(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// SQL listing `database \t table` of every base table in `databases`.
pub fn mysql_tables_query(databases: &[String]) -> String {
    let list = databases
        .iter()
        .map(|d| format!("'{}'", d.replace('\\', "\\\\").replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_schema IN ({list}) AND table_type = 'BASE TABLE' \
         ORDER BY table_schema, table_name"
    )
}

/// Parses the `mysql --batch` output of [`mysql_tables_query`].
pub fn parse_mysql_tables(output: &str) -> Result<Vec<(String, String)>, FactsError> {
    let rows = crate::mysql_batch::rows::<2>(output)
        .ok_or_else(|| FactsError::Unexpected(output.to_owned()))?;
    Ok(rows
        .into_iter()
        .map(|[database, table]| (database, table))
        .collect())
}

/// The script printing, per table in order, its row count and then its
/// `CHECKSUM TABLE` line, in one consistent-snapshot transaction.
pub fn mysql_facts_script(tables: &[(String, String)]) -> String {
    let mut script = String::from("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY;\n");
    for (database, table) in tables {
        let name = format!("{}.{}", mysql_name(database), mysql_name(table));
        script.push_str(&format!(
            "SELECT COUNT(*) FROM {name};\nCHECKSUM TABLE {name};\n"
        ));
    }
    script.push_str("COMMIT;\n");
    script
}

/// Reads the output of [`mysql_facts_script`] for `tables`, naming each
/// fact `(schema, table)` by `names` (the same tables, possibly under
/// other database names).
pub fn parse_mysql_facts(
    names: &[(String, String)],
    output: &str,
) -> Result<Vec<TableFacts>, FactsError> {
    let mut lines = output.lines().filter(|l| !l.is_empty());
    names
        .iter()
        .map(|(schema, table)| {
            let rows = lines.next().ok_or(FactsError::Ended)?;
            let checksum = lines.next().ok_or(FactsError::Ended)?;
            let checksum = checksum
                .rsplit_once('\t')
                .map(|(_, c)| c)
                .filter(|c| !c.is_empty() && *c != "NULL")
                .ok_or_else(|| FactsError::Unexpected(checksum.to_owned()))?;
            Ok(TableFacts {
                schema: schema.clone(),
                table: table.clone(),
                rows: rows
                    .trim()
                    .parse()
                    .map_err(|_| FactsError::Unexpected(rows.to_owned()))?,
                checksum: checksum.to_owned(),
                columns: None,
            })
        })
        .collect()
}

/// The facts could not be collected or read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("cannot run the database client for the table facts: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Archive(#[from] crate::pg_archive::ArchiveError),
    #[error("the database client ended before the table facts were complete")]
    Ended,
    #[error("the database client printed a table fact this agent does not understand: {0:?}")]
    Unexpected(String),
    /// The client's own words (its stderr, trimmed).
    #[error("{0}")]
    Failed(String),
}

/// Parses one `schema \t table \t rows \t checksum` line.
pub fn parse_fact(line: &str) -> Result<TableFacts, FactsError> {
    let bad = || FactsError::Unexpected(line.to_owned());
    let mut fields = line.split('\t');
    let (Some(schema), Some(table), Some(rows), Some(checksum), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(bad());
    };
    Ok(TableFacts {
        schema: schema.to_owned(),
        table: table.to_owned(),
        rows: rows.parse().map_err(|_| bad())?,
        checksum: checksum.to_owned(),
        columns: None,
    })
}

/// Row count and order-independent checksum of one table's COPY text
/// ([`POSTGRES_COPY_METHOD`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyDigest {
    pub rows: u64,
    /// The XXH3-64 hashes of the rows, added up (wrapping at 2^128, which
    /// no table reaches: 2^64 rows of at most 2^64 each).
    sum: u128,
}

impl CopyDigest {
    /// Counts one row: its text without the line end.
    pub fn add_row(&mut self, row: &[u8]) {
        self.rows += 1;
        self.sum = self
            .sum
            .wrapping_add(u128::from(xxhash_rust::xxh3::xxh3_64(row)));
    }

    /// The checksum as the manifest records it: lower-case hex.
    pub fn checksum(&self) -> String {
        format!("{:x}", self.sum)
    }
}

/// Cuts a byte stream into lines however it arrives.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Hands every line `bytes` completes to `line`, without its `\n`.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            if self.partial.is_empty() {
                line(&bytes[..end]);
            } else {
                self.partial.extend_from_slice(&bytes[..end]);
                line(&self.partial);
                self.partial.clear();
            }
            bytes = &bytes[end + 1..];
        }
        self.partial.extend_from_slice(bytes);
    }

    /// Whether the stream stopped inside a line.
    pub fn in_line(&self) -> bool {
        !self.partial.is_empty()
    }
}

/// One table's COPY text as pg_dump archives it, digested row by row as
/// it arrives: the rows, then COPY's end marker `\.` (which no row can
/// be: a row's backslash starts an escape, `\\`, `\N`, `\t`, ...) and
/// empty lines. (A table without columns has an empty line per row, all
/// before the marker.)
#[derive(Debug, Default)]
pub struct CopyRows {
    lines: Lines,
    digest: CopyDigest,
    ended: bool,
    /// A line with text after the end marker.
    stray: bool,
}

impl CopyRows {
    pub fn feed(&mut self, bytes: &[u8]) {
        let (digest, ended, stray) = (&mut self.digest, &mut self.ended, &mut self.stray);
        self.lines.feed(bytes, |line| {
            if *ended {
                *stray |= !line.is_empty();
            } else if line == b"\\." {
                *ended = true;
            } else {
                digest.add_row(line);
            }
        });
    }

    /// The digest; an error if the text stopped inside a row or went on
    /// after its end.
    pub fn finish(self) -> Result<CopyDigest, FactsError> {
        if self.lines.in_line() || self.stray {
            return Err(FactsError::Unexpected(
                "COPY data that ends inside a row or goes on after its end".to_owned(),
            ));
        }
        Ok(self.digest)
    }
}

/// The session settings besides pg_dump's own (`DateStyle = ISO`,
/// `IntervalStyle = postgres`, `extra_float_digits = 3`) that change
/// COPY's text of a value, recorded with the facts as the dump had them
/// and set again by a drill. `client_encoding` comes from the archive.
pub const COPY_TEXT_SETTINGS: [&str; 3] = ["TimeZone", "bytea_output", "client_encoding"];

/// What a drill's script prints after each table's rows: a line no COPY
/// text can hold (a row's backslash starts an escape, never `\.` then a
/// letter), printed by `\echo`.
const TABLE_END: &[u8] = b"\\.backup-cloud-table-end";

fn sql_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The psql script with which a drill reads every table of `facts` back
/// ([`POSTGRES_COPY_METHOD`]): pg_dump's session settings and the recorded
/// ones, then per table `COPY schema.table (dump's columns) TO STDOUT` and
/// the end line. `None` if a table's facts lack their columns.
pub fn postgres_copy_script(facts: &DumpFacts) -> Option<String> {
    let mut script = String::from(
        "SET row_security = off;\nSET DateStyle = ISO;\nSET IntervalStyle = postgres;\n\
         SET extra_float_digits = 3;\n",
    );
    for name in COPY_TEXT_SETTINGS {
        if let Some(value) = facts.settings.get(name) {
            script.push_str(&format!("SET {name} = {};\n", sql_literal(value)));
        }
    }
    for table in &facts.tables {
        let columns: Vec<String> = table
            .columns
            .as_ref()?
            .iter()
            .map(|c| sql_identifier(c))
            .collect();
        let list = if columns.is_empty() {
            String::new()
        } else {
            format!(" ({})", columns.join(", "))
        };
        script.push_str(&format!(
            "COPY {}.{}{list} TO STDOUT;\n\\echo '{}'\n",
            sql_identifier(&table.schema),
            sql_identifier(&table.table),
            String::from_utf8_lossy(TABLE_END).replace('\\', "\\\\"),
        ));
    }
    Some(script)
}

/// Digests the output of [`postgres_copy_script`] as it arrives, table by
/// table in the order of the facts.
#[derive(Debug, Default)]
pub struct CopyScriptOutput {
    lines: Lines,
    current: CopyDigest,
    done: Vec<CopyDigest>,
}

impl CopyScriptOutput {
    pub fn feed(&mut self, bytes: &[u8]) {
        let (current, done) = (&mut self.current, &mut self.done);
        self.lines.feed(bytes, |line| {
            if line == TABLE_END {
                done.push(std::mem::take(current));
            } else {
                current.add_row(line);
            }
        });
    }

    /// The facts found, named after `recorded` (the same tables, in order);
    /// an error if the output stopped short of them.
    pub fn finish(self, recorded: &[TableFacts]) -> Result<Vec<TableFacts>, FactsError> {
        if self.lines.in_line() || self.current != CopyDigest::default() {
            return Err(FactsError::Ended);
        }
        if self.done.len() != recorded.len() {
            return Err(FactsError::Ended);
        }
        Ok(recorded
            .iter()
            .zip(self.done)
            .map(|(table, digest)| TableFacts {
                rows: digest.rows,
                checksum: digest.checksum(),
                ..table.clone()
            })
            .collect())
    }
}

/// The facts of a PostgreSQL archive's tables, as recorded.
pub fn copy_facts(
    tables: impl IntoIterator<Item = (String, String, Vec<String>, CopyDigest)>,
    settings: BTreeMap<String, String>,
) -> DumpFacts {
    DumpFacts {
        method: POSTGRES_COPY_METHOD.to_owned(),
        snapshot: None,
        settings,
        tables: tables
            .into_iter()
            .map(|(schema, table, columns, digest)| TableFacts {
                schema,
                table,
                rows: digest.rows,
                checksum: digest.checksum(),
                columns: Some(columns),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_are_counted_up_to_the_end_marker_however_they_arrive() {
        let text = b"1\tx\n2\t\\N\n3\ta\\\\b\n\\.\n\n\n";
        let mut whole = CopyRows::default();
        whole.feed(text);
        let whole = whole.finish().unwrap();
        assert_eq!(whole.rows, 3);
        for cut in 1..text.len() {
            let mut rows = CopyRows::default();
            for piece in text.chunks(cut) {
                rows.feed(piece);
            }
            assert_eq!(rows.finish().unwrap(), whole, "cut {cut}");
        }
        // order does not matter; content does
        let mut reordered = CopyRows::default();
        reordered.feed(b"3\ta\\\\b\n1\tx\n2\t\\N\n");
        assert_eq!(reordered.finish().unwrap(), whole);
        let mut changed = CopyRows::default();
        changed.feed(b"1\tx\n2\t\\N\n3\ta\\\\c\n");
        assert_ne!(changed.finish().unwrap().checksum(), whole.checksum());
        // a table without columns: an empty line per row
        let mut empty_rows = CopyRows::default();
        empty_rows.feed(b"\n\n\\.\n\n\n");
        assert_eq!(empty_rows.finish().unwrap().rows, 2);
        for broken in [&b"1\tx"[..], b"1\n\\.\n2\n"] {
            let mut rows = CopyRows::default();
            rows.feed(broken);
            assert!(rows.finish().is_err());
        }
    }

    #[test]
    fn a_drill_reads_tables_back_with_the_dumps_columns_and_settings() {
        let digest = |text: &[u8]| {
            let mut rows = CopyRows::default();
            rows.feed(text);
            rows.finish().unwrap()
        };
        let facts = copy_facts(
            [
                (
                    "public".to_owned(),
                    "Odd \"name".to_owned(),
                    vec!["b".to_owned(), "a".to_owned()],
                    digest(b"1\t2\n"),
                ),
                ("s".to_owned(), "nocol".to_owned(), vec![], digest(b"\n")),
            ],
            BTreeMap::from([("TimeZone".to_owned(), "Europe/Paris'; DROP".to_owned())]),
        );
        let script = postgres_copy_script(&facts).unwrap();
        assert!(
            script.contains("SET TimeZone = 'Europe/Paris''; DROP';\n"),
            "{script}"
        );
        assert!(
            script.contains("COPY \"public\".\"Odd \"\"name\" (\"b\", \"a\") TO STDOUT;\n"),
            "{script}"
        );
        assert!(
            script.contains("COPY \"s\".\"nocol\" TO STDOUT;\n"),
            "{script}"
        );
        assert!(
            script.contains("\\echo '\\\\.backup-cloud-table-end'\n"),
            "{script}"
        );
        // psql prints the rows, then the marker line, per table
        let printed = b"1\t2\n\\.backup-cloud-table-end\n\n\\.backup-cloud-table-end\n";
        for cut in [1, 5, printed.len()] {
            let mut output = CopyScriptOutput::default();
            for piece in printed.chunks(cut) {
                output.feed(piece);
            }
            assert_eq!(output.finish(&facts.tables).unwrap(), facts.tables);
        }
        let mut short = CopyScriptOutput::default();
        short.feed(b"1\t2\n\\.backup-cloud-table-end\n");
        assert!(short.finish(&facts.tables).is_err());
        let mut without_columns = facts.clone();
        without_columns.tables[0].columns = None;
        assert!(postgres_copy_script(&without_columns).is_none());
    }

    #[test]
    fn fact_lines_parse_and_garbage_is_refused() {
        let fact = parse_fact("public\torders\t40000\t-123456789012").unwrap();
        assert_eq!(fact.table, "orders");
        assert_eq!(fact.rows, 40_000);
        assert_eq!(fact.checksum, "-123456789012");
        assert!(parse_fact("public\torders\tmany\t1").is_err());
        assert!(parse_fact("public\torders\t1").is_err());
        assert!(parse_fact("a\tb\t1\t2\t3").is_err());
    }

    #[test]
    fn mysql_facts_pair_counts_with_checksums() {
        let tables = parse_mysql_tables("shop\torders\nshop\tempty\n").unwrap();
        let script = mysql_facts_script(&tables);
        assert!(
            script.contains("CHECKSUM TABLE `shop`.`orders`;"),
            "{script}"
        );
        assert!(mysql_tables_query(&["it's".into()]).contains("IN ('it''s')"));
        let names = [
            ("drill".to_owned(), "orders".to_owned()),
            ("drill".to_owned(), "empty".to_owned()),
        ];
        let facts = parse_mysql_facts(&names, "3\nshop.orders\t12345\n0\nshop.empty\t0\n").unwrap();
        assert_eq!(facts[0].schema, "drill");
        assert_eq!((facts[0].rows, facts[0].checksum.as_str()), (3, "12345"));
        assert_eq!((facts[1].rows, facts[1].checksum.as_str()), (0, "0"));
        assert!(parse_mysql_facts(&names, "3\nshop.orders\t12345\n").is_err());
        assert!(parse_mysql_facts(&names[..1], "3\nshop.orders\tNULL\n").is_err());
    }
}
