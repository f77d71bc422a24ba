//! The controller: plans backup jobs, launches their instances, watches
//! them through the status parameter, and guarantees each instance is gone
//! before it reports the outcome — plus the operator's tools around that:
//! `launch`, `status`, `wait`, `list`, `terminate`, `reap`, `plan`.
//!
//! Once RunInstances has succeeded, every path out of an attached run —
//! success, failure, timeout, Ctrl-C, an error of our own — goes through
//! termination, unless the operator chose to leave the job running
//! detached; a termination that cannot be confirmed is itself an error.
//! Ctrl-C is handled once, in [`Interrupts`], and fanned out to every job;
//! only the commands that watch jobs handle it at all.

pub mod cleanup;
pub mod estimate;
pub mod launch;
pub mod lease;
pub mod plan;
pub mod platform;
pub mod reap;
pub mod report;
pub mod temporary;
pub mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{watch as signal, OnceCell, Semaphore};
use tokio::time::Instant;

use crate::aws::AwsClients;
use crate::config::{Config, ConfigError, JobConfig, RdsDatabase, Source};
use crate::layout;
use crate::notify::Notifier;
use crate::s3::{Bucket, Condition};
use crate::schema::{parse_document, Manifest, Phase, Status};
use crate::status_store::{self, SsmStatusStore, StatusError, StatusStore};
use crate::userdata::UserDataError;
use launch::{AgentBinary, InstanceInfo, LaunchError};
use lease::LeaseDoc;
use plan::JobPlan;
use report::{JobResult, Outcome, Report};
use watch::{Decision, InstanceState, Limits, Observation};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no AWS region configured: set aws.region in the config file, AWS_REGION, or a profile region")]
    NoRegion,
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    UserData(#[from] UserDataError),
    #[error("{0}")]
    Status(#[from] StatusError),
    #[error("job {job} is already running as {job_id} (lease taken {since} by {holder}); use --attach to follow it")]
    AlreadyRunning {
        job: String,
        job_id: String,
        since: String,
        holder: String,
    },
    #[error("job {job} has no status yet: it was never launched with this configuration")]
    NeverLaunched { job: String },
    #[error("job {job_id} failed: {reason}")]
    Failed { job_id: String, reason: String },
    #[error("job {job_id} timed out: {reason}")]
    TimedOut { job_id: String, reason: String },
    #[error("job {job_id} interrupted; its instance {instance_id} was terminated")]
    Interrupted { job_id: String, instance_id: String },
    #[error("job {job} was not launched: interrupted")]
    NotLaunched { job: String },
    #[error(
        "job {job} would not finish: the estimate is {estimate} for {size} ({basis}), longer than \
         its max_lifetime of {max_lifetime}, after which the instance is terminated; raise \
         jobs.{job}.max_lifetime (or instance.max_lifetime), or make it faster: a larger \
         jobs.{job}.instance_type, format = \"directory\" with jobs (PostgreSQL), mode = \"mydumper\" (MySQL)"
    )]
    WouldNotFinish {
        job: String,
        estimate: String,
        size: String,
        basis: String,
        max_lifetime: String,
    },
    #[error(transparent)]
    Temporary(#[from] temporary::TemporaryError),
    #[error("job {job_id} ended ({outcome}) but its instance could not be confirmed terminated: {source}")]
    Cleanup {
        job_id: String,
        outcome: String,
        source: Box<LaunchError>,
    },
}

impl RunError {
    /// How this error is reported.
    pub fn outcome(&self) -> Outcome {
        match self {
            RunError::Config(_) | RunError::NoRegion | RunError::WouldNotFinish { .. } => {
                Outcome::ConfigError
            }
            RunError::Launch(_) | RunError::UserData(_) | RunError::Status(_) => {
                Outcome::LaunchFailed
            }
            RunError::AlreadyRunning { .. } => Outcome::AlreadyRunning,
            RunError::NeverLaunched { .. } | RunError::Failed { .. } => Outcome::Failed,
            RunError::TimedOut { .. } => Outcome::TimedOut,
            RunError::Interrupted { .. } | RunError::NotLaunched { .. } => Outcome::Interrupted,
            RunError::Cleanup { .. } => Outcome::InternalError,
            RunError::Temporary(temporary::TemporaryError::Interrupted { .. }) => {
                Outcome::Interrupted
            }
            RunError::Temporary(_) => Outcome::LaunchFailed,
        }
    }

    /// The job id of the run this error ended (for `AlreadyRunning`, the
    /// other run's), when the run had one.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            RunError::AlreadyRunning { job_id, .. }
            | RunError::Failed { job_id, .. }
            | RunError::TimedOut { job_id, .. }
            | RunError::Interrupted { job_id, .. }
            | RunError::Cleanup { job_id, .. } => Some(job_id),
            _ => None,
        }
    }
}

/// What to do with running jobs when the operator presses Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    Terminate,
    Detach,
}

/// Ctrl-C, handled once: the first press asks (on a terminal) whether to
/// terminate or detach, and every watcher learns the answer.
#[derive(Clone)]
pub struct Interrupts {
    receiver: signal::Receiver<Interrupt>,
}

/// Where Ctrl-C stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    NotPressed,
    /// Pressed; the operator is being asked what to do.
    Asking,
    Answered(OnInterrupt),
}

impl Interrupts {
    /// Starts handling Ctrl-C; an operator who does not answer the
    /// question within `prompt_timeout` gets the instances terminated.
    /// For the commands that watch jobs only: once this runs, Ctrl-C no
    /// longer stops the process.
    pub fn listen(prompt_timeout: Duration) -> Interrupts {
        let (sender, receiver) = signal::channel(Interrupt::NotPressed);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            let _ = sender.send(Interrupt::Asking);
            let choice = if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                ask_on_interrupt(prompt_timeout).await
            } else {
                OnInterrupt::Terminate
            };
            let _ = sender.send(Interrupt::Answered(choice));
        });
        Interrupts { receiver }
    }

    /// Leaves Ctrl-C alone: it stops the process at once, as it does any
    /// command. For the commands that watch no job.
    pub fn unhandled() -> Interrupts {
        let (_, receiver) = signal::channel(Interrupt::NotPressed);
        Interrupts { receiver }
    }

    /// Whether the operator answered Ctrl-C with "leave them running".
    fn detached(&self) -> bool {
        *self.receiver.borrow() == Interrupt::Answered(OnInterrupt::Detach)
    }

    /// Whether the operator has pressed Ctrl-C, answered or not.
    fn pressed(&self) -> bool {
        *self.receiver.borrow() != Interrupt::NotPressed
    }

    /// Resolves when the operator has interrupted, with their choice.
    async fn wait(&mut self) -> OnInterrupt {
        loop {
            if let Interrupt::Answered(choice) = *self.receiver.borrow_and_update() {
                return choice;
            }
            if self.receiver.changed().await.is_err() {
                // The listener is gone: no interrupt will ever come.
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn ask_on_interrupt(timeout: Duration) -> OnInterrupt {
    eprint!(
        "\ninterrupted: terminate the backup instance(s) [T], or leave them running detached [d]? "
    );
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        answer = answer => match answer {
            Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("d") => OnInterrupt::Detach,
            _ => OnInterrupt::Terminate,
        },
        _ = tokio::signal::ctrl_c() => OnInterrupt::Terminate,
        _ = tokio::time::sleep(timeout) => OnInterrupt::Terminate,
    }
}

/// Options of `run` and `launch`.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// The agent binary to ship; defaults to this executable.
    pub agent_binary: Option<PathBuf>,
    /// When the job is already running, follow it instead of refusing.
    pub attach: bool,
    /// Return after launching instead of watching.
    pub detach: bool,
}

/// A job that is running on an instance: what watching it needs.
#[derive(Debug, Clone)]
struct RunningJob {
    job: String,
    job_id: String,
    instance_id: String,
    limits: Limits,
    /// When the instance was launched, on this controller's clock.
    launched: Instant,
}

/// How long a progress write that an agent sent before its job was marked
/// failed may take to land, the SDK's retries of a throttled write
/// included (its first two backoffs are at most 1 s and 2 s).
const AGENT_WRITE_SETTLE: Duration = Duration::from_secs(3);

/// An instance `end_instances` is to end: its id, its job id (from its
/// tags or its lease) and its age.
struct LiveInstance {
    instance_id: String,
    job_id: Option<String>,
    age: Duration,
}

/// Time since `lease` was taken: an upper bound of its instance's age
/// (the lease is taken just before the launch).
fn lease_age(lease: &LeaseDoc) -> Duration {
    Duration::try_from(OffsetDateTime::now_utc() - lease.acquired_at).unwrap_or(Duration::ZERO)
}

/// The agent binary, uploaded once per controller and shared by its jobs;
/// each launch presigns its own URL to it.
struct PublishedAgent {
    sha256: String,
    key: String,
}

/// Everything the controller's commands share.
pub struct Controller {
    config: Config,
    aws: AwsClients,
    store: SsmStatusStore,
    reporter: Arc<dyn Report>,
    interrupts: Interrupts,
    /// The agent executable, read and inspected once.
    agent_binary: OnceCell<AgentBinary>,
    agent: OnceCell<PublishedAgent>,
    /// The job id each job of this controller is running as, by job name,
    /// from taking its lease (or attaching) to its result: what a job
    /// whose task panicked leaves to clean up.
    claims: Mutex<HashMap<String, String>>,
    /// Where failed jobs are announced (`notify.sns_topic_arn`).
    notifier: Option<Notifier>,
    /// The temporary database each job of this controller has asked RDS
    /// for, by job name: deleted when the job ends.
    temporaries: Mutex<HashMap<String, Temporary>>,
}

/// A temporary database a job asked RDS for.
#[derive(Debug, Clone)]
struct Temporary {
    job_id: String,
    identifier: String,
    /// An Aurora DB cluster, or a DB instance.
    cluster: bool,
    /// Where its master password is kept while the job runs; `None` when
    /// that parameter now holds a newer run's password.
    password_parameter: Option<String>,
}

impl Controller {
    pub async fn new(
        config: Config,
        reporter: Arc<impl Report + 'static>,
        interrupts: Interrupts,
    ) -> Controller {
        let aws = AwsClients::load_with(
            config.aws.region.as_deref(),
            config.aws.endpoint_url.as_deref(),
            config.timeouts.aws(),
        )
        .await;
        let store = SsmStatusStore::new(aws.ssm.clone());
        let notifier = Notifier::new(&aws, config.notify.sns_topic_arn.as_deref());
        Controller {
            notifier,
            config,
            aws,
            store,
            reporter,
            interrupts,
            agent_binary: OnceCell::new(),
            agent: OnceCell::new(),
            claims: Mutex::new(HashMap::new()),
            temporaries: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs (or, with `detach`, launches) one job and reports its result.
    pub async fn run_job(&self, job_name: &str, options: &LaunchOptions) -> JobResult {
        let started = Instant::now();
        let result = match self.start(job_name, options).await {
            Ok(Started::Launched(running)) if options.detach => Ok(JobResult {
                job_id: Some(running.job_id),
                instance_id: Some(running.instance_id),
                ..JobResult::without_backup(job_name, Outcome::Detached, "launched detached".into())
            }),
            Ok(Started::Launched(running)) | Ok(Started::Attached(running)) => {
                self.watch_to_end(&running).await
            }
            Err(err) => Err(err),
        };
        // the job id, so that an attached run's temporary database, which
        // another controller made, is found by its tag and ends too
        let mut result = result.unwrap_or_else(|err| JobResult {
            job_id: err.job_id().map(str::to_owned),
            ..JobResult::without_backup(job_name, err.outcome(), err.to_string())
        });
        if result.elapsed_secs == 0 {
            result.elapsed_secs = started.elapsed().as_secs();
        }
        self.claims.lock().expect("claims lock").remove(job_name);
        if self.job_ended(&result) {
            let job_id = result.job_id.clone();
            self.end_temporaries(job_name, job_id.as_deref(), &mut result)
                .await;
        }
        self.finished(&result).await;
        result
    }

    /// Whether the run behind `result` is over, so that what it made goes:
    /// not when it was left running (detached on purpose, or an instance
    /// left at the operator's Ctrl-C answer), nor when it was another
    /// run's. A run the answer caught before it had an instance is over:
    /// nothing would ever use its temporary database.
    fn job_ended(&self, result: &JobResult) -> bool {
        let left_running = matches!(result.outcome, Outcome::Detached | Outcome::AlreadyRunning)
            || (self.interrupts.detached() && result.instance_id.is_some());
        !left_running
    }

    /// Deletes the temporary databases of `job`'s run `job_id` (the one
    /// this controller made, and any RDS lists with the job id's tag, such
    /// as one a detached run made), and their password parameters. One that
    /// cannot be confirmed deleted turns `result` into an internal error
    /// naming it.
    async fn end_temporaries(&self, job: &str, job_id: Option<&str>, result: &mut JobResult) {
        let mut ending: Vec<Temporary> = self
            .temporaries
            .lock()
            .expect("temporaries lock")
            .remove(job)
            .into_iter()
            .collect();
        let rds_job = self
            .config
            .jobs
            .get(job)
            .is_some_and(|j| matches!(j.source, Source::Rds(_)));
        if let (Some(job_id), true) = (job_id, rds_job) {
            match self
                .rds()
                .list_ours(plan::TAG_MANAGED, plan::TAG_JOB, plan::TAG_JOB_ID)
                .await
            {
                Ok(listed) => {
                    for db in listed {
                        if db.job_id.as_deref() == Some(job_id)
                            && !ending.iter().any(|t| t.identifier == db.identifier)
                        {
                            ending.push(Temporary {
                                job_id: job_id.to_owned(),
                                identifier: db.identifier,
                                cluster: db.cluster,
                                password_parameter: Some(plan::temporary_password_parameter(
                                    &self.config.status_parameter(job),
                                )),
                            });
                        }
                    }
                }
                Err(err) => tracing::warn!("temporary databases of {job_id} not listed: {err}"),
            }
        }
        for temporary in ending {
            if let Err(err) = self.delete_temporary(&temporary).await {
                let reason = result.reason.take().unwrap_or_default();
                let lead = if reason.is_empty() {
                    String::new()
                } else {
                    format!("{reason}; ")
                };
                result.reason = Some(format!(
                    "{lead}its temporary database {} could not be confirmed deleted: {err}",
                    temporary.identifier
                ));
                result.outcome = Outcome::InternalError;
                result.exit_code = Outcome::InternalError.exit() as u8;
            }
        }
    }

    /// Deletes one temporary database and its password parameter.
    async fn delete_temporary(&self, temporary: &Temporary) -> Result<(), RunError> {
        tracing::info!(identifier = %temporary.identifier, job_id = %temporary.job_id, "deleting the temporary database");
        self.rds()
            .delete(
                &temporary.identifier,
                temporary.cluster,
                self.config.timeouts.temporary_database,
            )
            .await?;
        if let Some(parameter) = &temporary.password_parameter {
            temporary::forget_password(&self.aws.ssm, parameter).await?;
        }
        Ok(())
    }

    fn rds(&self) -> temporary::Rds {
        temporary::Rds::new(self.aws.rds.clone())
    }

    /// Restores the job's temporary database, gives it a fresh master
    /// password (kept in the job's SecureString parameter) and points
    /// `plan`'s spec at it. The job's status says what is being restored
    /// meanwhile, refreshed as a heartbeat, so the lease stays alive and
    /// `reap` leaves the database alone. A failure marks the job failed.
    async fn prepare_temporary(
        &self,
        job: &JobConfig,
        plan: &mut JobPlan,
        restore: &temporary::Restore,
    ) -> Result<(), RunError> {
        let made = self.make_temporary(job, plan, restore).await;
        if let Err(err) = &made {
            self.mark_failed(
                &plan.spec.status_parameter,
                &plan.spec.job_id,
                &err.to_string(),
            )
            .await;
        }
        made
    }

    async fn make_temporary(
        &self,
        job: &JobConfig,
        plan: &mut JobPlan,
        restore: &temporary::Restore,
    ) -> Result<(), RunError> {
        let rds = self.rds();
        let identifier = temporary::identifier(&plan.spec.job_id);
        let cluster = matches!(restore.database, RdsDatabase::Cluster(_));
        let parameter = plan.spec.status_parameter.clone();
        let what = format!(
            "restoring {} into temporary database {identifier}",
            restore.describe()
        );
        let mut status = Status::new(&plan.spec.job_id, Phase::Launching);
        status.message = what.clone();
        status_store::write_patiently(
            &self.store,
            &parameter,
            &status,
            status_store::CONTROLLER_PATIENCE,
        )
        .await?;
        self.reporter.progress(&job.name, &status);
        self.temporaries.lock().expect("temporaries lock").insert(
            job.name.clone(),
            Temporary {
                job_id: plan.spec.job_id.clone(),
                identifier: identifier.clone(),
                cluster,
                password_parameter: Some(plan.spec.password_parameter.clone()),
            },
        );
        let tags: Vec<(String, String)> = plan
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let limit = self.config.timeouts.temporary_database;
        rds.create(restore, &identifier, &tags).await?;
        let heartbeat = (self.config.status.heartbeat_timeout / 4).max(Duration::from_secs(1));
        let started = Instant::now();
        let mut written = Instant::now();
        let mut interrupts = self.interrupts.clone();
        // an Aurora cluster first, then the instance it needs
        let mut cluster_only = cluster;
        let endpoint = loop {
            match rds.readiness(&identifier, cluster_only).await? {
                temporary::Readiness::Ready(endpoint) => break endpoint,
                temporary::Readiness::ClusterAvailable => {
                    rds.add_instance(restore, &identifier, &tags).await?;
                    cluster_only = false;
                    continue;
                }
                temporary::Readiness::Creating(state) => {
                    let message = format!("{what}: {state}");
                    if message != status.message || written.elapsed() >= heartbeat {
                        status.message = message;
                        status.updated_at = OffsetDateTime::now_utc();
                        // best effort: a missed heartbeat is made up next time
                        if let Err(err) = self.store.write(&parameter, &status).await {
                            tracing::warn!("status not updated: {err}");
                        }
                        self.reporter.progress(&job.name, &status);
                        written = Instant::now();
                    }
                }
            }
            temporary::deadline(&identifier, "available", started, limit)?;
            tokio::select! {
                _ = tokio::time::sleep(temporary::POLL) => {}
                _ = interrupts.wait() => {
                    return Err(temporary::TemporaryError::Interrupted { identifier }.into())
                }
            }
        };
        let password = zeroize::Zeroizing::new(temporary::new_password());
        temporary::store_password(
            &self.aws.ssm,
            &plan.spec.password_parameter,
            &password,
            status_store::CONTROLLER_PATIENCE,
        )
        .await?;
        status.message =
            format!("setting a new master password on temporary database {identifier}");
        status.updated_at = OffsetDateTime::now_utc();
        if let Err(err) = self.store.write(&parameter, &status).await {
            tracing::warn!("status not updated: {err}");
        }
        self.reporter.progress(&job.name, &status);
        rds.reset_password(&identifier, cluster, &password, limit)
            .await?;
        plan.read_from(
            &endpoint.host,
            endpoint.port,
            &endpoint.master_user,
            restore.data_source(&identifier),
        );
        Ok(())
    }

    /// Reports `result`, and announces it when the job failed.
    async fn finished(&self, result: &JobResult) {
        self.reporter.finished(result);
        let failed = matches!(
            result.outcome,
            Outcome::Failed | Outcome::TimedOut | Outcome::LaunchFailed | Outcome::InternalError
        );
        if let Some(notifier) = self.notifier.as_ref().filter(|_| failed) {
            let outcome = result.outcome.word();
            let message = format!(
                "backup-cloud job {} ended {outcome} (exit {}).\njob id: {}\ninstance: {}\nafter: {} s\nreason: {}\nconfig: {}",
                result.job,
                result.exit_code,
                result.job_id.as_deref().unwrap_or("-"),
                result.instance_id.as_deref().unwrap_or("-"),
                result.elapsed_secs,
                result.reason.as_deref().unwrap_or("-"),
                self.config.path.display(),
            );
            notifier
                .publish_or_warn(
                    &format!("backup-cloud: job {} {outcome}", result.job),
                    &message,
                )
                .await;
        }
    }

    /// Runs every configured job, at most `max_concurrent` at once.
    pub async fn run_all(
        self: &Arc<Self>,
        max_concurrent: usize,
        options: &LaunchOptions,
    ) -> Vec<JobResult> {
        let names = self.config.jobs.keys().cloned().collect();
        run_each(
            names,
            max_concurrent,
            |name| {
                let controller = Arc::clone(self);
                let options = options.clone();
                async move { controller.run_job(&name, &options).await }
            },
            |panicked| self.recover(panicked),
        )
        .await
    }

    /// Ends what the job of a panicked task held, as a failed job's is
    /// ended: its instance terminated, its open uploads aborted, its status
    /// marked failed (which releases its lease). Reports and returns the
    /// job's result, an internal error.
    async fn recover(&self, panicked: Panicked) -> JobResult {
        let claimed = self
            .claims
            .lock()
            .expect("claims lock")
            .remove(&panicked.job);
        let job = panicked.job.clone();
        let mut result = panicked.into_result();
        if let Some(job_id) = claimed {
            let reason = result.reason.clone().unwrap_or_default();
            match self.end_instances(&job, Some(&job_id), &reason).await {
                Ok(ended) => result.instance_id = ended.into_iter().next(),
                Err(err) => {
                    result.reason = Some(format!(
                        "{reason}; its instance could not be confirmed terminated: {err}"
                    ))
                }
            }
            // Also when no instance was launched yet: a terminal status
            // releases the lease at once.
            self.mark_failed(&self.config.status_parameter(&job), &job_id, &reason)
                .await;
            self.end_temporaries(&job, Some(&job_id), &mut result).await;
            result.job_id = Some(job_id);
        }
        self.finished(&result).await;
        result
    }

    /// Prints the plan of `job_name`: AMI, user-data, launch request,
    /// the platform check of `agent_binary` (default: this executable)
    /// and an estimate. Writes nothing, launches nothing.
    pub async fn plan(
        &self,
        job_name: &str,
        database_bytes: Option<u64>,
        agent_binary: Option<PathBuf>,
    ) -> Result<(), RunError> {
        let job = self.config.job(job_name)?;
        let region = self.region()?;
        let ami_id = launch::resolve_ami(&self.aws, &self.config.instance.ami_parameter).await?;
        let mut plan = JobPlan::new(&self.config, job, &ami_id, OffsetDateTime::now_utc());
        let options = LaunchOptions {
            agent_binary,
            ..LaunchOptions::default()
        };
        let (instance, root_volume, agent) = self.check_platform(job, &ami_id, &options).await?;
        plan.root_volume = root_volume;
        let user_data = plan.user_data(
            region,
            &agent.sha256,
            format!(
                "<presigned GET of s3://{}/{}, issued at launch>",
                plan.spec.bucket,
                plan.agent_key(&agent.sha256)
            ),
        );
        let script = user_data.render_script()?;
        let sized = self.estimate_job(job, database_bytes).await;
        let credentials = plan::credentials_warning(
            self.aws.credentials_expiry().await,
            std::time::SystemTime::now(),
            self.config.status.boot_timeout,
        );
        print_plan(
            &plan,
            &self.config,
            job,
            &script,
            sized.as_ref(),
            credentials,
        );
        println!(
            "platform: agent {} ({}), AMI {} {}, {} runs {}",
            agent.platform.arch.ec2_name(),
            agent
                .platform
                .glibc
                .map_or("no glibc".to_owned(), |(major, minor)| format!(
                    "needs glibc {major}.{minor}"
                )),
            instance.ami_id,
            instance.image_arch,
            instance.instance_type,
            instance.type_archs.join(", "),
        );
        if let Source::Rds(source) = &job.source {
            let restore = self.rds().resolve(source, job.engine).await?;
            println!(
                "source:           {}, restored into a temporary {} named {} (subnet group {}, security groups {}), deleted after the job",
                restore.describe(),
                restore.instance_class,
                temporary::identifier(&plan.spec.job_id),
                restore.db_subnet_group_name.as_deref().unwrap_or("the default"),
                if restore.vpc_security_group_ids.is_empty() {
                    "the VPC's default".to_owned()
                } else {
                    restore.vpc_security_group_ids.join(", ")
                },
            );
            let hours = sized
                .as_ref()
                .map(|(_, _, e)| e.duration.as_secs_f64() / 3600.0);
            match (hours, source.hourly_price_usd) {
                (Some(hours), Some(price)) => println!(
                    "temporary cost:   ≈ ${:.4} for the backup's {hours:.2} h at ${price}/h, plus the hours the restore takes (RDS bills a started hour's seconds, 10 minutes at least)",
                    hours * price
                ),
                _ => println!(
                    "temporary cost:   the temporary {} for the restore and the backup's hours; set jobs.{}.temp_hourly_price_usd (and give a size) for an estimate",
                    restore.instance_class, job.name
                ),
            }
        }
        if job.dump.mode.is_directory() {
            if let Some(scratch) = platform::scratch_space(&instance, plan.root_volume.as_ref()) {
                println!("scratch:          {}", scratch.what);
                if let Some((bytes, _, _)) = sized
                    .as_ref()
                    .filter(|(bytes, _, _)| *bytes > scratch.bytes)
                {
                    println!(
                        "warning:          the database ({}) is larger than the scratch space a \
                         directory dump's files wait in ({}): the agent will refuse it; use an \
                         instance type with instance storage (e.g. m6id) or a larger \
                         root_volume_gib",
                        gib(*bytes),
                        gib(scratch.bytes)
                    );
                }
            }
        }
        match &sized {
            Some((bytes, _, e)) => check_fits(job, *bytes, e),
            None => Ok(()),
        }
    }

    /// The estimate of `job` for `database_bytes`, or for its last
    /// backup's size, at its last backup's measured rate where there is
    /// one: `(bytes, where the size came from, estimate)`; `None` with
    /// neither a size nor a backup.
    async fn estimate_job(
        &self,
        job: &JobConfig,
        database_bytes: Option<u64>,
    ) -> Option<(u64, String, estimate::Estimate)> {
        let last = self.last_backup(job).await;
        let (bytes, source) = match (database_bytes, &last) {
            (Some(bytes), _) => (bytes, "given on the command line".to_owned()),
            (None, Some(last)) => (last.bytes, last.source.clone()),
            (None, None) => return None,
        };
        let e = estimate::estimate(
            bytes,
            &job.instance_type,
            self.config.instance.hourly_price_usd,
            last.as_ref().and_then(|last| last.measured.as_ref()),
        );
        Some((bytes, source, e))
    }

    /// Refuses `job` when its last backup says it would not finish
    /// within its `max_lifetime` (see [`estimate`]); a job without a
    /// complete backup yet is let through.
    async fn check_last_backup_fits(&self, job: &JobConfig) -> Result<(), RunError> {
        match self.estimate_job(job, None).await {
            Some((bytes, _, e)) => check_fits(job, bytes, &e),
            None => Ok(()),
        }
    }

    /// Launches `job_name` unless it is already running, or attaches;
    /// neither once the operator has pressed Ctrl-C (a job queued by
    /// `run --all` then never starts).
    async fn start(&self, job_name: &str, options: &LaunchOptions) -> Result<Started, RunError> {
        if self.interrupts.pressed() {
            return Err(RunError::NotLaunched {
                job: job_name.to_owned(),
            });
        }
        let job = self.config.job(job_name)?;
        let region = self.region()?;
        if !options.attach {
            self.check_last_backup_fits(job).await?;
        }
        let ami_id = launch::resolve_ami(&self.aws, &self.config.instance.ami_parameter).await?;
        // before anything is written; when attaching, only once it is
        // clear that this run launches (the running job's agent was
        // checked when it was launched)
        let checked = if options.attach {
            None
        } else {
            Some(self.check_platform(job, &ami_id, options).await?)
        };
        // read-only, before the lease: a missing snapshot fails fast
        let restore = match &job.source {
            Source::Rds(source) => Some(self.rds().resolve(source, job.engine).await?),
            Source::Live(_) => None,
        };
        let mut plan = JobPlan::new(&self.config, job, &ami_id, OffsetDateTime::now_utc());
        if let Err(held) = self.acquire_lease(job, &plan).await {
            return match held {
                RunError::AlreadyRunning { job_id, .. } if options.attach => {
                    let running = self.running_job(job, &job_id).await?;
                    self.claim(&job.name, &job_id);
                    Ok(Started::Attached(running))
                }
                other => Err(other),
            };
        }
        self.claim(&job.name, &plan.spec.job_id);
        let (_, root_volume, agent) = match checked {
            Some(checked) => checked,
            None => self.check_platform(job, &ami_id, options).await?,
        };
        plan.root_volume = root_volume;
        if let Some(restore) = &restore {
            self.prepare_temporary(job, &mut plan, restore).await?;
        }

        let agent = self.publish_agent(&plan, agent).await?;
        // Signed per launch, valid for this launch's boot window: a URL
        // shared by the jobs of a long `run --all` would have expired
        // before a job queued behind the others boots.
        let url = launch::presign_get(&self.bucket(), &agent.key, self.config.status.boot_timeout)
            .await?;
        let script = plan.user_data(region, &agent.sha256, url).render_script()?;
        let spec_json = serde_json::to_string_pretty(&plan.spec).expect("spec serialises");
        launch::put_json(&self.bucket(), &plan.spec_key, spec_json, Condition::Always).await?;
        let parameter = &plan.spec.status_parameter;
        status_store::write_patiently(
            &self.store,
            parameter,
            &Status::new(&plan.spec.job_id, Phase::Launching),
            status_store::CONTROLLER_PATIENCE,
        )
        .await?;
        let launched = match launch::launch_instance(
            &self.aws,
            &plan,
            &self.config.instance,
            &script,
            job.spot,
        )
        .await
        {
            Ok(launched) => launched,
            Err(err) => {
                self.mark_failed(parameter, &plan.spec.job_id, &err.to_string())
                    .await;
                return Err(err.into());
            }
        };
        self.record_instance(&job.name, &plan.spec.job_id, &launched.instance_id)
            .await;
        self.reporter.launched(
            &job.name,
            &plan.spec.job_id,
            &launched.instance_id,
            &ami_id,
            &plan.spec.instance_type,
            launched.spot,
        );
        Ok(Started::Launched(RunningJob {
            job: job.name.clone(),
            job_id: plan.spec.job_id.clone(),
            instance_id: launched.instance_id,
            limits: self.limits(job),
            launched: Instant::now(),
        }))
    }

    /// Takes the job's single-flight lease, or says who holds it.
    async fn acquire_lease(&self, job: &JobConfig, plan: &JobPlan) -> Result<(), RunError> {
        let bucket = &self.bucket();
        let key = self.lease_key(&job.name);
        let doc = LeaseDoc::new(&job.name, &plan.spec.job_id);
        let body = serde_json::to_string(&doc).expect("lease serialises");
        for _ in 0..3 {
            if launch::put_json(bucket, &key, body.clone(), Condition::Absent).await? {
                return Ok(());
            }
            let Some((held, etag)) = self.read_lease(&job.name).await? else {
                continue;
            };
            if let Some(held) = held {
                let status = self
                    .store
                    .read(&plan.spec.status_parameter)
                    .await?
                    .filter(|s| s.job_id == held.job_id);
                let instance = self.lease_instance_state(&held).await?;
                if lease::lease_is_alive(
                    &held,
                    status.as_ref(),
                    instance,
                    OffsetDateTime::now_utc(),
                    &self.limits(job),
                ) {
                    return Err(RunError::AlreadyRunning {
                        job: job.name.clone(),
                        job_id: held.job_id,
                        since: held
                            .acquired_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                        holder: held.holder,
                    });
                }
                tracing::info!(expired = %held.job_id, "taking over an expired lease");
            }
            if launch::put_json(bucket, &key, body.clone(), Condition::Unchanged(&etag)).await? {
                return Ok(());
            }
        }
        Err(RunError::AlreadyRunning {
            job: job.name.clone(),
            job_id: "(another controller, racing)".to_owned(),
            since: "just now".to_owned(),
            holder: "unknown".to_owned(),
        })
    }

    /// The job's lease as stored, with its ETag; its document is `None`
    /// when it does not parse (a lease nobody can hold: free to take
    /// over). `None` when the job has no lease.
    async fn read_lease(
        &self,
        job: &str,
    ) -> Result<Option<(Option<LeaseDoc>, String)>, LaunchError> {
        let Some(object) = launch::get_json(&self.bucket(), &self.lease_key(job)).await? else {
            return Ok(None);
        };
        Ok(Some((
            serde_json::from_slice(&object.body).ok(),
            object.etag,
        )))
    }

    /// Records `instance_id` in the lease `job_id` holds on `job`, so that
    /// `terminate` and the next `run` find the instance before EC2 lists
    /// it by its tags. Best effort: without it they find it once EC2 does.
    async fn record_instance(&self, job: &str, job_id: &str, instance_id: &str) {
        let recorded = async {
            let Some((Some(mut doc), etag)) = self.read_lease(job).await? else {
                return Ok(false);
            };
            if doc.job_id != job_id {
                return Ok(false);
            }
            doc.instance_id = Some(instance_id.to_owned());
            let body = serde_json::to_string(&doc).expect("lease serialises");
            let key = self.lease_key(job);
            launch::put_json(&self.bucket(), &key, body, Condition::Unchanged(&etag)).await
        };
        match recorded.await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "the lease of {job} is no longer {job_id}'s: instance {instance_id} not recorded in it"
            ),
            Err(err) => tracing::warn!("instance {instance_id} not recorded in the lease: {err}"),
        }
    }

    /// The state of the instance of the job holding `lease` (`None`: it
    /// has none yet): by the id the lease records, else by its tags.
    async fn lease_instance_state(
        &self,
        lease: &LeaseDoc,
    ) -> Result<Option<InstanceState>, LaunchError> {
        match &lease.instance_id {
            Some(id) => launch::instance_state(&self.aws, id, lease_age(lease))
                .await
                .map(Some),
            None => Ok(launch::find_instances(&self.aws, None, Some(&lease.job_id))
                .await?
                .first()
                .map(|i| i.state)),
        }
    }

    /// Notes that `job` runs as `job_id` under this controller.
    fn claim(&self, job: &str, job_id: &str) {
        self.claims
            .lock()
            .expect("claims lock")
            .insert(job.to_owned(), job_id.to_owned());
    }

    /// The configured bucket.
    fn bucket(&self) -> Bucket {
        Bucket::new(self.aws.s3.clone(), &self.config.storage.bucket)
    }

    fn lease_key(&self, job: &str) -> String {
        layout::lease(&self.config.storage.prefix, job)
    }

    /// Finds the instance of a job that is already running, to watch it.
    async fn running_job(&self, job: &JobConfig, job_id: &str) -> Result<RunningJob, RunError> {
        let instances = launch::find_instances(&self.aws, Some(&job.name), Some(job_id)).await?;
        let instance = instances.first().ok_or_else(|| RunError::Failed {
            job_id: job_id.to_owned(),
            reason: "no instance carries this job id".to_owned(),
        })?;
        let age = instance.age();
        Ok(RunningJob {
            job: job.name.clone(),
            job_id: job_id.to_owned(),
            instance_id: instance.instance_id.clone(),
            limits: self.limits(job),
            launched: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
        })
    }

    /// Watches a running job to its end, terminates its instance (unless
    /// the operator detached) and checks the manifest on success.
    async fn watch_to_end(&self, running: &RunningJob) -> Result<JobResult, RunError> {
        let started = Instant::now();
        let ending = self.watch(running).await;
        let job_id = running.job_id.clone();
        let instance_id = running.instance_id.clone();
        if ending == Ending::Interrupted(OnInterrupt::Detach) {
            return Ok(JobResult {
                job_id: Some(job_id.clone()),
                instance_id: Some(instance_id),
                ..JobResult::without_backup(
                    &running.job,
                    Outcome::Interrupted,
                    format!(
                        "interrupted; the job was left running detached: follow it with `backup-cloud wait {}`",
                        running.job
                    ),
                )
            });
        }
        if let Err(source) = launch::terminate(
            &self.aws,
            &instance_id,
            self.config.timeouts.terminate_wait,
            running.launched.elapsed(),
        )
        .await
        {
            return Err(RunError::Cleanup {
                job_id,
                outcome: ending.describe(),
                source: Box::new(source),
            });
        }
        tracing::info!(%instance_id, "instance terminated");
        // On failure, the verdict is written before the uploads are
        // aborted: an agent still alive fails on the aborted upload next,
        // and must find the verdict there rather than write its own.
        let parameter = self.config.status_parameter(&running.job);
        match ending {
            Ending::Decided(Decision::Succeeded { manifest_key }) => {
                let manifest = self
                    .fetch_manifest(&running.job, &job_id, &manifest_key)
                    .await
                    .map_err(|reason| RunError::Failed {
                        job_id: job_id.clone(),
                        reason,
                    })?;
                Ok(JobResult {
                    job: running.job.clone(),
                    job_id: Some(job_id),
                    instance_id: Some(instance_id),
                    outcome: Outcome::Succeeded,
                    exit_code: 0,
                    reason: None,
                    manifest: Some(format!(
                        "s3://{}/{manifest_key}",
                        self.config.storage.bucket
                    )),
                    objects: manifest.objects.len() as u64,
                    bytes: manifest.objects.iter().map(|o| o.size).sum(),
                    elapsed_secs: started.elapsed().as_secs(),
                })
            }
            Ending::Decided(Decision::Failed { reason }) => {
                self.mark_failed_over_agent(&parameter, &job_id, &reason)
                    .await;
                self.abort_leftover_uploads(&running.job).await;
                Err(RunError::Failed { job_id, reason })
            }
            Ending::Decided(Decision::TimedOut { reason }) => {
                self.mark_failed_over_agent(&parameter, &job_id, &reason)
                    .await;
                self.abort_leftover_uploads(&running.job).await;
                Err(RunError::TimedOut { job_id, reason })
            }
            Ending::Decided(Decision::Continue) => {
                unreachable!("the watch loop only ends on a verdict")
            }
            Ending::Interrupted(_) => {
                self.mark_failed_over_agent(&parameter, &job_id, "interrupted by the operator")
                    .await;
                self.abort_leftover_uploads(&running.job).await;
                Err(RunError::Interrupted {
                    job_id,
                    instance_id,
                })
            }
        }
    }

    /// Polls the instance and the status parameter until
    /// [`watch::decide`] reaches a verdict or the operator interrupts.
    async fn watch(&self, running: &RunningJob) -> Ending {
        let parameter = self.config.status_parameter(&running.job);
        let mut interrupts = self.interrupts.clone();
        let mut last_status: Option<Status> = None;
        let mut last_change = Instant::now();
        let mut last_progress = Instant::now();
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.status.poll_interval) => {}
                    choice = interrupts.wait() => return Ending::Interrupted(choice),
                }
            }
            first = false;
            // Instance first, status second: see the module docs of `watch`.
            let since_launch = running.launched.elapsed();
            let instance =
                match launch::instance_state(&self.aws, &running.instance_id, since_launch).await {
                    Ok(state) => state,
                    Err(err) => {
                        tracing::warn!("{err}; will retry");
                        InstanceState::Running
                    }
                };
            match self.store.read(&parameter).await {
                Ok(Some(status)) if status.job_id == running.job_id => {
                    if last_status.as_ref() != Some(&status) {
                        last_change = Instant::now();
                        if last_status
                            .as_ref()
                            .is_none_or(|last| !same_progress(last, &status))
                        {
                            last_progress = last_change;
                        }
                        self.reporter.progress(&running.job, &status);
                        last_status = Some(status);
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!("{err}; will retry"),
            }
            let observation = Observation {
                instance,
                status: last_status.as_ref(),
                since_launch,
                since_last_change: last_change.elapsed(),
                since_last_progress: last_progress.elapsed(),
            };
            match watch::decide(&observation, &running.limits) {
                Decision::Continue => {}
                verdict @ Decision::Failed { .. }
                    if watch::gone_without_final_status(&observation) =>
                {
                    return Ending::Decided(match self.stored_manifest(running).await {
                        Some(manifest_key) => {
                            tracing::warn!(
                                "the instance went away without a final status, but the backup is complete: s3://{}/{manifest_key}",
                                self.config.storage.bucket
                            );
                            Decision::Succeeded { manifest_key }
                        }
                        None => verdict,
                    });
                }
                verdict => return Ending::Decided(verdict),
            }
        }
    }

    /// `wait JOB`: watches the job's current run to its end.
    pub async fn wait(&self, job_name: &str) -> JobResult {
        let mut watched = None;
        let result = async {
            let job = self.config.job(job_name)?;
            let status = self
                .store
                .read(&self.config.status_parameter(job_name))
                .await?
                .ok_or_else(|| RunError::NeverLaunched {
                    job: job_name.to_owned(),
                })?;
            let running = self.running_job(job, &status.job_id).await?;
            watched = Some(status.job_id);
            self.watch_to_end(&running).await
        }
        .await;
        let mut result = result.unwrap_or_else(|err| {
            JobResult::without_backup(job_name, err.outcome(), err.to_string())
        });
        if let Some(job_id) = watched.filter(|_| self.job_ended(&result)) {
            self.end_temporaries(job_name, Some(&job_id), &mut result)
                .await;
        }
        self.finished(&result).await;
        result
    }

    /// `status [JOB]`: each job's status document and instance.
    pub async fn status(&self, job: Option<&str>) -> Result<Vec<JobStatus>, RunError> {
        let names: Vec<String> = match job {
            Some(name) => vec![self.config.job(name)?.name.clone()],
            None => self.config.jobs.keys().cloned().collect(),
        };
        let mut report = Vec::new();
        for name in names {
            let status = self
                .store
                .read(&self.config.status_parameter(&name))
                .await?;
            let instance = match &status {
                Some(status) => {
                    launch::find_instances(&self.aws, Some(&name), Some(&status.job_id))
                        .await?
                        .into_iter()
                        .next()
                }
                None => None,
            };
            report.push(JobStatus {
                job: name,
                status,
                instance,
            });
        }
        Ok(report)
    }

    /// `list`: every instance we launched that EC2 still lists, with its
    /// job's status where the status belongs to it.
    pub async fn list(&self) -> Result<Vec<JobStatus>, RunError> {
        let instances = launch::find_instances(&self.aws, None, None).await?;
        let mut rows = Vec::new();
        for instance in instances {
            let job = instance.job.clone().unwrap_or_else(|| "?".to_owned());
            let status = match (&instance.job, &instance.job_id) {
                (Some(job), Some(job_id)) if crate::config::is_job_name(job) => self
                    .store
                    .read(&self.config.status_parameter(job))
                    .await?
                    .filter(|s| &s.job_id == job_id),
                _ => None,
            };
            rows.push(JobStatus {
                job,
                status,
                instance: Some(instance),
            });
        }
        Ok(rows)
    }

    /// `terminate JOB`: ends the job's running instances now.
    pub async fn terminate(&self, job_name: &str) -> Result<Vec<String>, RunError> {
        self.end_instances(job_name, None, "terminated by the operator")
            .await
    }

    /// Terminates the job's instances that are not gone (only those of
    /// `job_id` when given), marks their jobs failed with `reason` and
    /// aborts the uploads they left open; returns the instance ids.
    async fn end_instances(
        &self,
        job: &str,
        job_id: Option<&str>,
        reason: &str,
    ) -> Result<Vec<String>, RunError> {
        let parameter = self.config.status_parameter(job);
        let mut live: Vec<LiveInstance> = launch::find_instances(&self.aws, Some(job), job_id)
            .await?
            .into_iter()
            .filter(|i| i.state != InstanceState::Gone)
            .map(|i| LiveInstance {
                age: i.age(),
                instance_id: i.instance_id,
                job_id: i.job_id,
            })
            .collect();
        if let Some(leased) = self.unlisted_lease_instance(job, job_id, &live).await? {
            live.push(leased);
        }
        let mut ended = Vec::new();
        for instance in live {
            launch::terminate(
                &self.aws,
                &instance.instance_id,
                self.config.timeouts.terminate_wait,
                instance.age,
            )
            .await?;
            if let Some(job_id) = &instance.job_id {
                self.mark_failed_over_agent(&parameter, job_id, reason)
                    .await;
            }
            self.abort_leftover_uploads(job).await;
            ended.push(instance.instance_id);
        }
        Ok(ended)
    }

    /// The instance the job's lease records when EC2 does not list it by
    /// its tags yet and it is not gone (one launched moments ago): its id,
    /// job id and age. Only for `job_id` when given.
    async fn unlisted_lease_instance(
        &self,
        job: &str,
        job_id: Option<&str>,
        listed: &[LiveInstance],
    ) -> Result<Option<LiveInstance>, RunError> {
        let Some((Some(lease), _)) = self.read_lease(job).await? else {
            return Ok(None);
        };
        let Some(instance_id) = lease.instance_id.clone() else {
            return Ok(None);
        };
        if job_id.is_some_and(|id| id != lease.job_id)
            || listed.iter().any(|l| l.instance_id == instance_id)
        {
            return Ok(None);
        }
        if self.lease_instance_state(&lease).await? == Some(InstanceState::Gone) {
            return Ok(None);
        }
        Ok(Some(LiveInstance {
            instance_id,
            age: lease_age(&lease),
            job_id: Some(lease.job_id),
        }))
    }

    /// `reap`: terminates our instances whose job is over, stale,
    /// superseded or past its lifetime, and marks their jobs failed.
    pub async fn reap(
        &self,
        older_than: Option<Duration>,
    ) -> Result<Vec<(String, String)>, RunError> {
        let mut reaped = Vec::new();
        for instance in launch::find_instances(&self.aws, None, None).await? {
            let (Some(job), Some(job_id), Some(launched_at)) =
                (&instance.job, &instance.job_id, instance.launched_at)
            else {
                continue;
            };
            if instance.state == InstanceState::Gone || !crate::config::is_job_name(job) {
                continue;
            }
            let parameter = self.config.status_parameter(job);
            let managed = reap::ManagedInstance {
                instance_id: instance.instance_id.clone(),
                job: job.clone(),
                job_id: job_id.clone(),
                launched_at,
            };
            let now = OffsetDateTime::now_utc();
            let configured = self.config.jobs.get(job);
            let reason = match configured {
                Some(configured) => {
                    let status = self.store.read(&parameter).await?;
                    reap::reap_reason(
                        &managed,
                        status.as_ref(),
                        now,
                        &self.limits(configured),
                        older_than,
                    )
                }
                // Another configuration's job (another team, another
                // test): its status and limits live there, not here.
                None => reap::foreign_reap_reason(&managed, now, older_than),
            };
            let Some(reason) = reason else {
                continue;
            };
            launch::terminate(
                &self.aws,
                &instance.instance_id,
                self.config.timeouts.terminate_wait,
                instance.age(),
            )
            .await?;
            if configured.is_some() {
                self.mark_failed_over_agent(&parameter, job_id, &format!("reaped: {reason}"))
                    .await;
                self.abort_leftover_uploads(job).await;
            }
            reaped.push((
                instance.instance_id.clone(),
                format!("{job} ({job_id}): {reason}"),
            ));
        }
        // After the instances: a job whose instance was just reaped is
        // failed now, and its temporary database goes in the same run.
        if self
            .config
            .jobs
            .values()
            .any(|j| matches!(j.source, Source::Rds(_)))
        {
            reaped.extend(self.reap_temporaries(older_than).await?);
        }
        Ok(reaped)
    }

    /// `reap`'s second half: deletes our temporary databases whose job is
    /// over ([`reap::temporary_reap_reason`]).
    async fn reap_temporaries(
        &self,
        older_than: Option<Duration>,
    ) -> Result<Vec<(String, String)>, RunError> {
        let mut reaped = Vec::new();
        let listed = self
            .rds()
            .list_ours(plan::TAG_MANAGED, plan::TAG_JOB, plan::TAG_JOB_ID)
            .await?;
        for db in listed {
            let (Some(job), Some(job_id), Some(created)) = (&db.job, &db.job_id, db.created) else {
                continue;
            };
            if !crate::config::is_job_name(job) {
                continue;
            }
            let managed = reap::ManagedInstance {
                instance_id: db.identifier.clone(),
                job: job.clone(),
                job_id: job_id.clone(),
                launched_at: created,
            };
            let now = OffsetDateTime::now_utc();
            let parameter = self.config.status_parameter(job);
            let configured = self.config.jobs.get(job);
            let status = match configured {
                Some(_) => self.store.read(&parameter).await?,
                None => None,
            };
            // the password parameter is the job's, not the run's: it is
            // left to a newer run that is still going
            let newer_run = status
                .as_ref()
                .is_some_and(|s| s.job_id != *job_id && !s.phase.is_terminal());
            let reason = match configured {
                Some(configured) => reap::temporary_reap_reason(
                    &managed,
                    status.as_ref(),
                    now,
                    &self.limits(configured),
                    self.config.timeouts.temporary_database,
                    older_than,
                ),
                None => reap::foreign_reap_reason(&managed, now, older_than),
            };
            let Some(reason) = reason else {
                continue;
            };
            self.delete_temporary(&Temporary {
                job_id: job_id.clone(),
                identifier: db.identifier.clone(),
                cluster: db.cluster,
                password_parameter: Some(plan::temporary_password_parameter(&parameter))
                    .filter(|_| !newer_run),
            })
            .await?;
            reaped.push((
                db.identifier.clone(),
                format!("{job} ({job_id}): temporary database: {reason}"),
            ));
        }
        Ok(reaped)
    }

    fn region(&self) -> Result<String, RunError> {
        self.aws.region.clone().ok_or(RunError::NoRegion)
    }

    fn limits(&self, job: &JobConfig) -> Limits {
        Limits {
            heartbeat_timeout: self.config.status.heartbeat_timeout,
            boot_timeout: self.config.status.boot_timeout,
            max_lifetime: job.max_lifetime,
            lifetime_grace: self.config.timeouts.lifetime_grace,
            stall_timeout: self.config.status.stall_timeout,
        }
    }

    /// The agent for an AMI of `image_arch`: `--agent-binary`, else
    /// [`platform::default_agent`] of this executable.
    fn agent_path(&self, options: &LaunchOptions, image_arch: &str) -> Result<PathBuf, RunError> {
        match &options.agent_binary {
            Some(path) => Ok(path.clone()),
            None => std::env::current_exe()
                .map(|exe| platform::default_agent(&exe, image_arch))
                .map_err(|source| {
                    RunError::Launch(LaunchError::AgentBinary {
                        path: "backup-cloud".into(),
                        source,
                    })
                }),
        }
    }

    /// The agent executable for an AMI of `image_arch`, read and
    /// inspected once per controller (every job of a configuration boots
    /// the same AMI).
    async fn agent_binary(
        &self,
        options: &LaunchOptions,
        image_arch: &str,
    ) -> Result<&AgentBinary, RunError> {
        self.agent_binary
            .get_or_try_init(|| async {
                Ok(AgentBinary::read(&self.agent_path(options, image_arch)?)?)
            })
            .await
    }

    /// Refuses, before anything is launched, a job whose instance type
    /// cannot run its AMI, whose AMI cannot run the agent, or whose root
    /// volume cannot replace the AMI's; returns what EC2 said of the
    /// instance and the root volume to ask for.
    async fn check_platform(
        &self,
        job: &JobConfig,
        ami_id: &str,
        options: &LaunchOptions,
    ) -> Result<
        (
            platform::InstancePlatform,
            Option<platform::RootVolume>,
            &AgentBinary,
        ),
        RunError,
    > {
        let instance = platform::describe_instance_platform(&self.aws, ami_id, &job.instance_type)
            .await
            .map_err(LaunchError::from)?;
        platform::check_tools(job.dump.mode, &instance).map_err(LaunchError::from)?;
        let agent = self.agent_binary(options, &instance.image_arch).await?;
        let root_volume = platform::check_launch(
            &agent.path.display().to_string(),
            &agent.platform,
            &instance,
            job.root_volume_gib,
        )
        .map_err(LaunchError::from)?;
        Ok((instance, root_volume, agent))
    }

    /// Uploads the agent once per controller.
    async fn publish_agent(
        &self,
        plan: &JobPlan,
        agent: &AgentBinary,
    ) -> Result<&PublishedAgent, RunError> {
        self.agent
            .get_or_try_init(|| async {
                let sha256 = agent.sha256.clone();
                let key = plan.agent_key(&sha256);
                launch::publish_agent(&self.bucket(), &key, agent).await?;
                Ok(PublishedAgent { sha256, key })
            })
            .await
    }

    /// Once a job's instance is gone without a backup: aborts the multipart
    /// uploads its agent could not. Best effort, like [`Self::mark_failed`]:
    /// the outcome stands either way.
    async fn abort_leftover_uploads(&self, job: &str) {
        let prefix = layout::backups(&self.config.storage.prefix, job);
        let bucket = &self.config.storage.bucket;
        match cleanup::abort_incomplete_uploads(&self.bucket(), &prefix).await {
            Ok(keys) => {
                for key in keys {
                    tracing::warn!(
                        "aborted the incomplete multipart upload of s3://{bucket}/{key}"
                    );
                }
            }
            Err(err) => tracing::warn!("{err}; its parts stay until a lifecycle rule removes them"),
        }
    }

    /// Records a failure the agent could not report itself (timeouts,
    /// launch errors, interruption, reaping), so `status` tells the truth
    /// later. Best effort: the exit code already carries the outcome.
    async fn mark_failed(&self, parameter: &str, job_id: &str, reason: &str) {
        let mut status = match self.store.read(parameter).await {
            Ok(Some(existing)) if existing.job_id == job_id => existing,
            Ok(Some(_)) => return, // a newer job owns the parameter now
            _ => Status::new(job_id, Phase::Failed),
        };
        if status.phase.is_terminal() {
            return;
        }
        status.phase = Phase::Failed;
        status.updated_at = OffsetDateTime::now_utc();
        status.set_message(reason);
        if let Err(err) = status_store::write_patiently(
            &self.store,
            parameter,
            &status,
            status_store::CONTROLLER_PATIENCE,
        )
        .await
        {
            tracing::warn!("could not record the failure in the status parameter: {err}");
        }
    }

    /// [`Self::mark_failed`] for a job whose instance was just terminated
    /// and whose agent may still be writing: a progress write already on
    /// its way can land after ours. The agent reads the parameter before
    /// each write and stops at a terminal status, so one more look after
    /// [`AGENT_WRITE_SETTLE`] leaves the failure standing.
    async fn mark_failed_over_agent(&self, parameter: &str, job_id: &str, reason: &str) {
        self.mark_failed(parameter, job_id, reason).await;
        tokio::time::sleep(AGENT_WRITE_SETTLE).await;
        self.mark_failed(parameter, job_id, reason).await;
    }

    /// The manifest key of a job whose instance went away without a final
    /// status, when its backup is nonetheless complete: read from the job
    /// spec's backup prefix (the controller wrote it at launch). `None`
    /// when there is none, or it cannot be read.
    async fn stored_manifest(&self, running: &RunningJob) -> Option<String> {
        let bucket = self.bucket();
        let spec_key = layout::job_spec(&self.config.storage.prefix, &running.job, &running.job_id);
        let spec = bucket.get_if_exists(&spec_key).await.ok()??;
        let spec: crate::schema::JobSpec = parse_document(&spec.body).ok()?;
        let manifest_key = layout::manifest(&spec.backup_prefix);
        bucket.size(&manifest_key).await.ok()??;
        Some(manifest_key)
    }

    /// Reads the manifest the agent reported and checks it belongs to the job.
    async fn fetch_manifest(&self, job: &str, job_id: &str, key: &str) -> Result<Manifest, String> {
        let bucket = &self.config.storage.bucket;
        if !layout::is_manifest_of(&self.config.storage.prefix, job, key) {
            return Err(format!(
                "the agent reported manifest {key}, outside {}",
                layout::backups(&self.config.storage.prefix, job)
            ));
        }
        let bytes = launch::get_json(&self.bucket(), key)
            .await
            .map_err(|e| {
                format!("the agent reported success but the manifest cannot be read: {e}")
            })?
            .ok_or_else(|| {
                format!("the agent reported success but s3://{bucket}/{key} does not exist")
            })?;
        let manifest: Manifest =
            parse_document(&bytes.body).map_err(|e| format!("the manifest is not valid: {e}"))?;
        if manifest.job_id != job_id {
            return Err(format!(
                "the manifest at {key} belongs to job {}, not {job_id}",
                manifest.job_id
            ));
        }
        if manifest.objects.is_empty() {
            return Err("the manifest lists no objects".to_owned());
        }
        Ok(manifest)
    }

    /// The job's latest complete backup, if any (or if it cannot be
    /// listed: an estimate is advice, and the run goes on without it).
    async fn last_backup(&self, job: &JobConfig) -> Option<LastBackup> {
        let bucket = &self.config.storage.bucket;
        let prefix = layout::backups(&self.config.storage.prefix, &job.name);
        let mut stamps = self.bucket().folders(&prefix).await.ok()?;
        stamps.sort();
        for stamp in stamps.iter().rev() {
            let key = layout::manifest(stamp);
            if let Ok(Some(object)) = launch::get_json(&self.bucket(), &key).await {
                if let Ok(manifest) = parse_document::<Manifest>(&object.body) {
                    // its rate says something of this job only on the
                    // same instance type with the same dump format
                    let comparable = manifest.instance_type == job.instance_type
                        && manifest.format == job.dump.mode.name();
                    return Some(LastBackup {
                        bytes: manifest
                            .objects
                            .iter()
                            .fold(0u64, |sum, o| sum.saturating_add(o.plaintext_bytes)),
                        source: format!("the last backup, s3://{bucket}/{key}"),
                        measured: comparable
                            .then(|| estimate::Measured::from_manifest(&manifest))
                            .flatten(),
                    });
                }
            }
        }
        None
    }
}

/// The job's latest complete backup, as far as an estimate needs it.
struct LastBackup {
    /// Plaintext bytes.
    bytes: u64,
    /// Where it is, for the reader.
    source: String,
    measured: Option<estimate::Measured>,
}

/// Refuses `job` when `e`, for `bytes`, outlives its `max_lifetime`.
fn check_fits(job: &JobConfig, bytes: u64, e: &estimate::Estimate) -> Result<(), RunError> {
    if e.fits(job.max_lifetime) {
        return Ok(());
    }
    Err(RunError::WouldNotFinish {
        job: job.name.clone(),
        estimate: whole_seconds(e.duration),
        size: gib(bytes),
        basis: e.basis.clone(),
        max_lifetime: whole_seconds(job.max_lifetime),
    })
}

/// `1h 2m 3s`: a duration as people read it, to the second.
fn whole_seconds(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// `12.3 GiB`
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

/// Runs `run(name)` for each job name, each in its own task, at most
/// `max_concurrent` at once; returns their results in the order of `names`.
/// A task that panics has no result of its own: `recover` gives it one
/// (and ends what the job held) as soon as the panic is seen, while the
/// other jobs run on.
async fn run_each<Run, Job, Recover, Recovered>(
    names: Vec<String>,
    max_concurrent: usize,
    run: Run,
    recover: Recover,
) -> Vec<JobResult>
where
    Run: Fn(String) -> Job,
    Job: Future<Output = JobResult> + Send + 'static,
    Recover: Fn(Panicked) -> Recovered,
    Recovered: Future<Output = JobResult>,
{
    let permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut slots = HashMap::new();
    for (index, name) in names.iter().enumerate() {
        let permits = Arc::clone(&permits);
        let job = run(name.clone());
        let task = tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            job.await
        });
        slots.insert(task.id(), index);
    }
    let mut results: Vec<Option<JobResult>> = vec![None; names.len()];
    while let Some(joined) = tasks.join_next_with_id().await {
        let (index, result) = match joined {
            Ok((id, result)) => (slots[&id], result),
            Err(err) => {
                let index = slots[&err.id()];
                let panicked = Panicked {
                    job: names[index].clone(),
                    message: panic_message(err),
                };
                (index, recover(panicked).await)
            }
        };
        results[index] = Some(result);
    }
    results
        .into_iter()
        .map(|result| result.expect("every task ends once"))
        .collect()
}

/// A job task that panicked, as [`run_each`] hands it to its `recover`.
#[derive(Debug)]
struct Panicked {
    job: String,
    /// The panic's message (or why the task ended without one).
    message: String,
}

impl Panicked {
    /// The job's result: an internal error (exit 1) naming the panic.
    fn into_result(self) -> JobResult {
        JobResult::without_backup(
            &self.job,
            Outcome::InternalError,
            format!("internal error: the job's task panicked: {}", self.message),
        )
    }
}

fn panic_message(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(err) => err.to_string(),
    }
}

/// Whether two status documents show the same phase and transfer counters:
/// heartbeats alone change only the timestamp.
fn same_progress(a: &Status, b: &Status) -> bool {
    (a.phase, a.bytes_read, a.bytes_uploaded, a.objects_done)
        == (b.phase, b.bytes_read, b.bytes_uploaded, b.objects_done)
}

/// How `start` got a job to watch.
enum Started {
    Launched(RunningJob),
    Attached(RunningJob),
}

/// Why the watch loop stopped.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Decided(Decision),
    Interrupted(OnInterrupt),
}

impl Ending {
    fn describe(&self) -> String {
        match self {
            Ending::Decided(Decision::Succeeded { .. }) => "succeeded".to_owned(),
            Ending::Decided(Decision::Failed { reason }) => format!("failed: {reason}"),
            Ending::Decided(Decision::TimedOut { reason }) => format!("timed out: {reason}"),
            Ending::Decided(Decision::Continue) => "running".to_owned(),
            Ending::Interrupted(_) => "interrupted".to_owned(),
        }
    }
}

/// One row of `status` or `list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    pub job: String,
    pub status: Option<Status>,
    #[serde(serialize_with = "serialize_instance")]
    pub instance: Option<InstanceInfo>,
}

fn serialize_instance<S: serde::Serializer>(
    instance: &Option<InstanceInfo>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match instance {
        None => serializer.serialize_none(),
        Some(i) => {
            let mut map = serializer.serialize_map(Some(4))?;
            map.serialize_entry("instance_id", &i.instance_id)?;
            map.serialize_entry("state", &i.state_name)?;
            map.serialize_entry("instance_type", &i.instance_type)?;
            map.serialize_entry(
                "launched_at",
                &i.launched_at.and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                }),
            )?;
            map.end()
        }
    }
}

fn print_plan(
    plan: &JobPlan,
    config: &Config,
    job: &JobConfig,
    script: &str,
    sized: Option<&(u64, String, estimate::Estimate)>,
    credentials_warning: Option<String>,
) {
    println!("# plan: nothing was launched or written");
    println!("job id:           {}", plan.spec.job_id);
    println!(
        "ami:              {} (from {})",
        plan.spec.ami_id, config.instance.ami_parameter
    );
    println!(
        "instance type:    {} ({})",
        plan.spec.instance_type,
        if job.spot {
            "spot, falling back to on-demand"
        } else {
            "on-demand"
        }
    );
    println!(
        "shutdown:         terminate (dead-man after {} min)",
        plan.max_lifetime_minutes
    );
    if let Some(root) = &plan.root_volume {
        println!(
            "root volume:      {} GiB gp3 on {} (instead of the AMI's)",
            root.gib, root.device_name
        );
    }
    if let Some(profile) = &config.instance.instance_profile {
        println!("instance profile: {profile}");
    }
    if let Some(subnet) = &config.instance.subnet_id {
        println!("subnet:           {subnet}");
    }
    for group in &config.instance.security_group_ids {
        println!("security group:   {group}");
    }
    for (key, value) in &plan.tags {
        println!("tag:              {key}={value}");
    }
    println!(
        "job spec:         s3://{}/{}",
        plan.spec.bucket, plan.spec_key
    );
    println!(
        "backup prefix:    s3://{}/{}",
        plan.spec.bucket, plan.spec.backup_prefix
    );
    println!("status:           ssm:{}", plan.spec.status_parameter);
    if let Some(warning) = credentials_warning {
        println!("credentials:      {warning}");
    }
    match sized {
        Some((bytes, source, e)) => {
            println!(
                "estimate:         {} for {} (size from {source}; {})",
                whole_seconds(e.duration),
                gib(*bytes),
                e.basis
            );
            match (e.cost_usd, e.hourly_price_usd) {
                (Some(cost), Some(price)) => println!("cost:             ≈ ${cost:.4} at ${price}/h (set instance.hourly_price_usd for your price)"),
                _ => println!("cost:             unknown for {}; set instance.hourly_price_usd", plan.spec.instance_type),
            }
        }
        None => {
            println!("estimate:         no size known: pass --database-size or run a first backup")
        }
    }
    println!("user-data ({} bytes):", script.len());
    println!("{script}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_task_that_panics_is_recovered_as_an_internal_error() {
        let recovered = Mutex::new(Vec::new());
        let results = run_each(
            ["a", "b", "c"].map(String::from).to_vec(),
            2,
            |name| async move {
                if name == "b" {
                    panic!("job b's task went wrong");
                }
                JobResult::without_backup(&name, Outcome::Succeeded, String::new())
            },
            |panicked| {
                recovered.lock().unwrap().push(panicked.job.clone());
                std::future::ready(panicked.into_result())
            },
        )
        .await;
        let outcomes: Vec<_> = results
            .iter()
            .map(|r| (r.job.as_str(), r.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("a", Outcome::Succeeded),
                ("b", Outcome::InternalError),
                ("c", Outcome::Succeeded)
            ]
        );
        assert_eq!(results[1].exit_code, 1);
        let reason = results[1].reason.as_deref().unwrap();
        assert!(reason.contains("job b's task went wrong"), "{reason}");
        assert_eq!(*recovered.lock().unwrap(), ["b"]);
    }
}
