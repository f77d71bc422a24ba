//! Where job status lives: one SSM parameter per job, JSON inside.
//!
//! The agent writes, the controller reads. Both go through the
//! [`StatusStore`] trait so the watch loop and the progress reporter can be
//! unit-tested against an in-memory store.

use std::time::Duration;

use aws_sdk_ssm::types::ParameterType;

use crate::aws::describe_sdk_error;
use crate::schema::{parse_document, DocumentError, Status, SCHEMA_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read status parameter {name}: {reason}")]
    Read { name: String, reason: String },
    #[error("cannot write status parameter {name}: {reason}")]
    Write { name: String, reason: String },
    #[error("status parameter {name} is not a backup-cloud status document: {reason}")]
    Malformed { name: String, reason: String },
    #[error("status parameter {name} has schema version {found}; this build reads version {SCHEMA_VERSION}")]
    Version { name: String, found: u32 },
    #[error("status parameter {name} was throttled")]
    Throttled { name: String },
}

/// Reads and writes job status documents by parameter name.
#[allow(async_fn_in_trait)]
pub trait StatusStore {
    async fn read(&self, name: &str) -> Result<Option<Status>, StatusError>;
    async fn write(&self, name: &str, status: &Status) -> Result<(), StatusError>;
}

/// How long the controller keeps trying a status write SSM throttles.
/// `PutParameter` shares one account-wide rate (about 3 per second at the
/// standard throughput, "AWS Systems Manager endpoints and quotas"), so a
/// dozen jobs starting together can be throttled for several seconds.
pub const CONTROLLER_PATIENCE: Duration = Duration::from_secs(60);

/// The longest wait between two tries of a throttled write.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The wait before try `attempt + 1` of a throttled write (`attempt` ≥ 1):
/// `first` doubling up to [`MAX_BACKOFF`], then scaled by a random factor
/// in [0.5, 1] so writers throttled together do not retry together.
pub fn throttle_backoff(first: Duration, attempt: u32) -> Duration {
    let ceiling = first
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

/// Writes `status`, retrying while SSM throttles, for up to `patience`;
/// other errors are returned at once.
pub async fn write_patiently<S: StatusStore>(
    store: &S,
    name: &str,
    status: &Status,
    patience: Duration,
) -> Result<(), StatusError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut attempt = 1;
    loop {
        match store.write(name, status).await {
            Err(StatusError::Throttled { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(throttle_backoff(Duration::from_millis(500), attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The production store: SSM Parameter Store.
#[derive(Clone, Debug)]
pub struct SsmStatusStore {
    client: aws_sdk_ssm::Client,
}

impl SsmStatusStore {
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmStatusStore { client }
    }
}

/// Parses a status document, checking its schema version.
pub fn parse_status(name: &str, text: &str) -> Result<Status, StatusError> {
    parse_document(text.as_bytes()).map_err(|err| match err {
        DocumentError::Version { found } => StatusError::Version {
            name: name.to_owned(),
            found: found.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX)),
        },
        DocumentError::Malformed(e) => StatusError::Malformed {
            name: name.to_owned(),
            reason: e.to_string(),
        },
    })
}

impl StatusStore for SsmStatusStore {
    async fn read(&self, name: &str) -> Result<Option<Status>, StatusError> {
        let result = self.client.get_parameter().name(name).send().await;
        match result {
            Ok(output) => {
                let value = output
                    .parameter()
                    .and_then(|p| p.value())
                    .unwrap_or_default();
                parse_status(name, value).map(Some)
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                Ok(None)
            }
            Err(err) => Err(StatusError::Read {
                name: name.to_owned(),
                reason: describe_sdk_error(&err),
            }),
        }
    }

    async fn write(&self, name: &str, status: &Status) -> Result<(), StatusError> {
        let value = serde_json::to_string(status).expect("status serialises");
        let result = self
            .client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_throttling(&err) => Err(StatusError::Throttled {
                name: name.to_owned(),
            }),
            Err(err) => Err(StatusError::Write {
                name: name.to_owned(),
                reason: describe_sdk_error(&err),
            }),
        }
    }
}

fn is_throttling<E, R>(err: &aws_sdk_ssm::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.contains("Throttl") || code == "TooManyUpdates")
}

#[cfg(test)]
pub mod memory {
    //! An in-memory [`StatusStore`] for unit tests.
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryStatusStore {
        pub documents: Mutex<HashMap<String, Status>>,
        pub writes: Mutex<Vec<Status>>,
    }

    impl StatusStore for MemoryStatusStore {
        async fn read(&self, name: &str) -> Result<Option<Status>, StatusError> {
            Ok(self.documents.lock().unwrap().get(name).cloned())
        }

        async fn write(&self, name: &str, status: &Status) -> Result<(), StatusError> {
            self.documents
                .lock()
                .unwrap()
                .insert(name.to_owned(), status.clone());
            self.writes.lock().unwrap().push(status.clone());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Phase;

    #[test]
    fn throttled_writes_back_off_doubling_with_jitter_up_to_a_ceiling() {
        let first = Duration::from_millis(500);
        for attempt in 1..=12 {
            let ceiling = (first * (1 << (attempt - 1).min(10))).min(MAX_BACKOFF);
            let wait = throttle_backoff(first, attempt);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "attempt {attempt}: {wait:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        let waits: std::collections::HashSet<_> =
            (0..20).map(|_| throttle_backoff(first, 5)).collect();
        assert!(waits.len() > 1, "jittered: {waits:?}");
    }

    #[test]
    fn parse_refuses_unknown_schema_versions() {
        let mut doc = serde_json::to_value(Status::new("j", Phase::Dumping)).unwrap();
        doc["schema_version"] = 99.into();
        let err = parse_status("/p", &doc.to_string()).unwrap_err();
        assert!(matches!(err, StatusError::Version { found: 99, .. }));
    }

    #[test]
    fn parse_refuses_garbage_with_the_parameter_name() {
        let err = parse_status("/backup-cloud/jobs/x", "not json").unwrap_err();
        assert!(err.to_string().contains("/backup-cloud/jobs/x"));
    }
}
