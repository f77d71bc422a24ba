//! The controller's AWS actions: resolve the AMI, publish the agent and the
//! job spec, launch the instance, and make sure it goes away.
//!
//! Each function is one step of the flow in the README, with errors that
//! say which step failed and why.

use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, MarketType, ResourceType,
    ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification, VolumeType,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::aws::{describe_sdk_error, AwsClients};
use crate::config::InstanceSettings;
use crate::controller::plan::{JobPlan, TAG_JOB, TAG_JOB_ID, TAG_MANAGED};
use crate::controller::platform::{inspect_agent, AgentPlatform, PlatformError};
use crate::controller::watch::{self, BeforeTerminate, InstanceState, Lookup};
use crate::s3::{self, Bucket, Condition, Object, Put, S3Error};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot resolve the AMI from SSM parameter {parameter}: {reason}")]
    Ami { parameter: String, reason: String },
    #[error("cannot read the agent binary {path}: {source}")]
    AgentBinary {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot upload to {location}: {source}")]
    Upload { location: String, source: S3Error },
    #[error("cannot presign the agent URL: {0}")]
    Presign(S3Error),
    #[error("cannot read {location}: {source}")]
    Read { location: String, source: S3Error },
    #[error("RunInstances failed: {0}")]
    RunInstances(String),
    #[error("cannot terminate instance {instance_id}: {reason}")]
    Terminate { instance_id: String, reason: String },
    #[error("instance {instance_id} was still running {waited:?} after TerminateInstances")]
    TerminateTimeout {
        instance_id: String,
        waited: Duration,
    },
    #[error("cannot describe instance {instance_id}: {reason}")]
    Describe { instance_id: String, reason: String },
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

/// Reads the AMI id from an SSM parameter (public AMI parameters such as
/// Canonical's or Amazon Linux's resolve to the latest image).
pub async fn resolve_ami(aws: &AwsClients, parameter: &str) -> Result<String, LaunchError> {
    let error = |reason: String| LaunchError::Ami {
        parameter: parameter.to_owned(),
        reason,
    };
    let output = aws
        .ssm
        .get_parameter()
        .name(parameter)
        .send()
        .await
        .map_err(|e| error(describe_sdk_error(&e)))?;
    let value = output
        .parameter()
        .and_then(|p| p.value())
        .ok_or_else(|| error("the parameter has no value".to_owned()))?;
    if !value.starts_with("ami-") {
        return Err(error(format!("its value {value:?} is not an AMI id")));
    }
    Ok(value.to_owned())
}

/// The agent binary to ship: its path, bytes, hex SHA-256 and what it
/// needs of an instance.
pub struct AgentBinary {
    pub path: std::path::PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub platform: AgentPlatform,
}

impl AgentBinary {
    /// Reads the executable at `path` and checks that an instance can run
    /// it ([`inspect_agent`]).
    pub fn read(path: &std::path::Path) -> Result<AgentBinary, LaunchError> {
        let bytes = std::fs::read(path).map_err(|source| LaunchError::AgentBinary {
            path: path.to_owned(),
            source,
        })?;
        let platform = inspect_agent(&path.display().to_string(), &bytes)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(AgentBinary {
            path: path.to_owned(),
            bytes,
            sha256,
            platform,
        })
    }
}

/// Uploads the agent under its SHA-256 (once: an existing object is reused).
pub async fn publish_agent(
    bucket: &Bucket,
    key: &str,
    agent: &AgentBinary,
) -> Result<(), LaunchError> {
    let exists = matches!(bucket.size(key).await, Ok(Some(_)));
    if !exists {
        let checksum = base64::engine::general_purpose::STANDARD
            .encode(hex::decode(&agent.sha256).expect("sha256 is hex"));
        let options = Put {
            checksum_sha256: Some(checksum),
            ..Put::default()
        };
        bucket
            .put(key, agent.bytes.clone(), options)
            .await
            .map_err(|source| LaunchError::Upload {
                location: bucket.location(key),
                source,
            })?;
    }
    Ok(())
}

/// A presigned GET URL of `key`, valid for `valid_for` from now (and no
/// longer than the credentials that sign it).
pub async fn presign_get(
    bucket: &Bucket,
    key: &str,
    valid_for: Duration,
) -> Result<String, LaunchError> {
    bucket
        .presigned_get(key, valid_for)
        .await
        .map_err(LaunchError::Presign)
}

/// Writes a JSON document under `condition`; `Ok(false)` when the
/// condition failed.
pub async fn put_json(
    bucket: &Bucket,
    key: &str,
    body: String,
    condition: Condition<'_>,
) -> Result<bool, LaunchError> {
    let options = Put {
        content_type: Some(s3::JSON),
        condition,
        ..Put::default()
    };
    bucket
        .put(key, body.into_bytes(), options)
        .await
        .map_err(|source| LaunchError::Upload {
            location: bucket.location(key),
            source,
        })
}

/// Reads a small object and its ETag; `None` when it does not exist.
pub async fn get_json(bucket: &Bucket, key: &str) -> Result<Option<Object>, LaunchError> {
    bucket
        .get_if_exists(key)
        .await
        .map_err(|source| LaunchError::Read {
            location: bucket.location(key),
            source,
        })
}

/// A launched instance.
#[derive(Debug, Clone)]
pub struct Launched {
    pub instance_id: String,
    /// Whether it runs on spot capacity.
    pub spot: bool,
}

/// Launches the instance. With `spot`, asks for spot capacity first and
/// falls back to on-demand when EC2 refuses spot for lack of capacity or
/// price. Each attempt carries its own `ClientToken`, so a RunInstances the
/// SDK retries after a lost response starts no second instance; an
/// instance profile EC2 does not know yet is waited for.
pub async fn launch_instance(
    aws: &AwsClients,
    plan: &JobPlan,
    instance: &InstanceSettings,
    user_data: &str,
    spot: bool,
) -> Result<Launched, LaunchError> {
    if spot {
        match run_instance_when_profile_ready(aws, plan, instance, user_data, true).await {
            Ok(instance_id) => {
                return Ok(Launched {
                    instance_id,
                    spot: true,
                })
            }
            Err(RunInstancesError { code, message, .. }) if is_spot_refusal(code.as_deref()) => {
                tracing::warn!(
                    "spot capacity refused ({}: {message}); launching on-demand",
                    code.as_deref().unwrap_or("?")
                );
            }
            Err(err) => return Err(LaunchError::RunInstances(err.message)),
        }
    }
    run_instance_when_profile_ready(aws, plan, instance, user_data, false)
        .await
        .map(|instance_id| Launched {
            instance_id,
            spot: false,
        })
        .map_err(|err| LaunchError::RunInstances(err.message))
}

/// Error codes with which EC2 refuses spot capacity (as opposed to a
/// request that would fail on-demand too).
pub fn is_spot_refusal(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "InsufficientInstanceCapacity"
                | "InsufficientCapacity"
                | "SpotMaxPriceTooLow"
                | "MaxSpotInstanceCountExceeded"
                | "InsufficientSpotCapacity"
                | "SpotCapacityNotAvailable"
                | "UnfulfillableCapacity"
        )
    )
}

/// How long an instance profile may be refused as unknown before the
/// refusal counts: IAM is eventually consistent, and EC2 refuses a profile
/// created moments ago ("Invalid IAM Instance Profile name") for up to
/// about a minute (IAM User Guide, "Troubleshooting IAM roles": "wait a few
/// seconds and try again").
pub const PROFILE_PROPAGATION: Duration = Duration::from_secs(75);

/// Whether EC2 refused the launch because it does not know the instance
/// profile (yet).
pub fn is_profile_not_ready(code: Option<&str>, message: &str) -> bool {
    code == Some("InvalidParameterValue") && message.contains("Invalid IAM Instance Profile")
}

/// The wait before the `attempt`-th retry (1-based) of a launch refused
/// for its instance profile: 1 s, doubling, at most 10 s.
pub fn profile_retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(4)).min(Duration::from_secs(10))
}

/// The `ClientToken` of one RunInstances attempt (EC2 allows 64 ASCII
/// characters): distinct per job, market and attempt, the same for the
/// SDK's retries of that attempt.
pub fn client_token(job_id: &str, spot: bool, attempt: u32) -> String {
    let market = if spot { "spot" } else { "on-demand" };
    hex::encode(Sha256::digest(format!("{job_id}/{market}/{attempt}")))
}

/// How long a launch whose answer was lost is asked again. A timeout or a
/// connection dropped after the request went out leaves it unknown whether
/// EC2 started the instance; asked again with the same `ClientToken`, EC2
/// answers with the instance it started for that token, or starts it now,
/// never a second one (EC2 API Reference, "Ensuring idempotency"). Giving
/// up instead would report a failed launch while an instance runs.
pub const LOST_ANSWER_PATIENCE: Duration = Duration::from_secs(120);

struct RunInstancesError {
    code: Option<String>,
    message: String,
    /// The request may have reached EC2 but no answer came back (a
    /// timeout, a dropped connection, an unreadable response).
    answer_lost: bool,
}

/// [`run_instance`], retried while EC2 refuses the instance profile as
/// unknown, for up to [`PROFILE_PROPAGATION`] (with a new token each
/// time), and while its answers are lost, for up to
/// [`LOST_ANSWER_PATIENCE`] (with the same token).
async fn run_instance_when_profile_ready(
    aws: &AwsClients,
    plan: &JobPlan,
    instance: &InstanceSettings,
    user_data: &str,
    spot: bool,
) -> Result<String, RunInstancesError> {
    let deadline = tokio::time::Instant::now() + PROFILE_PROPAGATION;
    let mut attempt = 1;
    let mut lost: Option<(tokio::time::Instant, u32)> = None;
    loop {
        let token = client_token(&plan.spec.job_id, spot, attempt);
        match run_instance(aws, plan, instance, user_data, spot, &token).await {
            Err(err) if err.answer_lost => {
                let (since, asked) = lost.get_or_insert((tokio::time::Instant::now(), 0));
                if since.elapsed() >= LOST_ANSWER_PATIENCE {
                    return Err(err);
                }
                *asked += 1;
                let delay = profile_retry_delay(*asked);
                tracing::warn!(
                    "the answer to RunInstances was lost ({}); asking again in {delay:?} with the same ClientToken",
                    err.message
                );
                tokio::time::sleep(delay).await;
            }
            Err(err)
                if is_profile_not_ready(err.code.as_deref(), &err.message)
                    && tokio::time::Instant::now() < deadline =>
            {
                let delay = profile_retry_delay(attempt);
                tracing::info!(
                    "the instance profile is not known to EC2 yet ({}); retrying in {delay:?}",
                    err.message
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
                lost = None;
            }
            result => return result,
        }
    }
}

async fn run_instance(
    aws: &AwsClients,
    plan: &JobPlan,
    instance: &InstanceSettings,
    user_data: &str,
    spot: bool,
    client_token: &str,
) -> Result<String, RunInstancesError> {
    let tags: Vec<Tag> = plan
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let tag_spec = |resource: ResourceType| {
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags.clone()))
            .build()
    };
    let mut request = aws
        .ec2
        .run_instances()
        .client_token(client_token)
        .image_id(&plan.spec.ami_id)
        .instance_type(InstanceType::from(plan.spec.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume))
        .set_subnet_id(instance.subnet_id.clone());
    if !instance.security_group_ids.is_empty() {
        request = request.set_security_group_ids(Some(instance.security_group_ids.clone()));
    }
    if let Some(root) = &plan.root_volume {
        request = request.block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name(&root.device_name)
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(i32::try_from(root.gib).unwrap_or(i32::MAX))
                        .volume_type(VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    }
    if spot {
        request = request.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .build(),
                )
                .build(),
        );
    }
    if let Some(profile) = &instance.instance_profile {
        let spec = if profile.starts_with("arn:") {
            IamInstanceProfileSpecification::builder().arn(profile)
        } else {
            IamInstanceProfileSpecification::builder().name(profile)
        };
        request = request.iam_instance_profile(spec.build());
    }
    let output = request.send().await.map_err(|e| RunInstancesError {
        code: e
            .as_service_error()
            .and_then(|s| aws_sdk_ec2::error::ProvideErrorMetadata::code(s))
            .map(str::to_owned),
        message: describe_sdk_error(&e),
        answer_lost: is_answer_lost(&e),
    })?;
    output
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_owned)
        .ok_or_else(|| RunInstancesError {
            code: None,
            message: "the response named no instance".to_owned(),
            answer_lost: false,
        })
}

/// Whether a request may have reached the service without its answer
/// reaching us: everything but a service's refusal and a request that
/// could not be built.
fn is_answer_lost<E, R>(err: &aws_sdk_ec2::error::SdkError<E, R>) -> bool {
    use aws_sdk_ec2::error::SdkError;
    matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    )
}

/// One of our instances as DescribeInstances reports it.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub state: InstanceState,
    pub state_name: String,
    pub job: Option<String>,
    pub job_id: Option<String>,
    pub launched_at: Option<time::OffsetDateTime>,
    pub instance_type: String,
}

impl InstanceInfo {
    /// Time since its launch, by EC2's launch time (zero when unknown).
    pub fn age(&self) -> Duration {
        self.launched_at
            .and_then(|t| Duration::try_from(time::OffsetDateTime::now_utc() - t).ok())
            .unwrap_or(Duration::ZERO)
    }
}

/// Instances carrying our managed tag, optionally only one job's or one
/// job id's, in every state EC2 still lists.
pub async fn find_instances(
    aws: &AwsClients,
    job: Option<&str>,
    job_id: Option<&str>,
) -> Result<Vec<InstanceInfo>, LaunchError> {
    use aws_sdk_ec2::types::Filter;
    let tag_filter = |key: &str, value: &str| {
        Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build()
    };
    let mut request = aws
        .ec2
        .describe_instances()
        .filters(tag_filter(TAG_MANAGED, "true"));
    if let Some(job) = job {
        request = request.filters(tag_filter(TAG_JOB, job));
    }
    if let Some(job_id) = job_id {
        request = request.filters(tag_filter(TAG_JOB_ID, job_id));
    }
    let mut found = Vec::new();
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| LaunchError::Describe {
            instance_id: "(by tag)".to_owned(),
            reason: describe_sdk_error(&e),
        })?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            let tag = |key: &str| {
                instance
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(key))
                    .and_then(|t| t.value())
                    .map(str::to_owned)
            };
            let state_name = instance.state().and_then(|s| s.name().cloned());
            found.push(InstanceInfo {
                instance_id: instance.instance_id().unwrap_or_default().to_owned(),
                state: match state_name {
                    Some(InstanceStateName::Pending) => InstanceState::Pending,
                    Some(InstanceStateName::Running) => InstanceState::Running,
                    _ => InstanceState::Gone,
                },
                state_name: state_name.map_or("unknown".to_owned(), |s| s.as_str().to_owned()),
                job: tag(TAG_JOB),
                job_id: tag(TAG_JOB_ID),
                launched_at: instance
                    .launch_time()
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
                instance_type: instance
                    .instance_type()
                    .map_or("unknown".to_owned(), |t| t.as_str().to_owned()),
            });
        }
    }
    found.sort_by_key(|i| std::cmp::Reverse(i.launched_at));
    Ok(found)
}

/// What DescribeInstances says of the instance.
async fn lookup_instance(aws: &AwsClients, instance_id: &str) -> Result<Lookup, LaunchError> {
    let result = aws
        .ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await;
    let output = match result {
        Ok(output) => output,
        Err(err) if is_instance_not_found(&err) => return Ok(Lookup::NotFound),
        Err(err) => {
            return Err(LaunchError::Describe {
                instance_id: instance_id.to_owned(),
                reason: describe_sdk_error(&err),
            })
        }
    };
    let state = output
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(instance_id))
        .and_then(|i| i.state())
        .and_then(|s| s.name().cloned());
    Ok(Lookup::Listed(match state {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        _ => InstanceState::Gone,
    }))
}

fn is_instance_not_found<E, R>(err: &aws_sdk_ec2::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()) == Some("InvalidInstanceID.NotFound")
}

/// The instance's state, `since_launch` after its launch: an instance EC2
/// does not know is pending within [`watch::NOT_FOUND_WINDOW`], `Gone`
/// after it.
pub async fn instance_state(
    aws: &AwsClients,
    instance_id: &str,
    since_launch: Duration,
) -> Result<InstanceState, LaunchError> {
    let lookup = lookup_instance(aws, instance_id).await?;
    Ok(watch::state_of(lookup, since_launch))
}

/// Terminates the instance, launched `since_launch` ago, and waits until
/// EC2 reports it going away. Its state is confirmed first: one already
/// gone is left alone, one EC2 does not list yet (see
/// [`watch::NOT_FOUND_WINDOW`]) is looked for again until it shows up.
pub async fn terminate(
    aws: &AwsClients,
    instance_id: &str,
    wait: Duration,
    since_launch: Duration,
) -> Result<(), LaunchError> {
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let timeout = || LaunchError::TerminateTimeout {
        instance_id: instance_id.to_owned(),
        waited: wait,
    };
    loop {
        let lookup = lookup_instance(aws, instance_id).await?;
        match watch::before_terminate(lookup, since_launch + started.elapsed()) {
            BeforeTerminate::AlreadyGone => return Ok(()),
            BeforeTerminate::LookAgain => {}
            BeforeTerminate::Terminate => {
                match aws
                    .ec2
                    .terminate_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                {
                    Ok(_) => break,
                    // Listed to DescribeInstances, not yet to TerminateInstances.
                    Err(err) if is_instance_not_found(&err) => {}
                    Err(err) => {
                        return Err(LaunchError::Terminate {
                            instance_id: instance_id.to_owned(),
                            reason: describe_sdk_error(&err),
                        })
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timeout());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    loop {
        let state = instance_state(aws, instance_id, since_launch + started.elapsed()).await?;
        if state == InstanceState::Gone {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timeout());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_capacity_and_price_refusals_fall_back_to_on_demand() {
        assert!(is_spot_refusal(Some("InsufficientInstanceCapacity")));
        assert!(is_spot_refusal(Some("SpotMaxPriceTooLow")));
        assert!(!is_spot_refusal(Some("UnauthorizedOperation")));
        assert!(!is_spot_refusal(Some("InvalidParameterValue")));
        assert!(!is_spot_refusal(None));
    }

    #[test]
    fn an_unknown_instance_profile_is_waited_for_with_backoff() {
        let message = "Value (backup-cloud-agent) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name";
        assert!(is_profile_not_ready(Some("InvalidParameterValue"), message));
        assert!(!is_profile_not_ready(
            Some("InvalidParameterValue"),
            "Invalid value for instanceType"
        ));
        assert!(!is_profile_not_ready(
            Some("UnauthorizedOperation"),
            message
        ));
        let delays: Vec<u64> = (1..=7).map(|a| profile_retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10, 10]);
        let total: Duration = (1..=10).map(profile_retry_delay).sum();
        assert!(
            total >= Duration::from_secs(60),
            "{total:?}: about a minute of retries"
        );
    }

    #[test]
    fn each_launch_attempt_has_its_own_client_token() {
        let job = "orders-20260102T030405Z-0badcafe";
        let tokens = [
            client_token(job, true, 1),
            client_token(job, false, 1),
            client_token(job, false, 2),
            client_token("orders-20260102T030405Z-0badcaff", false, 1),
        ];
        for (i, a) in tokens.iter().enumerate() {
            assert!(a.len() <= 64 && a.is_ascii(), "{a}");
            for b in &tokens[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            client_token(job, false, 1),
            tokens[1],
            "stable for one attempt"
        );
    }
}
