//! Single-flight: at most one running instance of a job at a time.
//!
//! A lease is a small JSON object at `<prefix>/leases/<job>.json`, taken
//! with S3 conditional writes: created with `If-None-Match: *`, and taken
//! over from a dead holder with `If-Match: <etag>`, so two controllers
//! racing for the same job cannot both win. A lease is never released
//! explicitly: it expires with its job — when the job's status is terminal,
//! its heartbeat is stale, its instance is gone, or its maximum lifetime has
//! passed — so a controller that crashed cannot block the next night.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::controller::watch::{InstanceState, Limits};
use crate::schema::{Phase, Status, SCHEMA_VERSION};

/// The lease document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDoc {
    pub schema_version: u32,
    pub job: String,
    pub job_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub acquired_at: OffsetDateTime,
    /// Host and process of the controller that took it, for operators.
    pub holder: String,
    /// The job's instance, recorded once RunInstances has answered: EC2
    /// may not list a new instance by its tags for a while (eventual
    /// consistency), but it can always be asked for by its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

impl LeaseDoc {
    pub fn new(job: &str, job_id: &str) -> LeaseDoc {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown-host".to_owned());
        LeaseDoc {
            schema_version: SCHEMA_VERSION,
            job: job.to_owned(),
            job_id: job_id.to_owned(),
            acquired_at: OffsetDateTime::now_utc(),
            holder: format!("{host}/{}", std::process::id()),
            instance_id: None,
        }
    }
}

/// Whether the job holding `lease` may still be running.
///
/// `status` is the job's status document if it belongs to the lease's job,
/// `instance` the state of the lease's instance (`None` when no instance
/// with its job id exists yet).
pub fn lease_is_alive(
    lease: &LeaseDoc,
    status: Option<&Status>,
    instance: Option<InstanceState>,
    now: OffsetDateTime,
    limits: &Limits,
) -> bool {
    let age = positive(now - lease.acquired_at);
    if age > limits.max_lifetime + limits.lifetime_grace {
        return false;
    }
    if instance == Some(InstanceState::Gone) {
        return false;
    }
    match status.map(|s| (s.phase, s)) {
        Some((phase, _)) if phase.is_terminal() => false,
        // a controller restoring a temporary database heartbeats while
        // the job is still launching
        Some((Phase::Launching | Phase::Booting, status)) => {
            age <= limits.boot_timeout
                || positive(now - status.updated_at) <= limits.heartbeat_timeout
        }
        None => age <= limits.boot_timeout,
        Some((_, status)) => positive(now - status.updated_at) <= limits.heartbeat_timeout,
    }
}

fn positive(d: time::Duration) -> Duration {
    d.try_into().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::watch::test_support::{at, LIMITS};

    fn lease() -> LeaseDoc {
        LeaseDoc {
            schema_version: 1,
            job: "orders".into(),
            job_id: "orders-1".into(),
            acquired_at: at(1000),
            holder: "h/1".into(),
            instance_id: None,
        }
    }

    fn status(phase: Phase, updated: i64) -> Status {
        let mut s = Status::new("orders-1", phase);
        s.updated_at = at(updated);
        s
    }

    #[test]
    fn liveness_table() {
        use InstanceState::*;
        let running = Some(Running);
        type Case = (
            &'static str,
            Option<Status>,
            Option<InstanceState>,
            i64,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("just taken, nothing launched yet", None, None, 1010, true),
            (
                "holder died before launching",
                None,
                None,
                1000 + 301,
                false,
            ),
            (
                "booting within the window",
                Some(status(Phase::Booting, 1001)),
                running,
                1200,
                true,
            ),
            (
                "booting too long",
                Some(status(Phase::Booting, 1001)),
                running,
                1000 + 301,
                false,
            ),
            (
                "dumping with a fresh heartbeat",
                Some(status(Phase::Dumping, 1990)),
                running,
                2000,
                true,
            ),
            (
                "dumping with a stale heartbeat",
                Some(status(Phase::Dumping, 1900)),
                running,
                2000,
                false,
            ),
            (
                "finished",
                Some(status(Phase::Succeeded, 1990)),
                running,
                2000,
                false,
            ),
            (
                "failed",
                Some(status(Phase::Failed, 1990)),
                None,
                2000,
                false,
            ),
            (
                "instance gone",
                Some(status(Phase::Dumping, 1999)),
                Some(Gone),
                2000,
                false,
            ),
            (
                "past max lifetime",
                Some(status(Phase::Dumping, 1000 + 3800)),
                running,
                1000 + 3721,
                false,
            ),
        ];
        for (name, status, instance, now, alive) in cases {
            assert_eq!(
                lease_is_alive(&lease(), status.as_ref(), instance, at(now), &LIMITS),
                alive,
                "{name}"
            );
        }
    }

    #[test]
    fn lease_documents_round_trip() {
        let doc = LeaseDoc::new("orders", "orders-1");
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<LeaseDoc>(&json).unwrap(), doc);
    }
}
