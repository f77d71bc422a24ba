//! `check`: is every job backed up recently, and proven restorable
//! recently? For monitoring systems and cron's `MAILTO`.
//!
//! Per job it reads the catalog and holds it to the job's thresholds
//! (`[checks]`): the newest complete backup must be younger than
//! `max_age_alert`; some backup must have passed a `verify` within
//! `verify_every` and a `drill` within `drill_every`; and no backup still
//! in the bucket may have failed its newest verify or drill (a failure on
//! one backup is not cured by another passing). One [`Problem`] per thing
//! wrong. The exit code is the gravest problem's ([`Problem::exit`]); the
//! per-job figures are also rendered as Prometheus gauges for
//! node_exporter's textfile collector.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use super::catalog::{Entry, LastCheck, State};
use crate::config::JobConfig;
use crate::exit::Exit;
use crate::retention::shown;
use crate::schema::{CheckKind, CheckResult};

/// What `check` found about one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobHealth {
    pub job: String,
    /// Start of the newest complete backup.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// Its size in bytes (ciphertext).
    pub last_size_bytes: Option<u64>,
    pub last_verify: Option<LastCheck>,
    pub last_drill: Option<LastCheck>,
    /// Backups by state.
    pub complete: usize,
    pub incomplete: usize,
    pub expired: usize,
    pub problems: Vec<Problem>,
}

/// One thing wrong with a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// No complete backup at all.
    NoBackup,
    /// The newest complete backup is older than `max_age_alert`.
    TooOld { age: String, limit: String },
    /// No passing `kind` within its interval (`last`: when the newest was).
    Overdue {
        kind: CheckKind,
        last: Option<String>,
        every: String,
    },
    /// The newest `kind` of the backup at `location` failed: it stays a
    /// problem, whatever other backups passed, until that backup passes
    /// again or is pruned.
    Failed {
        kind: CheckKind,
        at: String,
        location: String,
    },
    /// A backup's manifest does not read.
    Unreadable { location: String },
}

impl Problem {
    /// The exit code `check` ends with when this is its gravest problem:
    /// a failed proof (12) before a missing backup (10) before an overdue
    /// proof (11).
    pub fn exit(&self) -> Exit {
        match self {
            Problem::Failed { .. } | Problem::Unreadable { .. } => Exit::ProofFailed,
            Problem::NoBackup | Problem::TooOld { .. } => Exit::BackupOverdue,
            Problem::Overdue { .. } => Exit::ProofOverdue,
        }
    }

    fn gravity(&self) -> u8 {
        match self.exit() {
            Exit::ProofFailed => 3,
            Exit::BackupOverdue => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoBackup => write!(f, "has no complete backup"),
            Problem::TooOld { age, limit } => write!(
                f,
                "newest complete backup is {age} old, older than max_age_alert ({limit})"
            ),
            Problem::Overdue { kind, last, every } => match last {
                Some(last) => write!(
                    f,
                    "no passing {} since {last}, longer ago than {}_every ({every})",
                    kind.as_str(),
                    kind.as_str()
                ),
                None => write!(
                    f,
                    "never passed a {} ({}_every is {every})",
                    kind.as_str(),
                    kind.as_str()
                ),
            },
            Problem::Failed { kind, at, location } => {
                write!(
                    f,
                    "the newest {} of {location} ({at}) failed",
                    kind.as_str()
                )
            }
            Problem::Unreadable { location } => {
                write!(f, "the manifest of {location} does not read")
            }
        }
    }
}

/// The health of `job` from its catalog `entries` at `now`.
pub fn assess(job: &JobConfig, entries: &[Entry], now: OffsetDateTime) -> JobHealth {
    let newest = entries
        .iter()
        .filter(|e| e.is_complete() && !crate::retention::is_future(e.started_at, now))
        .max_by_key(|e| e.started_at);
    let newest_of = |kind: CheckKind| {
        entries
            .iter()
            .filter_map(|e| e.last(kind))
            .max_by_key(|c| c.at)
            .cloned()
    };
    let newest_passing = |kind: CheckKind| {
        entries
            .iter()
            .filter_map(|e| e.last(kind))
            .filter(|c| c.result == CheckResult::Passed)
            .max_by_key(|c| c.at)
            .cloned()
    };
    let mut problems = Vec::new();
    match newest {
        None => problems.push(Problem::NoBackup),
        Some(entry) => {
            let age = now - entry.started_at;
            if age > job.checks.max_age_alert {
                // to the minute: nanoseconds help nobody
                let minutes = age.whole_minutes().unsigned_abs();
                problems.push(Problem::TooOld {
                    age: shown(std::time::Duration::from_secs(minutes * 60)),
                    limit: shown(job.checks.max_age_alert),
                });
            }
        }
    }
    let last_verify = newest_of(CheckKind::Verify);
    let last_drill = newest_of(CheckKind::Drill);
    for (kind, every) in [
        (CheckKind::Verify, job.checks.verify_every),
        (CheckKind::Drill, job.checks.drill_every),
    ] {
        for entry in entries {
            if let Some(failed) = entry.last(kind).filter(|c| c.result == CheckResult::Failed) {
                problems.push(Problem::Failed {
                    kind,
                    at: stamp(failed.at),
                    location: entry.location.clone(),
                });
            }
        }
        let passing = newest_passing(kind);
        if passing.as_ref().is_none_or(|c| now - c.at > every) {
            problems.push(Problem::Overdue {
                kind,
                last: passing.map(|c| stamp(c.at)),
                every: shown(every),
            });
        }
    }
    for entry in entries.iter().filter(|e| e.state == State::Unreadable) {
        problems.push(Problem::Unreadable {
            location: entry.location.clone(),
        });
    }
    let count = |state: State| entries.iter().filter(|e| e.state == state).count();
    JobHealth {
        job: job.name.clone(),
        last_success: newest.map(|e| e.started_at),
        last_size_bytes: newest.map(|e| e.size_bytes),
        last_verify,
        last_drill,
        complete: count(State::Complete),
        incomplete: count(State::Incomplete),
        expired: count(State::Expired),
        problems,
    }
}

/// The exit code for `health`: 0, or the gravest problem's.
pub fn exit(health: &[JobHealth]) -> Exit {
    health
        .iter()
        .flat_map(|h| &h.problems)
        .max_by_key(|p| p.gravity())
        .map_or(Exit::Success, Problem::exit)
}

/// `at` as the messages show it (RFC 3339, UTC, seconds).
fn stamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// `health` in the Prometheus text exposition format (version 0.0.4), for
/// node_exporter's textfile collector: per-job gauges, times in Unix
/// seconds, results as 1 (passed) or 0 (failed).
pub fn prometheus(health: &[JobHealth]) -> String {
    type Value = fn(&JobHealth) -> Option<f64>;
    let gauges: [(&str, &str, Value); 9] = [
        (
            "backup_cloud_last_success_timestamp_seconds",
            "Start of the job's newest complete backup, in Unix seconds.",
            |h| h.last_success.map(unix),
        ),
        (
            "backup_cloud_last_size_bytes",
            "Size of the job's newest complete backup (ciphertext), in bytes.",
            |h| h.last_size_bytes.map(|b| b as f64),
        ),
        (
            "backup_cloud_last_verify_timestamp_seconds",
            "When the newest verify of any of the job's backups started, in Unix seconds.",
            |h| h.last_verify.as_ref().map(|c| unix(c.at)),
        ),
        (
            "backup_cloud_last_verify_success",
            "Whether that verify passed (1) or failed (0).",
            |h| h.last_verify.as_ref().map(passed),
        ),
        (
            "backup_cloud_last_drill_timestamp_seconds",
            "When the newest drill of any of the job's backups started, in Unix seconds.",
            |h| h.last_drill.as_ref().map(|c| unix(c.at)),
        ),
        (
            "backup_cloud_last_drill_success",
            "Whether that drill passed (1) or failed (0).",
            |h| h.last_drill.as_ref().map(passed),
        ),
        (
            "backup_cloud_complete_backups",
            "Complete backups of the job in the bucket (expired ones not counted).",
            |h| Some(h.complete as f64),
        ),
        (
            "backup_cloud_incomplete_backups",
            "Backups of the job without a manifest (being written, or abandoned).",
            |h| Some(h.incomplete as f64),
        ),
        (
            "backup_cloud_check_problems",
            "Problems `backup-cloud check` found with the job (0: healthy).",
            |h| Some(h.problems.len() as f64),
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in gauges {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for h in health {
            if let Some(v) = value(h) {
                // job names are letters, digits, `_` and `-`: nothing to escape
                text.push_str(&format!("{name}{{job=\"{}\"}} {v}\n", h.job));
            }
        }
    }
    text
}

fn unix(at: OffsetDateTime) -> f64 {
    at.unix_timestamp() as f64
}

fn passed(check: &LastCheck) -> f64 {
    if check.result == CheckResult::Passed {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn job() -> JobConfig {
        let text = "[storage]\nbucket = \"bkt\"\n[jobs.orders]\nengine = \"postgres\"\n\
                    host = \"h\"\nuser = \"u\"\ndatabase = \"d\"\npassword_parameter = \"/p\"\n";
        let config = Config::parse(std::path::Path::new("t.toml"), text).unwrap();
        config.job("orders").unwrap().clone()
    }

    fn check(at: OffsetDateTime, result: CheckResult) -> Option<LastCheck> {
        Some(LastCheck {
            at,
            result,
            ran_by: "arn:aws:iam::1:user/r".into(),
            findings: 0,
        })
    }

    fn entry(at: OffsetDateTime, state: State) -> Entry {
        Entry {
            job: "orders".into(),
            timestamp: crate::layout::timestamp(at),
            started_at: at,
            location: "s3://b/backup/orders/x/".into(),
            state,
            locked_until: None,
            size_bytes: 42,
            objects: 1,
            format: None,
            recipients: Vec::new(),
            last_verify: None,
            last_drill: None,
            last_export: None,
            problem: None,
            prefix: "backup/orders/x/".into(),
        }
    }

    #[test]
    fn each_problem_has_its_code_and_the_gravest_wins() {
        let job = job();
        assert_eq!(exit(&[assess(&job, &[], NOW)]), Exit::BackupOverdue);

        let mut fresh = entry(NOW - time::Duration::hours(2), State::Complete);
        let health = assess(&job, std::slice::from_ref(&fresh), NOW);
        assert_eq!(exit(std::slice::from_ref(&health)), Exit::ProofOverdue);
        assert_eq!(health.problems.len(), 2, "{:?}", health.problems);

        fresh.last_verify = check(NOW - time::Duration::days(3), CheckResult::Passed);
        fresh.last_drill = check(NOW - time::Duration::days(30), CheckResult::Passed);
        let health = assess(&job, std::slice::from_ref(&fresh), NOW);
        assert_eq!(health.problems, []);
        assert_eq!(exit(&[health]), Exit::Success);

        // a failed drill after a passing one: failed, though not overdue
        let mut older = entry(NOW - time::Duration::days(1), State::Complete);
        older.last_drill = check(NOW - time::Duration::hours(1), CheckResult::Failed);
        let health = assess(&job, &[fresh.clone(), older], NOW);
        assert_eq!(health.problems.len(), 1, "{:?}", health.problems);
        assert_eq!(exit(&[health]), Exit::ProofFailed);

        // too old beats overdue; incomplete backups do not count
        let stale = entry(NOW - time::Duration::hours(27), State::Complete);
        let running = entry(NOW - time::Duration::minutes(5), State::Incomplete);
        let health = assess(&job, &[running, stale], NOW);
        assert_eq!(
            health.problems[0].to_string(),
            "newest complete backup is 27h old, older than max_age_alert (26h)"
        );
        assert_eq!(exit(&[health]), Exit::BackupOverdue);
    }

    #[test]
    fn gauges_are_prometheus_text_with_a_help_and_type_each() {
        let mut backup = entry(datetime!(2026-12-01 01:30 UTC), State::Complete);
        backup.last_verify = check(datetime!(2026-12-01 02:00 UTC), CheckResult::Failed);
        let text = prometheus(&[assess(&job(), &[backup], NOW)]);
        assert!(text.contains(
            "# TYPE backup_cloud_last_success_timestamp_seconds gauge\n\
             backup_cloud_last_success_timestamp_seconds{job=\"orders\"} 1796088600\n"
        ));
        assert!(text.contains("backup_cloud_last_verify_success{job=\"orders\"} 0\n"));
        // never drilled: no sample, only the family
        assert!(!text.contains("backup_cloud_last_drill_success{"));
        assert!(text.contains("# HELP backup_cloud_last_drill_success "));
    }
}
