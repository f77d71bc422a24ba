//! The process exit codes and what each means.
//!
//! Schedulers and scripts branch on these codes (the README documents
//! them), and every part of the program ends in one: the controller's job
//! outcomes, the restore commands' findings, the command line's own
//! errors. They live in a leaf so that each of those can name a code
//! without importing the command line.

use std::process::ExitCode;

/// Exit codes, documented in the README; schedulers depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// A bug or an unexpected failure inside backup-cloud.
    Internal = 1,
    /// The configuration or the command line is wrong.
    Config = 2,
    /// The instance could not be launched, or would not run the agent.
    Launch = 3,
    /// The backup ran and failed.
    BackupFailed = 4,
    /// The backup did not finish in time.
    TimedOut = 5,
    /// The job is already running elsewhere (single-flight).
    AlreadyRunning = 6,
    /// A backup failed verification, restore or drill.
    Unrestorable = 7,
    /// `check`: a job's newest complete backup is older than its
    /// `max_age_alert`, or it has none.
    BackupOverdue = 10,
    /// `check`: a job has no passing verify or drill within its
    /// `verify_every` / `drill_every`.
    ProofOverdue = 11,
    /// `check`: a job's newest verify or drill failed, or a manifest
    /// does not read.
    ProofFailed = 12,
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}
