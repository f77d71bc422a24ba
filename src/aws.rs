//! One place that turns configuration into AWS clients.
//!
//! The controller and the agent both talk to S3, SSM and (the controller)
//! EC2 and RDS. Endpoint overrides for LocalStack, path-style addressing and the
//! standard credential chain are decided here once, so both sides agree.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::schema::AwsTimeouts;

/// How long to wait for a TCP (and TLS) connection to an AWS endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How patient the agent is with the instance metadata service (IMDS),
/// where its role's credentials come from. IMDS throttles each instance
/// ("Query throttling", EC2 User Guide, which asks callers to retry with
/// backoff) and answers slowly while the instance is busy; the SDK's
/// defaults (1 s to connect, 1 s to read, 4 attempts, 5 s to load the
/// credentials) gave up under a ten-job load in the test world.
const IMDS_TIMEOUT: Duration = Duration::from_secs(5);
const IMDS_ATTEMPTS: u32 = 8;
const CREDENTIALS_LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Clients for every service backup-cloud uses.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub sts: aws_sdk_sts::Client,
    pub sns: aws_sdk_sns::Client,
    pub rds: aws_sdk_rds::Client,
    pub region: Option<String>,
    /// Where the clients' credentials come from.
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
}

impl AwsClients {
    /// Loads the standard chain (profiles, environment, instance role) and
    /// applies the optional region and endpoint overrides. The endpoint also
    /// comes from `AWS_ENDPOINT_URL` through the chain; whenever one is set,
    /// S3 uses path-style addressing, which emulators such as LocalStack need.
    pub async fn load(region: Option<&str>, endpoint_url: Option<&str>) -> AwsClients {
        AwsClients::load_with(region, endpoint_url, AwsTimeouts::default()).await
    }

    /// [`AwsClients::load`], with every call bounded by `timeouts`: no
    /// AWS call can hang forever.
    pub async fn load_with(
        region: Option<&str>,
        endpoint_url: Option<&str>,
        timeouts: AwsTimeouts,
    ) -> AwsClients {
        let sdk = loader(region, endpoint_url, timeouts).load().await;
        AwsClients::from_sdk_config(&sdk)
    }

    /// The agent's clients on its instance: region, endpoint and
    /// credentials from the environment and, for the instance role, from
    /// IMDS, asked patiently (see [`IMDS_TIMEOUT`]); every call bounded
    /// by `timeouts`.
    pub async fn load_on_instance(timeouts: AwsTimeouts) -> AwsClients {
        let imds = aws_config::imds::Client::builder()
            .connect_timeout(IMDS_TIMEOUT)
            .read_timeout(IMDS_TIMEOUT)
            .max_attempts(IMDS_ATTEMPTS)
            .build();
        let credentials =
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .imds_client(imds)
                .build()
                .await;
        let cache = aws_config::identity::IdentityCache::lazy()
            .load_timeout(CREDENTIALS_LOAD_TIMEOUT)
            .build();
        let sdk = loader(None, None, timeouts)
            .credentials_provider(credentials)
            .identity_cache(cache)
            .load()
            .await;
        AwsClients::from_sdk_config(&sdk)
    }

    /// When the credentials the clients sign with expire: `None` for
    /// long-term keys, or when no credentials can be loaded. Temporary
    /// credentials (SSO, an assumed role, an instance role) carry an
    /// expiry, and a URL they presign stops working with them.
    pub async fn credentials_expiry(&self) -> Option<std::time::SystemTime> {
        use aws_sdk_s3::config::ProvideCredentials;
        let provider = self.credentials.as_ref()?;
        provider.provide_credentials().await.ok()?.expiry()
    }

    /// Who the clients act as: the caller's ARN from STS
    /// GetCallerIdentity (which needs no permission), or `None` when STS
    /// does not answer.
    pub async fn caller_arn(&self) -> Option<String> {
        let identity = self.sts.get_caller_identity().send().await.ok()?;
        identity.arn().map(str::to_owned)
    }

    fn from_sdk_config(sdk: &SdkConfig) -> AwsClients {
        let s3_config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            ssm: aws_sdk_ssm::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            rds: aws_sdk_rds::Client::new(sdk),
            region: sdk.region().map(|r| r.to_string()),
            credentials: sdk.credentials_provider(),
        }
    }
}

/// What every set of clients shares: call timeouts, and the region and
/// endpoint when given.
fn loader(
    region: Option<&str>,
    endpoint_url: Option<&str>,
    timeouts: AwsTimeouts,
) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(Duration::from_secs(timeouts.attempt_secs))
            .operation_timeout(Duration::from_secs(timeouts.operation_secs))
            .build(),
    );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader
}

/// Renders an AWS SDK error with its service code and message, which the
/// SDK's own `Display` hides behind "service error".
pub fn describe_sdk_error<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            match (inner.code(), inner.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => inner.to_string(),
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                // some causes repeat what their error already said
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}
