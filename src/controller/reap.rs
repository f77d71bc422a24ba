//! Reaping: the cure for a controller that died.
//!
//! `backup-cloud reap` lists every instance carrying our managed tag and
//! terminates those whose job is finished, failed, stale, superseded or past
//! its lifetime. [`reap_reason`] is the pure decision, table-tested; the
//! controller acts on it.

use std::time::Duration;

use time::OffsetDateTime;

use crate::controller::watch::Limits;
use crate::schema::{Phase, Status};

/// One of our instances, as EC2 and its tags describe it.
#[derive(Debug, Clone)]
pub struct ManagedInstance {
    pub instance_id: String,
    pub job: String,
    pub job_id: String,
    pub launched_at: OffsetDateTime,
}

/// Why `instance` should be terminated, or `None` to leave it running.
/// `status` is the job's status document, whichever job id it carries.
pub fn reap_reason(
    instance: &ManagedInstance,
    status: Option<&Status>,
    now: OffsetDateTime,
    limits: &Limits,
    older_than: Option<Duration>,
) -> Option<String> {
    let age: Duration = (now - instance.launched_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let fmt =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    if age > limits.max_lifetime + limits.lifetime_grace {
        return Some(format!(
            "running for {}, past its maximum lifetime of {}",
            fmt(age),
            fmt(limits.max_lifetime)
        ));
    }
    if let Some(limit) = older_than.filter(|limit| age > *limit) {
        return Some(format!(
            "running for {}, older than {}",
            fmt(age),
            fmt(limit)
        ));
    }
    match status {
        Some(status) if status.job_id != instance.job_id => Some(format!(
            "superseded: the job's status belongs to {}",
            status.job_id
        )),
        Some(status) if status.phase.is_terminal() => {
            Some(format!("its job already {}", status.phase.as_str()))
        }
        Some(status) if matches!(status.phase, Phase::Launching | Phase::Booting) => {
            (age > limits.boot_timeout).then(|| {
                format!(
                    "the agent did not start within {}",
                    fmt(limits.boot_timeout)
                )
            })
        }
        Some(status) => {
            let silent: Duration = (now - status.updated_at)
                .try_into()
                .unwrap_or(Duration::ZERO);
            (silent > limits.heartbeat_timeout).then(|| {
                format!(
                    "no heartbeat for {} (phase {})",
                    fmt(silent),
                    status.phase.as_str()
                )
            })
        }
        None => (age > limits.boot_timeout).then(|| "its job has no status".to_owned()),
    }
}

/// Why an instance of a job this configuration does not know should be
/// terminated: only an explicit `--older-than` judges it, since its status
/// parameter, lifetime and timeouts live in another configuration.
pub fn foreign_reap_reason(
    instance: &ManagedInstance,
    now: OffsetDateTime,
    older_than: Option<Duration>,
) -> Option<String> {
    let age: Duration = (now - instance.launched_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let limit = older_than.filter(|limit| age > *limit)?;
    Some(format!(
        "running for {}, older than {} (a job of another configuration)",
        humantime::format_duration(Duration::from_secs(age.as_secs())),
        humantime::format_duration(Duration::from_secs(limit.as_secs()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::watch::test_support::{at, LIMITS};

    fn instance() -> ManagedInstance {
        ManagedInstance {
            instance_id: "i-1".into(),
            job: "orders".into(),
            job_id: "orders-1".into(),
            launched_at: at(1000),
        }
    }

    fn status(job_id: &str, phase: Phase, updated: i64) -> Status {
        let mut s = Status::new(job_id, phase);
        s.updated_at = at(updated);
        s
    }

    #[test]
    fn reap_table() {
        type Case = (&'static str, Option<Status>, i64, Option<u64>, bool);
        let cases: Vec<Case> = vec![
            (
                "healthy",
                Some(status("orders-1", Phase::Dumping, 1990)),
                2000,
                None,
                false,
            ),
            (
                "stale",
                Some(status("orders-1", Phase::Dumping, 1900)),
                2000,
                None,
                true,
            ),
            (
                "finished but still up",
                Some(status("orders-1", Phase::Succeeded, 1990)),
                2000,
                None,
                true,
            ),
            (
                "failed but still up",
                Some(status("orders-1", Phase::Failed, 1990)),
                2000,
                None,
                true,
            ),
            (
                "superseded",
                Some(status("orders-2", Phase::Dumping, 1999)),
                2000,
                None,
                true,
            ),
            (
                "booting in time",
                Some(status("orders-1", Phase::Booting, 1001)),
                1200,
                None,
                false,
            ),
            (
                "never started",
                Some(status("orders-1", Phase::Launching, 1001)),
                1301,
                None,
                true,
            ),
            ("no status yet", None, 1100, None, false),
            ("no status ever", None, 1301, None, true),
            (
                "past lifetime",
                Some(status("orders-1", Phase::Dumping, 4799)),
                4800,
                None,
                true,
            ),
            (
                "older than asked",
                Some(status("orders-1", Phase::Dumping, 1599)),
                1600,
                Some(500),
                true,
            ),
            (
                "younger than asked",
                Some(status("orders-1", Phase::Dumping, 1399)),
                1400,
                Some(500),
                false,
            ),
        ];
        for (name, status, now, older_than, reap) in cases {
            let reason = reap_reason(
                &instance(),
                status.as_ref(),
                at(now),
                &LIMITS,
                older_than.map(Duration::from_secs),
            );
            assert_eq!(reason.is_some(), reap, "{name}: {reason:?}");
        }
    }

    #[test]
    fn another_configuration_s_jobs_are_left_alone_unless_asked() {
        // (now, older_than, reap): launched at 1000, long past any
        // lifetime or timeout this configuration knows
        let cases: &[(i64, Option<u64>, bool)] = &[
            (1_000_000, None, false),
            (1_000_000, Some(500), true),
            (1400, Some(500), false),
        ];
        for (now, older_than, reap) in cases {
            let reason =
                foreign_reap_reason(&instance(), at(*now), older_than.map(Duration::from_secs));
            assert_eq!(reason.is_some(), *reap, "{now} {older_than:?}: {reason:?}");
        }
    }
}
