//! Reaping: the cure for a controller that died.
//!
//! `backup-cloud reap` lists every instance carrying our managed tag and
//! terminates those whose job is finished, failed, stale, superseded or past
//! its lifetime, and deletes the temporary databases whose job is over.
//! [`reap_reason`] and [`temporary_reap_reason`] are the pure decisions,
//! table-tested; the controller acts on them.

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

/// Why a temporary database (`instance` standing for it: its identifier,
/// job tags and creation time) should be deleted, or `None` to leave it.
/// It lives from before its job's instance is launched (restoring for up
/// to `restore_limit`) until the job ends, so it goes once the job's status
/// is another run's or terminal, once it is older than the longest its job
/// can run, or when older than `older_than`. While the job is still
/// restoring, the status's heartbeat keeps it (see [`crate::controller::lease`]).
pub fn temporary_reap_reason(
    database: &ManagedInstance,
    status: Option<&Status>,
    now: OffsetDateTime,
    limits: &Limits,
    restore_limit: Duration,
    older_than: Option<Duration>,
) -> Option<String> {
    let age: Duration = (now - database.launched_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let fmt =
        |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string();
    let longest = restore_limit + limits.boot_timeout + limits.max_lifetime + limits.lifetime_grace;
    if age > longest {
        return Some(format!(
            "existing for {}, longer than its job can run ({})",
            fmt(age),
            fmt(longest)
        ));
    }
    if let Some(limit) = older_than.filter(|limit| age > *limit) {
        return Some(format!(
            "existing for {}, older than {}",
            fmt(age),
            fmt(limit)
        ));
    }
    match status {
        Some(status) if status.job_id != database.job_id => Some(format!(
            "its job is over: the job's status belongs to {}",
            status.job_id
        )),
        Some(status) if status.phase.is_terminal() => {
            Some(format!("its job already {}", status.phase.as_str()))
        }
        // The controller heartbeats while it restores, and the agent
        // starts within the boot window once launched: silence beyond both
        // is a controller that died before its job got going.
        Some(status) if status.phase == Phase::Launching => {
            let silent: Duration = (now - status.updated_at)
                .try_into()
                .unwrap_or(Duration::ZERO);
            (silent > limits.heartbeat_timeout + limits.boot_timeout).then(|| {
                format!(
                    "its job stopped while launching: no status for {}",
                    fmt(silent)
                )
            })
        }
        Some(_) => None,
        None => {
            (age > restore_limit + limits.boot_timeout).then(|| "its job has no status".to_owned())
        }
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

    #[test]
    fn a_temporary_database_goes_when_its_job_is_over_or_too_old() {
        let db = ManagedInstance {
            instance_id: "backup-cloud-orders-1".into(),
            job: "orders".into(),
            job_id: "orders-1".into(),
            launched_at: at(0),
        };
        let restore = Duration::from_secs(3600);
        let status = |job_id: &str, phase| Status {
            updated_at: at(100),
            ..Status::new(job_id, phase)
        };
        let reason = |status: Option<&Status>, now| {
            temporary_reap_reason(&db, status, at(now), &LIMITS, restore, None)
        };
        // restoring (heartbeating), then running: left alone
        let heartbeat = |now: i64| Status {
            updated_at: at(now - 5),
            ..Status::new("orders-1", Phase::Launching)
        };
        assert_eq!(reason(Some(&heartbeat(3000)), 3000), None);
        // restoring, but the controller went silent
        let silent = (LIMITS.heartbeat_timeout + LIMITS.boot_timeout).as_secs() as i64 + 101;
        assert!(reason(Some(&status("orders-1", Phase::Launching)), silent)
            .unwrap()
            .contains("stopped while launching"));
        assert_eq!(
            reason(Some(&status("orders-1", Phase::Dumping)), 3000),
            None
        );
        // over
        assert!(reason(Some(&status("orders-1", Phase::Failed)), 60)
            .unwrap()
            .contains("already failed"));
        assert!(reason(Some(&status("orders-2", Phase::Dumping)), 60)
            .unwrap()
            .contains("belongs to orders-2"));
        // never got a status: after the restore and boot windows
        assert_eq!(reason(None, 60), None);
        let late = (restore + LIMITS.boot_timeout).as_secs() as i64 + 1;
        assert!(reason(None, late).unwrap().contains("no status"));
        // past the longest its job can run, whatever the status says
        let longest = (restore + LIMITS.boot_timeout + LIMITS.max_lifetime + LIMITS.lifetime_grace)
            .as_secs() as i64;
        assert!(
            reason(Some(&status("orders-1", Phase::Dumping)), longest + 1)
                .unwrap()
                .contains("longer than its job can run")
        );
        assert!(temporary_reap_reason(
            &db,
            Some(&status("orders-1", Phase::Dumping)),
            at(600),
            &LIMITS,
            restore,
            Some(Duration::from_secs(300))
        )
        .unwrap()
        .contains("older than 5m"));
    }
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
