//! The controller's AWS actions: resolve the AMI, publish the agent and the
//! job spec, launch the instance, and make sure it goes away.
//!
//! Each function is one step of the flow in the README, with errors that
//! say which step failed and why.

use std::time::Duration;

use aws_sdk_ec2::types::{
    HttpTokensState, IamInstanceProfileSpecification, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, ResourceType,
    ShutdownBehavior, Tag, TagSpecification,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::aws::{describe_sdk_error, AwsClients};
use crate::config::InstanceSettings;
use crate::controller::plan::JobPlan;
use crate::controller::watch::InstanceState;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot resolve the AMI from SSM parameter {parameter}: {reason}")]
    Ami { parameter: String, reason: String },
    #[error("cannot read the agent binary {path}: {source}")]
    AgentBinary {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot upload to s3://{bucket}/{key}: {reason}")]
    Upload {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("cannot presign the agent URL: {0}")]
    Presign(String),
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

/// The agent binary to ship: its bytes and hex SHA-256.
pub struct AgentBinary {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl AgentBinary {
    pub fn read(path: &std::path::Path) -> Result<AgentBinary, LaunchError> {
        let bytes = std::fs::read(path).map_err(|source| LaunchError::AgentBinary {
            path: path.to_owned(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(AgentBinary { bytes, sha256 })
    }
}

/// Uploads the agent under its SHA-256 (once: an existing object is reused)
/// and returns a presigned GET URL valid for `valid_for`.
pub async fn publish_agent(
    aws: &AwsClients,
    bucket: &str,
    key: &str,
    agent: AgentBinary,
    valid_for: Duration,
) -> Result<String, LaunchError> {
    let exists = aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok();
    if !exists {
        let checksum = base64::engine::general_purpose::STANDARD
            .encode(hex::decode(&agent.sha256).expect("sha256 is hex"));
        aws.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .checksum_sha256(checksum)
            .body(ByteStream::from(agent.bytes))
            .send()
            .await
            .map_err(|e| LaunchError::Upload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                reason: describe_sdk_error(&e),
            })?;
    }
    let presigning =
        PresigningConfig::expires_in(valid_for).map_err(|e| LaunchError::Presign(e.to_string()))?;
    let request = aws
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .presigned(presigning)
        .await
        .map_err(|e| LaunchError::Presign(describe_sdk_error(&e)))?;
    Ok(request.uri().to_owned())
}

/// Writes a JSON document to S3.
pub async fn put_json(
    aws: &AwsClients,
    bucket: &str,
    key: &str,
    body: String,
) -> Result<(), LaunchError> {
    aws.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .map_err(|e| LaunchError::Upload {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason: describe_sdk_error(&e),
        })?;
    Ok(())
}

/// Launches the instance and returns its id.
pub async fn run_instance(
    aws: &AwsClients,
    plan: &JobPlan,
    instance: &InstanceSettings,
    user_data: &str,
) -> Result<String, LaunchError> {
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
    if let Some(profile) = &instance.instance_profile {
        let spec = if profile.starts_with("arn:") {
            IamInstanceProfileSpecification::builder().arn(profile)
        } else {
            IamInstanceProfileSpecification::builder().name(profile)
        };
        request = request.iam_instance_profile(spec.build());
    }
    let output = request
        .send()
        .await
        .map_err(|e| LaunchError::RunInstances(describe_sdk_error(&e)))?;
    output
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_owned)
        .ok_or_else(|| LaunchError::RunInstances("the response named no instance".to_owned()))
}

/// The instance's state; an instance EC2 no longer knows is `Gone`.
pub async fn instance_state(
    aws: &AwsClients,
    instance_id: &str,
) -> Result<InstanceState, LaunchError> {
    let result = aws
        .ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await;
    let output = match result {
        Ok(output) => output,
        Err(err)
            if err
                .as_service_error()
                .and_then(|e| aws_sdk_ec2::error::ProvideErrorMetadata::code(e))
                == Some("InvalidInstanceID.NotFound") =>
        {
            return Ok(InstanceState::Gone)
        }
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
    Ok(match state {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        _ => InstanceState::Gone,
    })
}

/// Terminates the instance and waits until EC2 reports it going away.
pub async fn terminate(
    aws: &AwsClients,
    instance_id: &str,
    wait: Duration,
) -> Result<(), LaunchError> {
    aws.ec2
        .terminate_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| LaunchError::Terminate {
            instance_id: instance_id.to_owned(),
            reason: describe_sdk_error(&e),
        })?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if instance_state(aws, instance_id).await? == InstanceState::Gone {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LaunchError::TerminateTimeout {
                instance_id: instance_id.to_owned(),
                waited: wait,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
