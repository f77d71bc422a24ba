//! Cleaning up after an agent that could not clean up itself.
//!
//! The agent aborts its multipart upload on every failure it lives to see.
//! When it does not live — killed, hung past its heartbeat, its instance
//! terminated from outside or by the dead-man — the parts it uploaded stay
//! in S3, invisible and billed, until someone aborts the upload. Once the
//! controller has confirmed the instance gone, nobody can still be writing
//! under the job's backup prefix (the lease keeps one run per job), so
//! every incomplete upload there is debris and is aborted.

use aws_sdk_s3::Client as S3Client;

use crate::aws::describe_sdk_error;

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("cannot list incomplete multipart uploads under s3://{bucket}/{prefix}: {reason}")]
    List {
        bucket: String,
        prefix: String,
        reason: String,
    },
    #[error("cannot abort the incomplete multipart upload of s3://{bucket}/{key}: {reason}")]
    Abort {
        bucket: String,
        key: String,
        reason: String,
    },
}

/// Aborts every incomplete multipart upload under `prefix` and returns the
/// keys it aborted. Call only when no agent can be writing there.
pub async fn abort_incomplete_uploads(
    s3: &S3Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, CleanupError> {
    let mut aborted = Vec::new();
    let mut key_marker: Option<String> = None;
    let mut upload_id_marker: Option<String> = None;
    loop {
        let page = s3
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(upload_id_marker.take())
            .send()
            .await
            .map_err(|err| CleanupError::List {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
                reason: describe_sdk_error(&err),
            })?;
        for upload in page.uploads() {
            let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            s3.abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|err| CleanupError::Abort {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    reason: describe_sdk_error(&err),
                })?;
            aborted.push(key.to_owned());
        }
        if page.is_truncated() != Some(true) {
            return Ok(aborted);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        upload_id_marker = page.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && upload_id_marker.is_none() {
            return Ok(aborted);
        }
    }
}
