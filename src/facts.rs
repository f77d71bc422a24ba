//! The facts protocol between a dump and a drill: per table, the row
//! count and an order-independent checksum of every row, recorded at dump
//! time so a drill can prove a restore complete by computing the same
//! facts on the restored database and comparing.
//!
//! Both sides must compute them identically, so the scripts, the method
//! names recorded in the manifest and the parsers of the clients' output
//! live here, used by the agent (at dump time) and by `restore` (in a
//! drill).
//!
//! The checksum adds up a 64-bit hash of each row's text form (with every
//! output setting that changes that text pinned), so it needs no sort and
//! streams through any table size. The hash is PostgreSQL's own
//! `hashtextextended` (seed 0), which hash partitioning keeps stable across
//! versions; on little-endian servers (every x86 and ARM one) it is the
//! same everywhere. It replaced MD5 (`postgres-row-md5-sum-v1`), which cost
//! more than the dump itself: on 9 million order rows, single-threaded,
//! 18.3 s against 8.6 s for the hash, 7.6 s of that turning rows into text,
//! and 6.8 s for the whole `pg_dump`.
//!
//! A row's text lists its columns in name order (`v3`), not in the
//! table's physical order (`v2`): a correct restore may change the
//! physical order (pg_dump recreates an inheritance child with `INHERITS`,
//! so a column its parent gained later moves), and the facts describe the
//! data, not its layout. A parent's facts cover its children's rows too,
//! as a plain `SELECT` from it does. Drills still check `v2` facts of
//! older backups with the `v2` script.
//!
//! On MySQL/MariaDB the facts ([`MYSQL_METHOD`]) are `SELECT COUNT(*)` and
//! `CHECKSUM TABLE` per base table.

use crate::schema::TableFacts;

/// Name of the checksum definition, recorded with the facts.
pub const POSTGRES_METHOD: &str = "postgres-row-hash-sum-v3";

/// The method of backups taken before [`POSTGRES_METHOD`]: rows in
/// physical column order.
pub const POSTGRES_METHOD_V2: &str = "postgres-row-hash-sum-v2";

/// What marks the end of the facts in psql's output.
pub const END_MARKER: &str = "--backup-cloud-facts-end--";

/// psql script printing `schema \t table \t rows \t checksum` per table,
/// then the end marker ([`POSTGRES_METHOD`]). Runs in the current
/// transaction. Column names sort by the `name` type's own "C" collation,
/// the same on every server. `row_security` off: a table whose
/// row-level security policies would hide rows from this role is an
/// error, never facts of the rows it happens to see.
pub const POSTGRES_FACTS_SCRIPT: &str = r"SET row_security = off;
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
            })
        })
        .collect()
}

/// The facts could not be collected or read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("cannot run the database client for the table facts: {0}")]
    Io(#[from] std::io::Error),
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
