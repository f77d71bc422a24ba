//! The controller: plans one backup job, launches its instance, watches it
//! through the status parameter, and guarantees the instance is gone before
//! it reports the outcome.
//!
//! Once RunInstances has succeeded, every path out of [`run`] — success,
//! failure, timeout, Ctrl-C, an error of our own — goes through
//! termination; a termination that cannot be confirmed is itself an error.

pub mod launch;
pub mod plan;
pub mod watch;

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use crate::aws::AwsClients;
use crate::cli::Exit;
use crate::config::{Config, ConfigError};
use crate::schema::{Manifest, Phase, Status, SCHEMA_VERSION};
use crate::status_store::{SsmStatusStore, StatusError, StatusStore};
use crate::userdata::{UserData, UserDataError};
use launch::{AgentBinary, LaunchError};
use plan::JobPlan;
use watch::{Decision, InstanceState, Limits, Observation};

/// How long to wait for EC2 to confirm an instance is going away.
const TERMINATE_WAIT: Duration = Duration::from_secs(300);

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
    #[error("job {job_id} failed: {reason}")]
    Failed { job_id: String, reason: String },
    #[error("job {job_id} timed out: {reason}")]
    TimedOut { job_id: String, reason: String },
    #[error("job {job_id} interrupted; its instance {instance_id} was terminated")]
    Interrupted { job_id: String, instance_id: String },
    #[error("job {job_id} ended ({outcome}) but its instance could not be confirmed terminated: {source}")]
    Cleanup {
        job_id: String,
        outcome: String,
        source: LaunchError,
    },
}

impl RunError {
    /// The documented exit code for this outcome.
    pub fn exit(&self) -> Exit {
        match self {
            RunError::Config(_) | RunError::NoRegion => Exit::Config,
            RunError::Launch(_) | RunError::UserData(_) | RunError::Status(_) => Exit::Launch,
            RunError::Failed { .. } => Exit::BackupFailed,
            RunError::TimedOut { .. } => Exit::TimedOut,
            RunError::Interrupted { .. } => Exit::Interrupted,
            RunError::Cleanup { .. } => Exit::Internal,
        }
    }
}

/// What a successful run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub job_id: String,
    pub instance_id: String,
    pub bucket: String,
    pub manifest_key: String,
    pub manifest: Manifest,
    pub elapsed: Duration,
}

/// Options of one `run`.
pub struct RunOptions<'a> {
    pub dry_run: bool,
    /// The agent binary to ship; defaults to this executable.
    pub agent_binary: Option<&'a Path>,
}

/// Runs job `job_name` to completion. `Ok(None)` is a dry run.
pub async fn run(
    config: &Config,
    job_name: &str,
    options: RunOptions<'_>,
) -> Result<Option<RunReport>, RunError> {
    let job = config.job(job_name)?;
    let aws = AwsClients::load(
        config.aws.region.as_deref(),
        config.aws.endpoint_url.as_deref(),
    )
    .await;
    let region = aws.region.clone().ok_or(RunError::NoRegion)?;
    let ami_id = launch::resolve_ami(&aws, &config.instance.ami_parameter).await?;
    let launched_at = OffsetDateTime::now_utc();
    let plan = JobPlan::new(config, job, &ami_id, launched_at);

    let agent_path = match options.agent_binary {
        Some(path) => path.to_owned(),
        None => std::env::current_exe().map_err(|source| LaunchError::AgentBinary {
            path: "backup-cloud".into(),
            source,
        })?,
    };
    let agent = AgentBinary::read(&agent_path)?;
    let agent_key = plan.agent_key(&agent.sha256);
    let mut user_data = UserData {
        job_id: plan.spec.job_id.clone(),
        status_parameter: plan.spec.status_parameter.clone(),
        spec_bucket: plan.spec.bucket.clone(),
        spec_key: plan.spec_key.clone(),
        agent_url: String::new(),
        agent_sha256: agent.sha256.clone(),
        max_lifetime_minutes: plan.max_lifetime_minutes,
        region,
    };

    if options.dry_run {
        user_data.agent_url = format!(
            "<presigned GET of s3://{}/{agent_key}, issued at launch>",
            plan.spec.bucket
        );
        print_dry_run(&plan, config, &user_data.render_script()?);
        return Ok(None);
    }

    let url_lifetime = config.status.boot_timeout.max(Duration::from_secs(900));
    user_data.agent_url =
        launch::publish_agent(&aws, &plan.spec.bucket, &agent_key, agent, url_lifetime).await?;
    let script = user_data.render_script()?;
    let spec_json = serde_json::to_string_pretty(&plan.spec).expect("spec serialises");
    launch::put_json(&aws, &plan.spec.bucket, &plan.spec_key, spec_json).await?;

    let store = SsmStatusStore::new(aws.ssm.clone());
    let status_parameter = plan.spec.status_parameter.clone();
    store
        .write(
            &status_parameter,
            &Status::new(&plan.spec.job_id, Phase::Launching),
        )
        .await?;
    let instance_id = match launch::run_instance(&aws, &plan, &config.instance, &script).await {
        Ok(id) => id,
        Err(err) => {
            mark_failed(
                &store,
                &status_parameter,
                &plan.spec.job_id,
                &err.to_string(),
            )
            .await;
            return Err(err.into());
        }
    };
    tracing::info!(job_id = %plan.spec.job_id, %instance_id, ami_id, "instance launched");
    eprintln!(
        "backup-cloud: job {} launched on instance {instance_id}",
        plan.spec.job_id
    );

    let limits = Limits {
        heartbeat_timeout: config.status.heartbeat_timeout,
        boot_timeout: config.status.boot_timeout,
        max_lifetime: job.max_lifetime,
    };
    let started = Instant::now();
    let ending = watch_job(
        &aws,
        &store,
        &plan,
        &instance_id,
        limits,
        config.status.poll_interval,
    )
    .await;

    // Whatever happened, the instance goes away before we report.
    let outcome = ending.describe();
    if let Err(source) = launch::terminate(&aws, &instance_id, TERMINATE_WAIT).await {
        return Err(RunError::Cleanup {
            job_id: plan.spec.job_id.clone(),
            outcome,
            source,
        });
    }
    tracing::info!(%instance_id, "instance terminated");

    let job_id = plan.spec.job_id.clone();
    match ending {
        Ending::Decided(Decision::Succeeded { manifest_key }) => {
            let manifest = fetch_manifest(&aws, &plan, &manifest_key)
                .await
                .map_err(|reason| RunError::Failed {
                    job_id: job_id.clone(),
                    reason,
                })?;
            Ok(Some(RunReport {
                job_id,
                instance_id,
                bucket: plan.spec.bucket.clone(),
                manifest_key,
                manifest,
                elapsed: started.elapsed(),
            }))
        }
        Ending::Decided(Decision::Failed { reason }) => Err(RunError::Failed { job_id, reason }),
        Ending::Decided(Decision::TimedOut { reason }) => {
            mark_failed(&store, &status_parameter, &job_id, &reason).await;
            Err(RunError::TimedOut { job_id, reason })
        }
        Ending::Decided(Decision::Continue) => {
            unreachable!("the watch loop only ends on a verdict")
        }
        Ending::Interrupted => {
            mark_failed(
                &store,
                &status_parameter,
                &job_id,
                "interrupted by the operator",
            )
            .await;
            Err(RunError::Interrupted {
                job_id,
                instance_id,
            })
        }
    }
}

/// Why the watch loop stopped.
enum Ending {
    Decided(Decision),
    Interrupted,
}

impl Ending {
    fn describe(&self) -> String {
        match self {
            Ending::Decided(Decision::Succeeded { .. }) => "succeeded".to_owned(),
            Ending::Decided(Decision::Failed { reason }) => format!("failed: {reason}"),
            Ending::Decided(Decision::TimedOut { reason }) => format!("timed out: {reason}"),
            Ending::Decided(Decision::Continue) => "running".to_owned(),
            Ending::Interrupted => "interrupted".to_owned(),
        }
    }
}

/// Polls the instance and the status parameter until [`watch::decide`]
/// reaches a verdict or the operator interrupts.
async fn watch_job(
    aws: &AwsClients,
    store: &SsmStatusStore,
    plan: &JobPlan,
    instance_id: &str,
    limits: Limits,
    poll_interval: Duration,
) -> Ending {
    let launched = Instant::now();
    let mut last_status: Option<Status> = None;
    let mut last_change = Instant::now();
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll_interval) => {}
            _ = &mut interrupt => return Ending::Interrupted,
        }
        // Instance first, status second: see the module docs of `watch`.
        let instance = match launch::instance_state(aws, instance_id).await {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!("{err}; will retry");
                InstanceState::Running
            }
        };
        match store.read(&plan.spec.status_parameter).await {
            Ok(Some(status)) if status.job_id == plan.spec.job_id => {
                if last_status.as_ref() != Some(&status) {
                    last_change = Instant::now();
                    report_progress(&status, launched.elapsed());
                    last_status = Some(status);
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("{err}; will retry"),
        }
        let observation = Observation {
            instance,
            status: last_status.as_ref(),
            since_launch: launched.elapsed(),
            since_last_change: last_change.elapsed(),
        };
        match watch::decide(&observation, &limits) {
            Decision::Continue => {}
            verdict => return Ending::Decided(verdict),
        }
    }
}

fn report_progress(status: &Status, elapsed: Duration) {
    const MIB: f64 = 1024.0 * 1024.0;
    tracing::info!(
        phase = status.phase.as_str(),
        bytes_read = status.bytes_read,
        bytes_uploaded = status.bytes_uploaded,
        "status"
    );
    eprintln!(
        "backup-cloud: [{:>5}s] {}: {:.1} MiB read, {:.1} MiB uploaded{}",
        elapsed.as_secs(),
        status.phase.as_str(),
        status.bytes_read as f64 / MIB,
        status.bytes_uploaded as f64 / MIB,
        if status.message.is_empty() {
            String::new()
        } else {
            format!(" — {}", status.message)
        }
    );
}

/// Records a failure the agent could not report itself (timeouts, launch
/// errors, interruption), so `status` tells the truth later. Best effort:
/// the exit code already carries the outcome.
async fn mark_failed(store: &SsmStatusStore, parameter: &str, job_id: &str, reason: &str) {
    let mut status = match store.read(parameter).await {
        Ok(Some(existing)) if existing.job_id == job_id => existing,
        _ => Status::new(job_id, Phase::Failed),
    };
    if status.phase.is_terminal() {
        return;
    }
    status.phase = Phase::Failed;
    status.updated_at = OffsetDateTime::now_utc();
    status.set_message(reason);
    if let Err(err) = store.write(parameter, &status).await {
        tracing::warn!("could not record the failure in the status parameter: {err}");
    }
}

/// Reads the manifest the agent reported and checks it belongs to this job.
async fn fetch_manifest(aws: &AwsClients, plan: &JobPlan, key: &str) -> Result<Manifest, String> {
    if key != plan.manifest_key() {
        return Err(format!(
            "the agent reported manifest {key}, expected {}",
            plan.manifest_key()
        ));
    }
    let object = aws
        .s3
        .get_object()
        .bucket(&plan.spec.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            format!(
                "the agent reported success but the manifest s3://{}/{key} cannot be read: {}",
                plan.spec.bucket,
                crate::aws::describe_sdk_error(&e)
            )
        })?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| format!("reading the manifest failed: {e}"))?
        .into_bytes();
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("the manifest is not valid: {e}"))?;
    if manifest.schema_version != SCHEMA_VERSION || manifest.job_id != plan.spec.job_id {
        return Err(format!(
            "the manifest at {key} belongs to job {} (schema {}), not {}",
            manifest.job_id, manifest.schema_version, plan.spec.job_id
        ));
    }
    if manifest.objects.is_empty() {
        return Err("the manifest lists no objects".to_owned());
    }
    Ok(manifest)
}

fn print_dry_run(plan: &JobPlan, config: &Config, script: &str) {
    println!("# dry run: nothing was launched or written");
    println!("job id:          {}", plan.spec.job_id);
    println!(
        "ami:             {} (from {})",
        plan.spec.ami_id, config.instance.ami_parameter
    );
    println!("instance type:   {}", plan.spec.instance_type);
    println!(
        "shutdown:        terminate (dead-man after {} min)",
        plan.max_lifetime_minutes
    );
    if let Some(profile) = &config.instance.instance_profile {
        println!("instance profile: {profile}");
    }
    if let Some(subnet) = &config.instance.subnet_id {
        println!("subnet:          {subnet}");
    }
    for group in &config.instance.security_group_ids {
        println!("security group:  {group}");
    }
    for (key, value) in &plan.tags {
        println!("tag:             {key}={value}");
    }
    println!(
        "job spec:        s3://{}/{}",
        plan.spec.bucket, plan.spec_key
    );
    println!(
        "backup prefix:   s3://{}/{}",
        plan.spec.bucket, plan.spec.backup_prefix
    );
    println!("status:          ssm:{}", plan.spec.status_parameter);
    println!("user-data ({} bytes):", script.len());
    println!("{script}");
}
