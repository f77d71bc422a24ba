//! The S3 side of the stream: one multipart upload, fed part by part from a
//! bounded channel, with a fixed number of parts in flight.
//!
//! The rules follow the AWS transfer manager: parts travel concurrently in
//! a `JoinSet`; the upload is completed only with every part accounted for,
//! in order; on any error the caller aborts it, so no orphaned parts keep
//! costing money. Completing and aborting are the caller's decisions
//! because only the caller knows whether the dump itself succeeded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
};
use aws_sdk_s3::Client as S3Client;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::aws::describe_sdk_error;
use crate::schema::{Retention, RetentionMode};

/// S3 refuses multipart uploads with more parts than this.
pub const MAX_PARTS: i32 = 10_000;

/// S3's limits on the size of every part but the last.
pub const PART_SIZE_RANGE: std::ops::RangeInclusive<u64> = (5 << 20)..=(5 << 30);

/// The upload failed; the object does not exist.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot start the multipart upload of s3://{bucket}/{key}: {reason}")]
    Create {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("uploading part {part_number} of s3://{bucket}/{key} failed: {reason}")]
    Part {
        bucket: String,
        key: String,
        part_number: i32,
        reason: String,
    },
    #[error("the upload of s3://{bucket}/{key} needs more than {MAX_PARTS} parts; raise upload.part_size_mib")]
    TooManyParts { bucket: String, key: String },
    #[error("the upload of s3://{bucket}/{key} received no data")]
    Empty { bucket: String, key: String },
    #[error("a part upload task of s3://{bucket}/{key} died: {reason}")]
    Task {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("completing the multipart upload of s3://{bucket}/{key} failed: {reason}")]
    Complete {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("aborting the multipart upload of s3://{bucket}/{key} failed: {reason}")]
    Abort {
        bucket: String,
        key: String,
        reason: String,
    },
}

/// The S3 Object Lock retention an object carries (`storage.retention`):
/// locked for that many days from when it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    pub retain_until: aws_sdk_s3::primitives::DateTime,
}

impl ObjectLock {
    /// The lock for an object written now, if retention is asked for.
    pub fn new(retention: Option<Retention>) -> Option<ObjectLock> {
        let retention = retention?;
        let until =
            time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(retention.days));
        Some(ObjectLock {
            mode: match retention.mode {
                RetentionMode::Compliance => ObjectLockMode::Compliance,
                RetentionMode::Governance => ObjectLockMode::Governance,
            },
            retain_until: aws_sdk_s3::primitives::DateTime::from_secs(until.unix_timestamp()),
        })
    }
}

/// One multipart upload in progress. Cloning is cheap (the SDK client is
/// reference-counted), so each part task carries its own handle.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    client: S3Client,
    bucket: String,
    key: String,
    upload_id: String,
}

impl MultipartUpload {
    /// Starts a multipart upload of `s3://bucket/key` with CRC32 part
    /// checksums, which S3 verifies on every part, locked by `lock`.
    pub async fn create(
        client: &S3Client,
        bucket: &str,
        key: &str,
        lock: Option<&ObjectLock>,
    ) -> Result<MultipartUpload, UploadError> {
        let create_error = |reason: String| UploadError::Create {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let output = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type("application/pgp-encrypted")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_object_lock_mode(lock.map(|l| l.mode.clone()))
            .set_object_lock_retain_until_date(lock.map(|l| l.retain_until))
            .send()
            .await
            .map_err(|err| create_error(describe_sdk_error(&err)))?;
        let upload_id = output
            .upload_id()
            .ok_or_else(|| create_error("S3 returned no upload id".to_owned()))?;
        Ok(MultipartUpload {
            client: client.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Uploads one part (numbered from 1).
    pub async fn upload_part(
        &self,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, UploadError> {
        let part_error = |reason: String| UploadError::Part {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            part_number,
            reason,
        };
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(part_number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body))
            // The CRC32 checksum, which S3 verifies, already covers the
            // body (and TLS the transport); signing it too would hash every
            // byte with SHA-256 a second time.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|err| part_error(describe_sdk_error(&err)))?;
        let e_tag = output
            .e_tag()
            .ok_or_else(|| part_error("S3 returned no ETag".to_owned()))?;
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .e_tag(e_tag)
            .set_checksum_crc32(output.checksum_crc32().map(str::to_owned))
            .build())
    }

    /// Uploads every part received on `parts`, at most `concurrency` at a
    /// time, adding each acknowledged part's size to `uploaded_bytes`.
    /// Returns the parts in order once the channel closes. Returning (even
    /// with an error) drops the receiver, which stops the producer; any
    /// parts still in flight on error are cancelled.
    pub async fn upload_parts(
        &self,
        mut parts: mpsc::Receiver<Bytes>,
        concurrency: usize,
        uploaded_bytes: Arc<AtomicU64>,
    ) -> Result<Vec<CompletedPart>, UploadError> {
        let concurrency = concurrency.max(1);
        let mut in_flight: JoinSet<Result<CompletedPart, UploadError>> = JoinSet::new();
        let mut done = Vec::new();
        let mut next_part_number = 1;
        loop {
            if in_flight.len() >= concurrency {
                if let Some(finished) = in_flight.join_next().await {
                    done.push(self.part_outcome(finished)?);
                }
                continue;
            }
            tokio::select! {
                received = parts.recv() => match received {
                    Some(body) => {
                        if next_part_number > MAX_PARTS {
                            return Err(UploadError::TooManyParts {
                                bucket: self.bucket.clone(),
                                key: self.key.clone(),
                            });
                        }
                        let upload = self.clone();
                        let uploaded_bytes = uploaded_bytes.clone();
                        let part_number = next_part_number;
                        next_part_number += 1;
                        in_flight.spawn(async move {
                            let size = body.len() as u64;
                            let part = upload.upload_part(part_number, body).await?;
                            uploaded_bytes.fetch_add(size, Ordering::Relaxed);
                            Ok(part)
                        });
                    }
                    None => break,
                },
                Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                    done.push(self.part_outcome(finished)?);
                }
            }
        }
        while let Some(finished) = in_flight.join_next().await {
            done.push(self.part_outcome(finished)?);
        }
        done.sort_by_key(|part| part.part_number());
        Ok(done)
    }

    fn part_outcome(
        &self,
        finished: Result<Result<CompletedPart, UploadError>, tokio::task::JoinError>,
    ) -> Result<CompletedPart, UploadError> {
        finished.map_err(|err| UploadError::Task {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            reason: err.to_string(),
        })?
    }

    /// Completes the upload. `parts` must be every part, in order, numbered
    /// 1..=n without gaps; anything else is refused before asking S3.
    pub async fn complete(&self, parts: Vec<CompletedPart>) -> Result<(), UploadError> {
        let complete_error = |reason: String| UploadError::Complete {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            reason,
        };
        if parts.is_empty() {
            return Err(UploadError::Empty {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
            });
        }
        if let Some((index, part)) = parts
            .iter()
            .enumerate()
            .find(|(index, part)| part.part_number() != Some(*index as i32 + 1))
        {
            return Err(complete_error(format!(
                "part {} is missing (found {:?} in its place)",
                index + 1,
                part.part_number()
            )));
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|err| complete_error(describe_sdk_error(&err)))?;
        Ok(())
    }

    /// Aborts the upload, discarding every part S3 holds for it.
    pub async fn abort(&self) -> Result<(), UploadError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|err| UploadError::Abort {
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                reason: describe_sdk_error(&err),
            })?;
        Ok(())
    }
}
