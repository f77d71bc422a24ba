//! Reading pg_dump's own archive format as the agent streams it, so the
//! table facts come from the dump itself: production pays for one scan of
//! its tables (pg_dump's), not a second one to checksum them.
//!
//! The agent asks pg_dump for uncompressed archives (`--compress=0`; zstd
//! runs in the agent), so every table's data in them is the COPY text the
//! server sent, one row per line. Two shapes carry it:
//!
//! - the custom format (`-Fc`) on a pipe: a header, the table of contents
//!   (TOC), then one data block per table: a block type byte, the entry's
//!   dump id, and length-prefixed chunks ending in a zero length;
//! - the directory format (`-Fd`): the same header and TOC in `toc.dat`,
//!   each entry naming the file (`<dump id>.dat`) that holds its data.
//!
//! Integers are a sign byte and then `int size` bytes, least significant
//! first; strings are an integer length (negative: absent) and the bytes.
//! The layout is pg_dump's `WriteHead`/`WriteToc`/`WriteDataChunks` in
//! `src/bin/pg_dump/pg_backup_archiver.c` and `pg_backup_custom.c`, for
//! archive versions 1.12 (PostgreSQL 9.6) to 1.16 (PostgreSQL 17 and 18);
//! another version or a compressed archive is refused, never guessed at.

use std::collections::BTreeMap;

use crate::facts::{CopyDigest, CopyRows};

/// The archive versions understood: (major, minor), revision ignored.
const OLDEST: (u8, u8) = (1, 12);
const NEWEST: (u8, u8) = (1, 16);

/// The format byte of the header: 1 in a custom-format archive, 3 in a
/// directory's `toc.dat` (as pg_dump 15 and 18 write them).
const FORMAT_CUSTOM: u8 = 1;
const FORMAT_DIRECTORY: u8 = 3;

/// Data block types of the custom format.
const BLOCK_DATA: u8 = 1;
const BLOCK_LARGE_OBJECTS: u8 = 3;

/// The archive could not be read as an uncompressed pg_dump archive.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("the dump does not start like a pg_dump archive (no PGDMP header)")]
    NotAnArchive,
    #[error("pg_dump archive version {0}.{1} is not one this agent reads (1.12 to 1.16)")]
    Version(u8, u8),
    #[error("the pg_dump archive is of format {found}, expected {expected}")]
    Format { found: u8, expected: u8 },
    #[error("the pg_dump archive is compressed; the agent asks for --compress=0")]
    Compressed,
    #[error("the pg_dump archive is malformed: {0}")]
    Malformed(&'static str),
    #[error("the pg_dump archive ended inside {0}")]
    Truncated(&'static str),
    #[error("the pg_dump archive has data for dump id {0}, which its table of contents lacks")]
    UnknownEntry(i64),
}

/// One entry of the table of contents, as far as the facts need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    pub dump_id: i64,
    /// `TABLE DATA`, `ENCODING`, `TABLE`, ...
    pub desc: String,
    /// The object's name (a table's name for `TABLE DATA`).
    pub tag: String,
    /// Its schema, when it has one.
    pub namespace: Option<String>,
    pub defn: Option<String>,
    /// `COPY schema.table (col, ...) FROM stdin;` for table data.
    pub copy_stmt: Option<String>,
    /// Directory format: the file holding the entry's data.
    pub filename: Option<String>,
}

impl TocEntry {
    /// `schema.tag`, as the manifest names a table.
    pub fn qualified_name(&self) -> String {
        format!(
            "{}.{}",
            self.namespace.as_deref().unwrap_or_default(),
            self.tag
        )
    }
}

/// A parsed table of contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toc {
    pub entries: Vec<TocEntry>,
}

impl Toc {
    /// The client encoding the data was dumped in (the `ENCODING` entry's
    /// `SET client_encoding = '…';`).
    pub fn encoding(&self) -> Option<String> {
        let defn = self
            .entries
            .iter()
            .find(|e| e.desc == "ENCODING")?
            .defn
            .as_deref()?;
        let value = defn.split_once('\'')?.1.rsplit_once('\'')?.0;
        Some(value.replace("''", "'"))
    }

    /// The entries carrying table data.
    pub fn table_data(&self) -> impl Iterator<Item = &TocEntry> {
        self.entries.iter().filter(|e| e.desc == "TABLE DATA")
    }
}

/// The column names of a `COPY schema.table (a, "B c") FROM stdin;`
/// statement as pg_dump writes it, unquoted; empty for a table without
/// columns (`COPY schema.table  FROM stdin;`).
pub fn copy_columns(copy_stmt: &str) -> Result<Vec<String>, ArchiveError> {
    let bad = || ArchiveError::Malformed("a COPY statement pg_dump would not write");
    let rest = copy_stmt.strip_prefix("COPY ").ok_or_else(bad)?;
    let mut chars = rest.chars().peekable();
    // the table's name: identifiers, quoted ("" inside) or not, and dots
    let mut quoted = false;
    while let Some(&c) = chars.peek() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => break,
            _ => {}
        }
        chars.next();
    }
    while chars.peek() == Some(&' ') {
        chars.next();
    }
    if chars.next_if_eq(&'(').is_none() {
        let after: String = chars.collect();
        return if after.starts_with("FROM stdin") {
            Ok(Vec::new())
        } else {
            Err(bad())
        };
    }
    let mut columns = Vec::new();
    let mut name = String::new();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.next_if_eq(&'"').is_some() => name.push('"'),
            '"' => quoted = !quoted,
            ',' | ')' if !quoted => {
                columns.push(std::mem::take(&mut name));
                if c == ')' {
                    return Ok(columns);
                }
                chars.next_if_eq(&' ');
            }
            _ => name.push(c),
        }
    }
    Err(bad())
}

/// Bytes read from the front of a buffer; `None` when it runs short.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let taken = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn int(&mut self) -> Option<i64> {
        let int_size = self.int_size;
        let raw = self.take(1 + int_size)?;
        Some(read_int(raw))
    }

    /// `Some(None)` for an absent string.
    fn string(&mut self) -> Option<Result<Option<String>, ArchiveError>> {
        let len = self.int()?;
        if len < 0 {
            return Some(Ok(None));
        }
        let Ok(len) = usize::try_from(len) else {
            return Some(Err(ArchiveError::Malformed("a string longer than memory")));
        };
        let raw = self.take(len)?;
        Some(Ok(Some(String::from_utf8_lossy(raw).into_owned())))
    }
}

/// A sign byte, then `int size` bytes least significant first.
fn read_int(raw: &[u8]) -> i64 {
    let magnitude = raw[1..]
        .iter()
        .rev()
        .fold(0i64, |value, &b| value.wrapping_shl(8) | i64::from(b));
    if raw[0] != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// The header and TOC at the front of `bytes`, with where the data starts
/// and the archive's integer size; `Ok(None)` if `bytes` ends before they
/// do.
fn head_and_toc(bytes: &[u8], format: u8) -> Result<Option<(Toc, usize, usize)>, ArchiveError> {
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(value) => value,
                None => return Ok(None),
            }
        };
    }
    let mut cursor = Cursor {
        bytes,
        at: 0,
        int_size: 4,
    };
    let magic = need!(cursor.take(5));
    if magic != b"PGDMP" {
        return Err(ArchiveError::NotAnArchive);
    }
    let (major, minor, _revision) = (
        need!(cursor.byte()),
        need!(cursor.byte()),
        need!(cursor.byte()),
    );
    if !(OLDEST..=NEWEST).contains(&(major, minor)) {
        return Err(ArchiveError::Version(major, minor));
    }
    let version = (major, minor);
    cursor.int_size = usize::from(need!(cursor.byte()));
    if !(1..=8).contains(&cursor.int_size) {
        return Err(ArchiveError::Malformed(
            "an integer size outside 1 to 8 bytes",
        ));
    }
    let offset_size = usize::from(need!(cursor.byte()));
    let found = need!(cursor.byte());
    if found != format {
        return Err(ArchiveError::Format {
            found,
            expected: format,
        });
    }
    let compressed = if version >= (1, 15) {
        need!(cursor.byte()) != 0 // the algorithm; 0 is none
    } else {
        need!(cursor.int()) != 0 // the zlib level; 0 is none
    };
    if compressed {
        return Err(ArchiveError::Compressed);
    }
    for _ in 0..7 {
        need!(cursor.int()); // the creation time, field by field
    }
    for _ in 0..3 {
        need!(cursor.string())?; // database, server version, pg_dump version
    }
    let count = need!(cursor.int());
    let mut entries = Vec::new();
    for _ in 0..count.max(0) {
        let dump_id = need!(cursor.int());
        need!(cursor.int()); // had a data dumper
        need!(cursor.string())?; // catalog table oid
        need!(cursor.string())?; // object oid
        let tag = need!(cursor.string())?.unwrap_or_default();
        let desc = need!(cursor.string())?.unwrap_or_default();
        need!(cursor.int()); // section
        let defn = need!(cursor.string())?;
        need!(cursor.string())?; // drop statement
        let copy_stmt = need!(cursor.string())?;
        let namespace = need!(cursor.string())?.filter(|n| !n.is_empty());
        need!(cursor.string())?; // tablespace
        if version >= (1, 14) {
            need!(cursor.string())?; // table access method
        }
        if version >= (1, 16) {
            need!(cursor.int()); // relkind
        }
        need!(cursor.string())?; // owner
        need!(cursor.string())?; // "false": no OIDs
        while need!(cursor.string())?.is_some() {} // dependencies, then an absent string
        let filename = if format == FORMAT_CUSTOM {
            need!(cursor.take(1 + offset_size)); // data offset: flag and bytes
            None
        } else {
            need!(cursor.string())?.filter(|f| !f.is_empty())
        };
        entries.push(TocEntry {
            dump_id,
            desc,
            tag,
            namespace,
            defn,
            copy_stmt,
            filename,
        });
    }
    Ok(Some((Toc { entries }, cursor.at, cursor.int_size)))
}

/// Reads a directory-format `toc.dat`.
pub fn directory_toc(bytes: &[u8]) -> Result<Toc, ArchiveError> {
    match head_and_toc(bytes, FORMAT_DIRECTORY)? {
        Some((toc, _, _)) => Ok(toc),
        None => Err(ArchiveError::Truncated("the table of contents")),
    }
}

/// Where the custom-format reader is.
enum State {
    /// Collecting the header and TOC; `retry_at` is the buffer length at
    /// which to try parsing again (doubling, so the TOC is parsed a
    /// logarithmic number of times however it arrives).
    Head { buffer: Vec<u8>, retry_at: usize },
    /// Between data blocks.
    Block,
    /// Within a block's chunk headers; `table` is the TOC index of a table
    /// block, `None` for large objects, whose oids sit between runs of
    /// chunks (`in_object`).
    Chunks {
        table: Option<usize>,
        in_object: bool,
    },
    /// Inside a chunk, this many bytes left.
    Chunk { table: Option<usize>, left: u64 },
}

/// A custom-format archive read as it streams past: every table's COPY
/// rows are counted and hashed.
pub struct CustomArchiveReader {
    state: State,
    /// A fixed-size field split across two feeds.
    pending: Vec<u8>,
    int_size: usize,
    toc: Vec<TocEntry>,
    by_id: BTreeMap<i64, usize>,
    rows: BTreeMap<usize, CopyRows>,
    failed: Option<ArchiveError>,
}

impl Default for CustomArchiveReader {
    fn default() -> Self {
        CustomArchiveReader {
            state: State::Head {
                buffer: Vec::new(),
                retry_at: 4096,
            },
            pending: Vec::new(),
            int_size: 4,
            toc: Vec::new(),
            by_id: BTreeMap::new(),
            rows: BTreeMap::new(),
            failed: None,
        }
    }
}

impl CustomArchiveReader {
    /// Reads the next bytes of the archive. An error sticks: `finish`
    /// returns it.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            if let Err(err) = self.advance(bytes) {
                self.failed = Some(err);
            }
        }
    }

    /// The table of contents and the digest of each table's data, by dump
    /// id; fails if the archive was malformed or ended early.
    pub fn finish(mut self) -> Result<(Toc, BTreeMap<i64, CopyDigest>), ArchiveError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        if let State::Head { retry_at, .. } = &mut self.state {
            *retry_at = 0; // all there is has arrived: parse it now
            self.advance(&[])?;
        }
        match &self.state {
            State::Head { .. } => return Err(ArchiveError::Truncated("the table of contents")),
            State::Block if self.pending.is_empty() => {}
            State::Block => return Err(ArchiveError::Truncated("a data block header")),
            State::Chunks { .. } | State::Chunk { .. } => {
                return Err(ArchiveError::Truncated("a table's data"))
            }
        }
        let mut tables = BTreeMap::new();
        for (index, rows) in std::mem::take(&mut self.rows) {
            let digest = rows
                .finish()
                .map_err(|_| ArchiveError::Malformed("a table's data ends inside a row"))?;
            tables.insert(self.toc[index].dump_id, digest);
        }
        Ok((Toc { entries: self.toc }, tables))
    }

    fn advance(&mut self, mut bytes: &[u8]) -> Result<(), ArchiveError> {
        if let State::Head { buffer, retry_at } = &mut self.state {
            buffer.extend_from_slice(bytes);
            if buffer.len() < *retry_at {
                return Ok(());
            }
            let Some((toc, data_at, int_size)) = head_and_toc(buffer, FORMAT_CUSTOM)? else {
                *retry_at = buffer.len() * 2;
                return Ok(());
            };
            let rest = buffer.split_off(data_at);
            self.int_size = int_size;
            self.by_id = toc
                .entries
                .iter()
                .enumerate()
                .map(|(index, e)| (e.dump_id, index))
                .collect();
            self.toc = toc.entries;
            self.state = State::Block;
            return self.advance(&rest);
        }
        while !bytes.is_empty() {
            match self.state {
                State::Head { .. } => unreachable!("handled above"),
                State::Block => {
                    let Some(header) = self.fixed(&mut bytes, 2 + self.int_size) else {
                        return Ok(());
                    };
                    let id = read_int(&header[1..]);
                    let index = *self.by_id.get(&id).ok_or(ArchiveError::UnknownEntry(id))?;
                    self.state = match header[0] {
                        BLOCK_DATA => {
                            self.rows.entry(index).or_default();
                            State::Chunks {
                                table: Some(index),
                                in_object: true,
                            }
                        }
                        BLOCK_LARGE_OBJECTS => State::Chunks {
                            table: None,
                            in_object: false,
                        },
                        _ => return Err(ArchiveError::Malformed("an unknown data block type")),
                    };
                }
                State::Chunks { table, in_object } => {
                    let Some(raw) = self.fixed(&mut bytes, 1 + self.int_size) else {
                        return Ok(());
                    };
                    let value = read_int(&raw);
                    self.state = match (table, in_object, value) {
                        // a large object's oid; 0 ends the block
                        (None, false, 0) => State::Block,
                        (None, false, _) => State::Chunks {
                            table,
                            in_object: true,
                        },
                        // a zero length ends a table's block or an object
                        (Some(_), _, 0) => State::Block,
                        (None, true, 0) => State::Chunks {
                            table,
                            in_object: false,
                        },
                        (_, _, len) if len < 0 => {
                            return Err(ArchiveError::Malformed("a negative chunk length"))
                        }
                        (_, _, len) => State::Chunk {
                            table,
                            left: len.unsigned_abs(),
                        },
                    };
                }
                State::Chunk { table, left } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    let (chunk, rest) = bytes.split_at(n);
                    if let Some(index) = table {
                        self.rows.entry(index).or_default().feed(chunk);
                    }
                    bytes = rest;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Chunks {
                            table,
                            in_object: true,
                        }
                    } else {
                        State::Chunk { table, left }
                    };
                }
            }
        }
        Ok(())
    }

    /// A field of `size` bytes, from what is pending and the front of
    /// `bytes`; `None` (keeping what there is) if they hold less.
    fn fixed(&mut self, bytes: &mut &[u8], size: usize) -> Option<Vec<u8>> {
        let wanted = size - self.pending.len();
        if bytes.len() < wanted {
            self.pending.extend_from_slice(bytes);
            *bytes = &[];
            return None;
        }
        let (head, rest) = bytes.split_at(wanted);
        self.pending.extend_from_slice(head);
        *bytes = rest;
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer of the archive layout, for tests: the reading side is
    /// checked against real pg_dump output by the end-to-end tests.
    struct Writer(Vec<u8>);

    impl Writer {
        fn int(&mut self, value: i64) {
            self.0.push(u8::from(value < 0));
            self.0
                .extend_from_slice(&value.unsigned_abs().to_le_bytes()[..4]);
        }
        fn string(&mut self, value: Option<&str>) {
            match value {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.0.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    fn archive(minor: u8, format: u8, tables: &[(i64, &str, &str, &[&str])]) -> Vec<u8> {
        let mut w = Writer(b"PGDMP".to_vec());
        w.0.extend_from_slice(&[1, minor, 0, 4, 8, format]);
        if minor >= 15 {
            w.0.push(0);
        } else {
            w.int(0);
        }
        for field in [0, 0, 0, 1, 0, 126, 0] {
            w.int(field);
        }
        for s in ["shop", "15.8", "15.8"] {
            w.string(Some(s));
        }
        w.int(1 + tables.len() as i64);
        let entry =
            |w: &mut Writer, id: i64, tag: &str, desc: &str, defn: &str, copy: Option<String>| {
                w.int(id);
                w.int(i64::from(copy.is_some()));
                w.string(Some("0"));
                w.string(Some("0"));
                w.string(Some(tag));
                w.string(Some(desc));
                w.int(3);
                w.string(Some(defn));
                w.string(Some(""));
                w.string(copy.as_deref());
                w.string(Some("public"));
                w.string(Some(""));
                if minor >= 14 {
                    w.string(Some("heap"));
                }
                if minor >= 16 {
                    w.int(114);
                }
                w.string(Some("postgres"));
                w.string(Some("false"));
                w.string(Some("7"));
                w.string(None);
                if format == FORMAT_CUSTOM {
                    w.0.extend_from_slice(&[1; 9]);
                } else if copy.is_some() {
                    w.string(Some(&format!("{id}.dat")));
                } else {
                    w.string(Some(""));
                }
            };
        entry(
            &mut w,
            1,
            "ENCODING",
            "ENCODING",
            "SET client_encoding = 'UTF8';\n",
            None,
        );
        for (id, name, columns, _) in tables {
            let copy = format!("COPY public.{name} ({columns}) FROM stdin;\n");
            entry(&mut w, *id, name, "TABLE DATA", "", Some(copy));
        }
        if format == FORMAT_CUSTOM {
            for (id, _, _, chunks) in tables {
                w.0.push(BLOCK_DATA);
                w.int(*id);
                for chunk in *chunks {
                    w.int(chunk.len() as i64);
                    w.0.extend_from_slice(chunk.as_bytes());
                }
                w.int(0);
            }
            // a large objects block: two objects, one chunk each
            w.0.push(BLOCK_LARGE_OBJECTS);
            w.int(1);
            for oid in [16400, 16401] {
                w.int(oid);
                w.int(3);
                w.0.extend_from_slice(b"a\nb");
                w.int(0);
            }
            w.int(0);
        }
        w.0
    }

    fn digest(rows: &[&str]) -> CopyDigest {
        let mut digest = CopyDigest::default();
        for row in rows {
            digest.add_row(row.as_bytes());
        }
        digest
    }

    #[test]
    fn the_custom_format_yields_each_tables_rows_however_it_is_cut() {
        for minor in [12, 14, 15, 16] {
            let bytes = archive(
                minor,
                FORMAT_CUSTOM,
                &[
                    (5, "orders", "id, \"Note\"", &["1\tx\n2\t", "y\n3\t\\N\n"]),
                    (6, "empty", "id", &[]),
                ],
            );
            for cut in [1, 2, 7, 64, bytes.len()] {
                let mut reader = CustomArchiveReader::default();
                for piece in bytes.chunks(cut) {
                    reader.feed(piece);
                }
                let (toc, tables) = reader.finish().unwrap();
                assert_eq!(toc.encoding().as_deref(), Some("UTF8"));
                assert_eq!(tables.len(), 2, "1.{minor} cut {cut}");
                assert_eq!(tables[&5], digest(&["1\tx", "2\ty", "3\t\\N"]));
                assert_eq!(tables[&6], CopyDigest::default());
                let orders = toc.table_data().next().unwrap();
                assert_eq!(orders.tag, "orders");
                let copy = orders.copy_stmt.as_deref().unwrap();
                assert_eq!(copy_columns(copy).unwrap(), ["id", "Note"]);
            }
        }
    }

    #[test]
    fn anything_but_an_uncompressed_archive_of_a_known_version_is_refused() {
        let table: &[(i64, &str, &str, &[&str])] = &[(5, "t", "id", &["1\n"])];
        let mut bytes = archive(15, FORMAT_CUSTOM, table);
        bytes[11] = 3; // zstd
        let refused = |bytes: &[u8]| {
            let mut reader = CustomArchiveReader::default();
            reader.feed(bytes);
            reader.finish().unwrap_err()
        };
        assert_eq!(refused(&bytes), ArchiveError::Compressed);
        assert_eq!(
            refused(&archive(17, FORMAT_CUSTOM, table)),
            ArchiveError::Version(1, 17)
        );
        assert_eq!(refused(b"%PDF-1.7 and more"), ArchiveError::NotAnArchive);
        let whole = archive(16, FORMAT_CUSTOM, table);
        assert!(matches!(
            refused(&whole[..whole.len() - 40]),
            ArchiveError::Truncated(_)
        ));
        assert_eq!(
            directory_toc(&whole).unwrap_err(),
            ArchiveError::Format {
                found: FORMAT_CUSTOM,
                expected: FORMAT_DIRECTORY
            }
        );
    }

    #[test]
    fn a_directory_toc_names_each_tables_file() {
        let bytes = archive(16, FORMAT_DIRECTORY, &[(5, "orders", "id", &[])]);
        let toc = directory_toc(&bytes).unwrap();
        let data: Vec<_> = toc.table_data().collect();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0].filename.as_deref(), Some("5.dat"));
        assert_eq!(data[0].namespace.as_deref(), Some("public"));
        assert_eq!(toc.entries[0].filename, None);
    }

    #[test]
    fn copy_column_lists_unquote() {
        let columns = |s: &str| copy_columns(s).unwrap();
        assert_eq!(columns("COPY public.t (a, b) FROM stdin;\n"), ["a", "b"]);
        assert_eq!(
            columns("COPY \"odd (name\".\"t\" (\"x, \"\"y\"\"\", z) FROM stdin;\n"),
            ["x, \"y\"", "z"]
        );
        assert!(columns("COPY public.t  FROM stdin;\n").is_empty());
        assert!(copy_columns("garbage").is_err());
    }
}
