//! Watching a launched job: observe → decide → act.
//!
//! Each round observes the instance first and the status parameter second
//! (so a job that wrote its final status and then shut down is never
//! mistaken for a vanished instance), then [`decide`] — pure and
//! table-tested — says whether to keep waiting or how the job ended. Time is
//! measured on the controller's clock only: a heartbeat is "fresh" when the
//! status document last *changed* recently, whatever the instance's clock
//! says.

use std::time::Duration;

use crate::schema::{Phase, Status};

/// The instance's lifecycle state, as far as the watch loop cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    /// Shutting down, stopping, stopped, terminated, or no longer listed.
    Gone,
}

/// What one round of observation saw.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub instance: InstanceState,
    /// The status document, if it belongs to this job.
    pub status: Option<&'a Status>,
    /// Time since the job was launched.
    pub since_launch: Duration,
    /// Time since the status document last changed.
    pub since_last_change: Duration,
}

/// The limits the decision is taken against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub heartbeat_timeout: Duration,
    pub boot_timeout: Duration,
    pub max_lifetime: Duration,
}

/// How a job ended, or that it has not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Continue,
    Succeeded { manifest_key: String },
    Failed { reason: String },
    TimedOut { reason: String },
}

/// Grace on top of the instance's maximum lifetime before the controller
/// stops waiting for the dead-man shutdown to report in.
pub const LIFETIME_GRACE: Duration = Duration::from_secs(120);

/// Decides the job's fate from one observation.
pub fn decide(observation: &Observation<'_>, limits: &Limits) -> Decision {
    let phase = observation.status.map(|s| s.phase);
    match (phase, observation.status) {
        (Some(Phase::Succeeded), Some(status)) => {
            return match &status.manifest_key {
                Some(key) => Decision::Succeeded {
                    manifest_key: key.clone(),
                },
                None => Decision::Failed {
                    reason: "the agent reported success without a manifest".to_owned(),
                },
            }
        }
        (Some(Phase::Failed), Some(status)) => {
            let reason = if status.message.is_empty() {
                "the agent reported failure without a reason".to_owned()
            } else {
                status.message.clone()
            };
            return Decision::Failed { reason };
        }
        _ => {}
    }
    if observation.instance == InstanceState::Gone {
        return Decision::Failed {
            reason: format!(
                "the instance went away while the job was {}",
                phase.map_or("launching", Phase::as_str)
            ),
        };
    }
    let agent_started = phase.is_some_and(|p| !matches!(p, Phase::Launching | Phase::Booting));
    if agent_started {
        if observation.since_last_change > limits.heartbeat_timeout {
            return Decision::TimedOut {
                reason: format!(
                    "no heartbeat from the agent for {} (phase {})",
                    humantime::format_duration(round_secs(observation.since_last_change)),
                    phase.map_or("unknown", Phase::as_str)
                ),
            };
        }
    } else if observation.since_launch > limits.boot_timeout {
        return Decision::TimedOut {
            reason: format!(
                "the agent did not start within {}",
                humantime::format_duration(limits.boot_timeout)
            ),
        };
    }
    if observation.since_launch > limits.max_lifetime + LIFETIME_GRACE {
        return Decision::TimedOut {
            reason: format!(
                "the job outlived its maximum lifetime of {}",
                humantime::format_duration(limits.max_lifetime)
            ),
        };
    }
    Decision::Continue
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Limits and clock helpers shared by the controller's decision tables.
#[cfg(test)]
pub mod test_support {
    use super::*;

    pub const LIMITS: Limits = Limits {
        heartbeat_timeout: Duration::from_secs(60),
        boot_timeout: Duration::from_secs(300),
        max_lifetime: Duration::from_secs(3600),
    };

    /// `secs` seconds after the epoch.
    pub fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::LIMITS;
    use super::*;

    fn status(phase: Phase) -> Status {
        Status::new("job-1", phase)
    }

    fn observe(
        instance: InstanceState,
        status: Option<&Status>,
        since_launch: u64,
        since_last_change: u64,
    ) -> Decision {
        decide(
            &Observation {
                instance,
                status,
                since_launch: Duration::from_secs(since_launch),
                since_last_change: Duration::from_secs(since_last_change),
            },
            &LIMITS,
        )
    }

    #[test]
    fn decisions_table() {
        use InstanceState::*;
        let mut succeeded = status(Phase::Succeeded);
        succeeded.manifest_key = Some("p/backup/j/t/manifest.json".into());
        let mut failed = status(Phase::Failed);
        failed.set_message("pg_dump failed: password authentication failed");
        let dumping = status(Phase::Dumping);
        let booting = status(Phase::Booting);
        let succeeded_without_manifest = status(Phase::Succeeded);

        type Case<'a> = (
            &'a str,
            InstanceState,
            Option<&'a Status>,
            u64,
            u64,
            &'a str,
        );
        let cases: &[Case] = &[
            ("healthy dump", Running, Some(&dumping), 100, 5, "continue"),
            ("success", Running, Some(&succeeded), 100, 5, "succeeded"),
            (
                "success then shutdown",
                Gone,
                Some(&succeeded),
                100,
                5,
                "succeeded",
            ),
            (
                "success without manifest",
                Gone,
                Some(&succeeded_without_manifest),
                100,
                5,
                "failed",
            ),
            ("agent failure", Running, Some(&failed), 100, 5, "failed"),
            (
                "instance vanished mid-dump",
                Gone,
                Some(&dumping),
                100,
                5,
                "failed",
            ),
            ("instance vanished at boot", Gone, None, 10, 10, "failed"),
            (
                "stale heartbeat",
                Running,
                Some(&dumping),
                500,
                61,
                "timed out",
            ),
            (
                "heartbeat at the limit",
                Running,
                Some(&dumping),
                500,
                60,
                "continue",
            ),
            (
                "still booting",
                Pending,
                Some(&booting),
                299,
                299,
                "continue",
            ),
            (
                "never booted",
                Running,
                Some(&booting),
                301,
                301,
                "timed out",
            ),
            (
                "no status yet, too long",
                Running,
                None,
                301,
                301,
                "timed out",
            ),
            (
                "past max lifetime",
                Running,
                Some(&dumping),
                3600 + 121,
                1,
                "timed out",
            ),
            (
                "within lifetime grace",
                Running,
                Some(&dumping),
                3600 + 119,
                1,
                "continue",
            ),
        ];
        for (name, instance, status, since_launch, since_change, expected) in cases {
            let decision = observe(*instance, *status, *since_launch, *since_change);
            let kind = match &decision {
                Decision::Continue => "continue",
                Decision::Succeeded { .. } => "succeeded",
                Decision::Failed { .. } => "failed",
                Decision::TimedOut { .. } => "timed out",
            };
            assert_eq!(kind, *expected, "{name}: {decision:?}");
        }
    }

    #[test]
    fn failure_reasons_carry_the_agents_message() {
        let mut failed = status(Phase::Failed);
        failed.set_message("pg_dump failed: no such database");
        assert_eq!(
            observe(InstanceState::Gone, Some(&failed), 1, 1),
            Decision::Failed {
                reason: "pg_dump failed: no such database".into()
            }
        );
    }
}
