//! Cleaning up after an agent that could not clean up itself.
//!
//! The agent aborts its multipart upload on every failure it lives to see.
//! When it does not live — killed, hung past its heartbeat, its instance
//! terminated from outside or by the dead-man — the parts it uploaded stay
//! in S3, invisible and billed, until someone aborts the upload. Once the
//! controller has confirmed the instance gone, nobody can still be writing
//! under the job's backup prefix (the lease keeps one run per job), so
//! every incomplete upload there is debris and is aborted.

use crate::s3::{Bucket, S3Error};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("cannot list incomplete multipart uploads under {location}: {source}")]
    List { location: String, source: S3Error },
    #[error("cannot abort the incomplete multipart upload of {location}: {source}")]
    Abort { location: String, source: S3Error },
}

/// Aborts every incomplete multipart upload under `prefix` and returns the
/// keys it aborted. Call only when no agent can be writing there.
pub async fn abort_incomplete_uploads(
    bucket: &Bucket,
    prefix: &str,
) -> Result<Vec<String>, CleanupError> {
    bucket
        .abort_incomplete_uploads(prefix)
        .await
        .map_err(|(key, source)| match key {
            None => CleanupError::List {
                location: bucket.location(prefix),
                source,
            },
            Some(key) => CleanupError::Abort {
                location: bucket.location(&key),
                source,
            },
        })
}
