//! Watching a launched job: observe → decide → act.
//!
//! Each round observes the instance first and the status parameter second
//! (so a job that wrote its final status and then shut down is never
//! mistaken for a vanished instance), then [`decide`] — pure and
//! table-tested — says whether to keep waiting or how the job ended. Time is
//! measured on the controller's clock only: a heartbeat is "fresh" when the
//! status document last *changed* recently, whatever the instance's clock
//! says. Progress is judged the same way: the transfer counters
//! (`bytes_read`, `bytes_uploaded`, `objects_done`) must move within the
//! stall timeout while the job dumps or uploads, or the job is hung even
//! though its heartbeat keeps coming. A legitimate wait (a table lock)
//! looks the same, which is why the default is long.

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
    /// Time since the transfer counters last moved (or the phase changed).
    pub since_last_progress: Duration,
}

/// The limits the decision is taken against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub heartbeat_timeout: Duration,
    pub boot_timeout: Duration,
    pub max_lifetime: Duration,
    /// Past `max_lifetime`, before giving up on the dead-man shutdown.
    pub lifetime_grace: Duration,
    /// How long the transfer counters may stand still while dumping or
    /// uploading.
    pub stall_timeout: Duration,
}

/// How a job ended, or that it has not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Continue,
    Succeeded { manifest_key: String },
    Failed { reason: String },
    TimedOut { reason: String },
}

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
        if matches!(phase, Some(Phase::Dumping | Phase::Uploading))
            && observation.since_last_progress > limits.stall_timeout
        {
            return Decision::TimedOut {
                reason: format!(
                    "no progress for {} (phase {}): bytes read, bytes uploaded and objects done stood still although the agent kept reporting",
                    humantime::format_duration(round_secs(observation.since_last_progress)),
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
    if observation.since_launch > limits.max_lifetime + limits.lifetime_grace {
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
        lifetime_grace: Duration::from_secs(120),
        stall_timeout: Duration::from_secs(1800),
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
                since_last_progress: Duration::from_secs(since_last_change),
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
    fn stalls_table() {
        use InstanceState::*;
        // (name, phase, since last change, since last progress, expected)
        let cases: &[(&str, Phase, u64, u64, &str)] = &[
            ("moving", Phase::Dumping, 5, 5, "continue"),
            (
                "hung upload, heartbeats",
                Phase::Uploading,
                5,
                1801,
                "timed out",
            ),
            (
                "hung dump, heartbeats",
                Phase::Dumping,
                5,
                1801,
                "timed out",
            ),
            ("still at the limit", Phase::Dumping, 5, 1800, "continue"),
            (
                "lock wait within limit",
                Phase::Dumping,
                5,
                1700,
                "continue",
            ),
            (
                "preparing is not judged",
                Phase::Preparing,
                5,
                3000,
                "continue",
            ),
            (
                "verifying is not judged",
                Phase::Verifying,
                5,
                3000,
                "continue",
            ),
            (
                "silent and still: heartbeat first",
                Phase::Uploading,
                61,
                1801,
                "no heartbeat",
            ),
        ];
        for (name, phase, since_change, since_progress, expected) in cases {
            let status = status(*phase);
            let decision = decide(
                &Observation {
                    instance: Running,
                    status: Some(&status),
                    since_launch: Duration::from_secs(2000),
                    since_last_change: Duration::from_secs(*since_change),
                    since_last_progress: Duration::from_secs(*since_progress),
                },
                &LIMITS,
            );
            let kind = match &decision {
                Decision::Continue => "continue",
                Decision::TimedOut { reason } if reason.starts_with("no heartbeat") => {
                    "no heartbeat"
                }
                Decision::TimedOut { reason } => {
                    assert!(reason.contains("no progress"), "{name}: {reason}");
                    "timed out"
                }
                other => panic!("{name}: {other:?}"),
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
