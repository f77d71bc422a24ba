//! Where everything lives in the bucket, one function per key or prefix.
//!
//! The controller writes specs, leases and the agent binary; the agent
//! reads the recipients' keys and writes the backup; the restore commands
//! read both back, from S3 or from an offline copy. All of them name keys
//! through this module, so the layout the README documents is spelled out
//! once:
//!
//! ```text
//! <prefix>/config/public-keys/…                 recipients' public keys
//! <prefix>/agent/<sha256>/backup-cloud          the agent binary
//! <prefix>/jobs/<job>/<job-id>/spec.json        a job spec
//! <prefix>/leases/<job>.json                    a job's single-flight lease
//! <prefix>/backup/<job>/<timestamp>/            one backup:
//!     manifest.json                             written last
//!     pg_dump.custom[.zst].gpg | mysqldump.sql[.zst].gpg   a streamed dump
//!     data/…                                    a directory dump's files
//!     packs/<n>.tar[.zst].gpg                   its small files, packed
//!     checks/<time>-<kind>.json                 verify/drill/export records
//! ```
//!
//! `prefix` is always the configured storage prefix (`storage.prefix`,
//! no leading or trailing `/`, possibly empty); every prefix returned ends
//! in `/`.

use time::OffsetDateTime;

use crate::schema::{CheckKind, DumpMode};

/// The compact ISO-8601 form of backup timestamps (`20261201T013000Z`).
const TIMESTAMP: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// `at` (UTC) as a backup timestamp or a check record's time.
pub fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .expect("UTC timestamps always format")
}

/// The time a backup timestamp names; `None` if it is not one.
pub fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(text, TIMESTAMP)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// Name of the manifest under a backup's prefix.
pub const MANIFEST_NAME: &str = "manifest.json";

/// The folder of an offline copy (`export`) holding the public keys.
pub const COPY_PUBLIC_KEYS: &str = "public-keys";

/// The segment that starts a backup's own part of its prefix.
const BACKUP_SEGMENT: &str = "backup";

/// `<prefix>/`, or the empty string: what every key starts with.
pub fn root(prefix: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

/// Where the recipients' public keys lie.
pub fn public_keys(prefix: &str) -> String {
    format!("{}config/public-keys/", root(prefix))
}

/// The agent binary with hex SHA-256 `sha256`.
pub fn agent(prefix: &str, sha256: &str) -> String {
    format!("{}agent/{sha256}/backup-cloud", root(prefix))
}

/// The spec of job run `job_id` of job `job`.
pub fn job_spec(prefix: &str, job: &str, job_id: &str) -> String {
    format!("{}jobs/{job}/{job_id}/spec.json", root(prefix))
}

/// The single-flight lease of job `job`.
pub fn lease(prefix: &str, job: &str) -> String {
    format!("{}leases/{job}.json", root(prefix))
}

/// Every backup of job `job` lies under this prefix.
pub fn backups(prefix: &str, job: &str) -> String {
    format!("{}{BACKUP_SEGMENT}/{job}/", root(prefix))
}

/// The backup of job `job` started at `timestamp` (compact ISO-8601).
pub fn backup(prefix: &str, job: &str, timestamp: &str) -> String {
    format!("{}{timestamp}/", backups(prefix, job))
}

/// The manifest of the backup at `backup_prefix`.
pub fn manifest(backup_prefix: &str) -> String {
    format!("{backup_prefix}{MANIFEST_NAME}")
}

/// Where a directory dump's files lie in the backup at `backup_prefix`.
pub fn data(backup_prefix: &str) -> String {
    format!("{backup_prefix}data/")
}

/// Where the packs of a directory dump's small files lie in the backup
/// at `backup_prefix`.
pub fn packs(backup_prefix: &str) -> String {
    format!("{backup_prefix}packs/")
}

/// The object name of plaintext `name`: `.zst.gpg` appended when it is
/// zstd-compressed before encryption, `.gpg` when not.
pub fn encrypted_name(name: &str, compressed: bool) -> String {
    format!("{name}{}", if compressed { ".zst.gpg" } else { ".gpg" })
}

/// The one object of a streamed dump (`pg_dump -Fc`, `mysqldump`) in the
/// backup at `backup_prefix`, zstd-compressed or not.
pub fn stream_object(backup_prefix: &str, mode: DumpMode, compressed: bool) -> String {
    let name = match mode {
        DumpMode::Mysqldump => "mysqldump.sql",
        _ => "pg_dump.custom",
    };
    format!("{backup_prefix}{}", encrypted_name(name, compressed))
}

/// Where the check records of the backup at `backup_prefix` lie.
pub fn checks(backup_prefix: &str) -> String {
    format!("{backup_prefix}checks/")
}

/// The record of a `kind` check of the backup at `backup_prefix` that
/// started at `at`; records sort by time within a backup.
pub fn check_record(backup_prefix: &str, at: OffsetDateTime, kind: CheckKind) -> String {
    format!(
        "{}{}-{}.json",
        checks(backup_prefix),
        timestamp(at),
        kind.as_str()
    )
}

/// Whether `key` is a check record of the backup at `backup_prefix`
/// (`checks/<timestamp>-<kind>.json`, nothing else).
pub fn is_check_record(backup_prefix: &str, key: &str) -> bool {
    let Some(name) = key.strip_prefix(&checks(backup_prefix)) else {
        return false;
    };
    let Some((stamp, kind)) = name.strip_suffix(".json").and_then(|n| n.split_once('-')) else {
        return false;
    };
    parse_timestamp(stamp).is_some()
        && [CheckKind::Verify, CheckKind::Drill, CheckKind::Export]
            .iter()
            .any(|k| k.as_str() == kind)
}

/// Where an offline copy of the backup at `backup_prefix` keeps the
/// public keys, as keys under that backup's prefix.
pub fn copy_public_keys(backup_prefix: &str) -> String {
    format!("{backup_prefix}{COPY_PUBLIC_KEYS}/")
}

/// Whether `key` is the manifest of a backup of job `job`.
pub fn is_manifest_of(prefix: &str, job: &str, key: &str) -> bool {
    key.starts_with(&backups(prefix, job)) && key.ends_with(&format!("/{MANIFEST_NAME}"))
}

/// A backup's prefix split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPrefix {
    /// The storage prefix it lies under (possibly empty).
    pub prefix: String,
    pub job: String,
    pub timestamp: String,
}

/// Reads `<prefix>/backup/<job>/<timestamp>/` (trailing `/` optional);
/// `None` for anything else.
pub fn parse_backup(backup_prefix: &str) -> Option<BackupPrefix> {
    let segments: Vec<&str> = backup_prefix.trim_end_matches('/').split('/').collect();
    let n = segments.len();
    if n < 3 || segments[n - 3] != BACKUP_SEGMENT || segments.contains(&"") {
        return None;
    }
    Some(BackupPrefix {
        prefix: segments[..n - 3].join("/"),
        job: segments[n - 2].to_owned(),
        timestamp: segments[n - 1].to_owned(),
    })
}

/// The backup prefix an object key of job `job` lies under
/// (`…/backup/<job>/<timestamp>/`), if it lies under one.
pub fn backup_of_object<'k>(job: &str, key: &'k str) -> Option<&'k str> {
    let marker = format!("{BACKUP_SEGMENT}/{job}/");
    let start = key.find(&marker)? + marker.len();
    let end = start + key[start..].find('/')? + 1;
    Some(&key[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        assert_eq!(root(""), "");
        assert_eq!(root("prod/db"), "prod/db/");
        assert_eq!(root("prod/db/"), "prod/db/");
        assert_eq!(public_keys(""), "config/public-keys/");
        assert_eq!(public_keys("prod/db"), "prod/db/config/public-keys/");
        assert_eq!(agent("p", "ab"), "p/agent/ab/backup-cloud");
        assert_eq!(job_spec("p", "j", "j-1"), "p/jobs/j/j-1/spec.json");
        assert_eq!(lease("", "j"), "leases/j.json");
        assert_eq!(backup("p", "j", "t"), "p/backup/j/t/");
        assert_eq!(manifest("p/backup/j/t/"), "p/backup/j/t/manifest.json");
        assert_eq!(data("b/"), "b/data/");
        assert_eq!(
            stream_object("b/", DumpMode::Mysqldump, true),
            "b/mysqldump.sql.zst.gpg"
        );
        assert_eq!(
            stream_object("b/", DumpMode::PostgresCustom, false),
            "b/pg_dump.custom.gpg"
        );
        assert_eq!(copy_public_keys("b/"), "b/public-keys/");
        let at = time::macros::datetime!(2026-12-01 01:30:05 +1);
        assert_eq!(timestamp(at), "20261201T003005Z");
        assert_eq!(parse_timestamp("20261201T003005Z"), Some(at));
        assert_eq!(parse_timestamp("2026-12-01"), None);
        assert!(is_check_record(
            "b/",
            "b/checks/20261201T003005Z-verify.json"
        ));
        for not_one in [
            "b/checks/20261201T003005Z-verify.json.x",
            "b/checks/20261201T003005Z-other.json",
            "b/checks/yesterday-drill.json",
            "b/data/20261201T003005Z-drill.json",
            "c/checks/20261201T003005Z-drill.json",
        ] {
            assert!(!is_check_record("b/", not_one), "{not_one}");
        }
        assert_eq!(
            check_record("b/", at, CheckKind::Drill),
            "b/checks/20261201T003005Z-drill.json"
        );
    }

    #[test]
    fn backup_prefixes_are_read_back() {
        let parsed = parse_backup("p/q/backup/j/t/").unwrap();
        assert_eq!(
            parsed,
            BackupPrefix {
                prefix: "p/q".into(),
                job: "j".into(),
                timestamp: "t".into()
            }
        );
        assert_eq!(parse_backup("backup/j/t").unwrap().prefix, "");
        for bad in ["", "backup/j/", "x/notbackup/j/t/", "p//backup/j/t/"] {
            assert_eq!(parse_backup(bad), None, "{bad}");
        }
        assert_eq!(
            backup_of_object("j", "p/backup/j/t/data/x.gpg"),
            Some("p/backup/j/t/")
        );
        assert_eq!(backup_of_object("j", "p/backup/k/t/data/x.gpg"), None);
        assert!(is_manifest_of("p", "j", "p/backup/j/t/manifest.json"));
        assert!(!is_manifest_of("p", "j", "p/backup/k/t/manifest.json"));
        assert!(!is_manifest_of("p", "j", "p/backup/j/t/other.json"));
    }
}
