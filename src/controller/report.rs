//! How a job ended, and the events the controller reports while it runs.
//!
//! The controller decides outcomes and emits events; rendering them (bars,
//! lines, JSON) is `output`'s business, above the controller. So the
//! controller speaks to a [`Report`] it is handed, and `output` implements
//! it.

use serde::Serialize;

use crate::exit::Exit;
use crate::schema::Status;

/// Where the controller's events go.
pub trait Report: Send + Sync {
    /// A job's instance was launched.
    fn launched(
        &self,
        job: &str,
        job_id: &str,
        instance_id: &str,
        ami_id: &str,
        instance_type: &str,
        spot: bool,
    );
    /// A job's status document changed.
    fn progress(&self, job: &str, status: &Status);
    /// A job ended (or was detached from).
    fn finished(&self, result: &JobResult);
}

/// How a job ended, as reported to people and schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
    /// Launched and left running on purpose (`launch`).
    Detached,
    ConfigError,
    LaunchFailed,
    /// Refused because the job is already running (single-flight).
    AlreadyRunning,
    InternalError,
}

impl Outcome {
    /// The outcome as people read it (`timed out`, `left running`).
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed out",
            Outcome::Interrupted => "interrupted",
            Outcome::Detached => "left running",
            Outcome::ConfigError => "config error",
            Outcome::LaunchFailed => "launch failed",
            Outcome::AlreadyRunning => "already running",
            Outcome::InternalError => "internal error",
        }
    }

    /// The documented exit code for this outcome.
    pub fn exit(self) -> Exit {
        match self {
            Outcome::Succeeded | Outcome::Detached => Exit::Success,
            Outcome::Failed => Exit::BackupFailed,
            Outcome::TimedOut => Exit::TimedOut,
            Outcome::Interrupted => Exit::Interrupted,
            Outcome::ConfigError => Exit::Config,
            Outcome::LaunchFailed => Exit::Launch,
            Outcome::AlreadyRunning => Exit::AlreadyRunning,
            Outcome::InternalError => Exit::Internal,
        }
    }
}

/// The result of one job, as the final event and in summaries.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub job: String,
    pub job_id: Option<String>,
    pub instance_id: Option<String>,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub reason: Option<String>,
    /// `s3://bucket/key` of the manifest, on success.
    pub manifest: Option<String>,
    pub objects: u64,
    pub bytes: u64,
    pub elapsed_secs: u64,
}

impl JobResult {
    /// A result for a job that produced no backup (yet): a failure, or a
    /// detached launch.
    pub fn without_backup(job: &str, outcome: Outcome, reason: String) -> JobResult {
        JobResult {
            job: job.to_owned(),
            job_id: None,
            instance_id: None,
            outcome,
            exit_code: outcome.exit() as u8,
            reason: Some(reason),
            manifest: None,
            objects: 0,
            bytes: 0,
            elapsed_secs: 0,
        }
    }
}
