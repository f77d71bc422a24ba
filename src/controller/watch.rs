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

/// How long after RunInstances an instance that EC2 says it does not know
/// (`InvalidInstanceID.NotFound`) is taken to be on its way rather than
/// gone. EC2's API is eventually consistent: an instance just launched may
/// be unknown to DescribeInstances and TerminateInstances for a while ("Eventual
/// consistency in the Amazon EC2 API", EC2 API reference, which advises
/// retrying with backoff). A terminated instance stays listed for about an
/// hour, so an instance still unknown this long after its launch is gone.
pub const NOT_FOUND_WINDOW: Duration = Duration::from_secs(300);

/// What DescribeInstances said of one instance asked for by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Listed, in this state.
    Listed(InstanceState),
    /// `InvalidInstanceID.NotFound`.
    NotFound,
}

/// The state a lookup made `since_launch` after the launch stands for:
/// not found within [`NOT_FOUND_WINDOW`] is pending, not gone.
pub fn state_of(lookup: Lookup, since_launch: Duration) -> InstanceState {
    match lookup {
        Lookup::Listed(state) => state,
        Lookup::NotFound if since_launch < NOT_FOUND_WINDOW => InstanceState::Pending,
        Lookup::NotFound => InstanceState::Gone,
    }
}

/// What to do about an instance that must go, from a lookup made
/// `since_launch` after its launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeTerminate {
    /// Terminated or terminating already: nothing to do.
    AlreadyGone,
    /// Listed and alive: call TerminateInstances.
    Terminate,
    /// Not visible yet: look again shortly (TerminateInstances would be
    /// refused with the same `InvalidInstanceID.NotFound`).
    LookAgain,
}

/// Decides whether to terminate now, from what EC2 says of the instance.
pub fn before_terminate(lookup: Lookup, since_launch: Duration) -> BeforeTerminate {
    match state_of(lookup, since_launch) {
        InstanceState::Gone => BeforeTerminate::AlreadyGone,
        InstanceState::Pending if lookup == Lookup::NotFound => BeforeTerminate::LookAgain,
        InstanceState::Pending | InstanceState::Running => BeforeTerminate::Terminate,
    }
}

/// Whether a verdict of failure rests only on the instance having gone
/// away while the status document still showed the job unfinished: the
/// agent may have stored its backup and then lost its final status write
/// (throttled), so the controller looks for the manifest before calling
/// the job failed.
pub fn gone_without_final_status(observation: &Observation<'_>) -> bool {
    observation.instance == InstanceState::Gone
        && !observation.status.is_some_and(|s| s.phase.is_terminal())
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
    fn not_found_is_pending_within_the_window_and_gone_after_it() {
        use InstanceState::*;
        let window = NOT_FOUND_WINDOW.as_secs();
        // (name, lookup, seconds since launch, state, before terminating)
        let cases: &[(&str, Lookup, u64, InstanceState, BeforeTerminate)] = &[
            (
                "just launched, not visible yet",
                Lookup::NotFound,
                2,
                Pending,
                BeforeTerminate::LookAgain,
            ),
            (
                "not visible at the end of the window",
                Lookup::NotFound,
                window - 1,
                Pending,
                BeforeTerminate::LookAgain,
            ),
            (
                "unknown long after launch",
                Lookup::NotFound,
                window,
                Gone,
                BeforeTerminate::AlreadyGone,
            ),
            (
                "listed pending",
                Lookup::Listed(Pending),
                2,
                Pending,
                BeforeTerminate::Terminate,
            ),
            (
                "listed running",
                Lookup::Listed(Running),
                100,
                Running,
                BeforeTerminate::Terminate,
            ),
            (
                "listed terminated",
                Lookup::Listed(Gone),
                2,
                Gone,
                BeforeTerminate::AlreadyGone,
            ),
        ];
        for (name, lookup, since, state, step) in cases {
            let since = Duration::from_secs(*since);
            assert_eq!(state_of(*lookup, since), *state, "{name}");
            assert_eq!(before_terminate(*lookup, since), *step, "{name}");
        }
    }

    #[test]
    fn a_job_is_not_failed_on_not_found_alone() {
        // An instance EC2 does not list yet, seconds after launch, with no
        // status: the job goes on, it is not "gone at boot".
        let observation = Observation {
            instance: state_of(Lookup::NotFound, Duration::from_secs(3)),
            status: None,
            since_launch: Duration::from_secs(3),
            since_last_change: Duration::from_secs(3),
            since_last_progress: Duration::from_secs(3),
        };
        assert_eq!(decide(&observation, &LIMITS), Decision::Continue);
    }

    #[test]
    fn a_vanished_instance_without_a_final_status_is_checked_for_a_manifest() {
        use InstanceState::*;
        let uploading = status(Phase::Uploading);
        let failed = status(Phase::Failed);
        let succeeded = status(Phase::Succeeded);
        let cases: &[(&str, InstanceState, Option<&Status>, bool)] = &[
            ("gone mid-upload", Gone, Some(&uploading), true),
            ("gone before any status", Gone, None, true),
            ("gone after reporting failure", Gone, Some(&failed), false),
            (
                "gone after reporting success",
                Gone,
                Some(&succeeded),
                false,
            ),
            ("running", Running, Some(&uploading), false),
        ];
        for (name, instance, status, expected) in cases {
            let observation = Observation {
                instance: *instance,
                status: *status,
                since_launch: Duration::from_secs(100),
                since_last_change: Duration::from_secs(1),
                since_last_progress: Duration::from_secs(1),
            };
            assert_eq!(gone_without_final_status(&observation), *expected, "{name}");
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
