//! One bucket, as every part of backup-cloud reads and writes it.
//!
//! The controller publishes the agent and job specs and holds leases with
//! conditional writes; the agent reads the recipients' keys, uploads the
//! backup (locked by S3 Object Lock when retention is configured) and
//! checks it; the restore commands list, measure and stream it back. All
//! of them go through [`Bucket`], so each S3 operation is written once,
//! with one error type, [`S3Error`], that keeps the SDK's error as its
//! source and names what S3 said (the SDK's own `Display` hides it behind
//! "service error").
//!
//! Multipart uploads ([`MultipartUpload`]) follow the AWS transfer
//! manager: parts travel concurrently in a `JoinSet`; the upload is
//! completed only with every part accounted for, in order; on any error
//! the caller aborts it, so no orphaned parts keep costing money.
//! Completing and aborting are the caller's decisions because only the
//! caller knows whether what it uploads (a dump) succeeded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::schema::{Retention, RetentionMode};

/// S3 refuses multipart uploads with more parts than this.
pub const MAX_PARTS: i32 = 10_000;

/// S3's limits on the size of every part but the last.
pub const PART_SIZE_RANGE: std::ops::RangeInclusive<u64> = (5 << 20)..=(5 << 30);

/// Content type of encrypted objects.
pub const PGP_ENCRYPTED: &str = "application/pgp-encrypted";

/// Content type of JSON documents.
pub const JSON: &str = "application/json";

/// An S3 request failed. Its message is what S3 (or the transport) said;
/// its source is the SDK's error.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct S3Error {
    detail: String,
    not_found: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl S3Error {
    /// Whether the object (or upload) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.not_found
    }

    fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let not_found = matches!(
            err.as_service_error().and_then(|e| e.code()),
            Some("NoSuchKey" | "NotFound" | "NoSuchUpload")
        ) || err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 404);
        S3Error {
            detail: crate::aws::describe_sdk_error(&err),
            not_found,
            source: Some(Box::new(err)),
        }
    }

    /// A refusal S3 reported inside a successful answer (DeleteObjects'
    /// per-key errors): `said` is its code and message.
    pub fn refused(said: &str) -> S3Error {
        S3Error::answer(said)
    }

    /// A failure S3 did not report but its answer shows.
    fn answer(detail: &str) -> S3Error {
        S3Error {
            detail: detail.to_owned(),
            not_found: false,
            source: None,
        }
    }

    /// Reading a response body failed.
    fn body(err: impl std::error::Error + Send + Sync + 'static) -> S3Error {
        S3Error {
            detail: err.to_string(),
            not_found: false,
            source: Some(Box::new(err)),
        }
    }
}

/// The S3 Object Lock retention an object carries (`storage.retention`):
/// locked for that many days from when it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    pub retain_until: aws_sdk_s3::primitives::DateTime,
}

impl ObjectLock {
    /// The lock for an object written now, if retention is asked for:
    /// `days` from now, but never past `not_after` (the backup's hard
    /// expiry, its `max_age`), so that no lock outlives the retention
    /// policy; `None` too when that leaves nothing to lock.
    pub fn new(
        retention: Option<Retention>,
        not_after: Option<time::OffsetDateTime>,
    ) -> Option<ObjectLock> {
        let retention = retention?;
        let now = time::OffsetDateTime::now_utc();
        let mut until = now + time::Duration::days(i64::from(retention.days));
        if let Some(limit) = not_after {
            until = until.min(limit);
        }
        if until <= now {
            return None;
        }
        Some(ObjectLock {
            mode: match retention.mode {
                RetentionMode::Compliance => ObjectLockMode::Compliance,
                RetentionMode::Governance => ObjectLockMode::Governance,
            },
            retain_until: aws_sdk_s3::primitives::DateTime::from_secs(until.unix_timestamp()),
        })
    }
}

/// A condition on a write (leases use the conditional ones).
#[derive(Debug, Clone, Copy, Default)]
pub enum Condition<'a> {
    /// Whatever is there.
    #[default]
    Always,
    /// Only if no object exists (`If-None-Match: *`).
    Absent,
    /// Only if the object still has this ETag (`If-Match`).
    Unchanged(&'a str),
}

/// How an object is written.
#[derive(Debug, Clone, Default)]
pub struct Put<'a> {
    pub content_type: Option<&'static str>,
    pub condition: Condition<'a>,
    pub lock: Option<ObjectLock>,
    /// Base64 SHA-256 of the body, which S3 checks.
    pub checksum_sha256: Option<String>,
    /// Have S3 check a CRC32 of the body (cheaper than SHA-256).
    pub checksum_crc32: bool,
}

/// One version (or delete marker) of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    /// `null` for an object written while versioning was off.
    pub version_id: String,
}

/// A small object read whole, with its ETag.
#[derive(Debug, Clone)]
pub struct Object {
    pub body: Bytes,
    pub etag: String,
}

/// A stream of an object's bytes.
pub type ObjectReader = Box<dyn AsyncRead + Unpin + Send>;

/// A bucket and the client that reaches it. Cloning is cheap (the SDK
/// client is reference-counted).
#[derive(Debug, Clone)]
pub struct Bucket {
    client: Client,
    name: String,
}

impl Bucket {
    pub fn new(client: Client, name: &str) -> Bucket {
        Bucket {
            client,
            name: name.to_owned(),
        }
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `s3://bucket/key`, for messages.
    pub fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// Reads a whole (small) object with its ETag. A missing object is an
    /// error whose [`S3Error::is_not_found`] holds.
    pub async fn get(&self, key: &str) -> Result<Object, S3Error> {
        let output = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map_err(S3Error::from_sdk)?;
        let etag = output.e_tag().unwrap_or_default().to_owned();
        let body = output
            .body
            .collect()
            .await
            .map_err(S3Error::body)?
            .into_bytes();
        Ok(Object { body, etag })
    }

    /// [`Bucket::get`], with `None` when the object does not exist.
    pub async fn get_if_exists(&self, key: &str) -> Result<Option<Object>, S3Error> {
        match self.get(key).await {
            Ok(object) => Ok(Some(object)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Streams an object from byte `start`, `len` bytes or to its end.
    /// A missing object is an error whose [`S3Error::is_not_found`] holds.
    pub async fn read(
        &self,
        key: &str,
        start: u64,
        len: Option<u64>,
    ) -> Result<ObjectReader, S3Error> {
        let mut request = self.client.get_object().bucket(&self.name).key(key);
        if start > 0 || len.is_some() {
            request = request.range(match len {
                Some(len) => format!("bytes={start}-{}", start + len.max(1) - 1),
                None => format!("bytes={start}-"),
            });
        }
        let output = request.send().await.map_err(S3Error::from_sdk)?;
        Ok(Box::new(output.body.into_async_read()))
    }

    /// Size of an object in bytes, `None` if it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
            )),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(S3Error::from_sdk(err)),
        }
    }

    /// Writes `body` to `key` as `options` say; `Ok(false)` when its
    /// condition did not hold (S3 answers 412, or 409 for a concurrent
    /// conditional write).
    pub async fn put(
        &self,
        key: &str,
        body: impl Into<ByteStream>,
        options: Put<'_>,
    ) -> Result<bool, S3Error> {
        let request = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .set_content_type(options.content_type.map(str::to_owned))
            .set_checksum_sha256(options.checksum_sha256)
            .set_checksum_algorithm(options.checksum_crc32.then_some(ChecksumAlgorithm::Crc32))
            .set_object_lock_mode(options.lock.as_ref().map(|l| l.mode.clone()))
            .set_object_lock_retain_until_date(options.lock.map(|l| l.retain_until))
            .body(body.into());
        let request = match options.condition {
            Condition::Always => request,
            Condition::Absent => request.if_none_match("*"),
            Condition::Unchanged(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(err)
                if matches!(
                    err.raw_response().map(|r| r.status().as_u16()),
                    Some(412 | 409)
                ) =>
            {
                Ok(false)
            }
            Err(err) => Err(S3Error::from_sdk(err)),
        }
    }

    /// Every key under `prefix`, in S3's (lexical) order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        Ok(self
            .list_sized(prefix)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// Every key under `prefix` with its size in bytes, in S3's order.
    pub async fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(S3Error::from_sdk)?;
            keys.extend(page.contents().iter().filter_map(|o| {
                let size = o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                o.key().map(|key| (key.to_owned(), size))
            }));
        }
        Ok(keys)
    }

    /// The "folders" right under `prefix` (keys up to the next `/`), every
    /// page of them.
    pub async fn folders(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut folders = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(S3Error::from_sdk)?;
            folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        }
        Ok(folders)
    }

    /// Every version and delete marker of every key under `prefix` (an
    /// unversioned bucket has one version per key, whose id is `null`).
    pub async fn versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, S3Error> {
        let mut versions = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.name)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(S3Error::from_sdk)?;
            let entries = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            for (key, version_id) in entries {
                if let Some(key) = key {
                    versions.push(ObjectVersion {
                        key: key.to_owned(),
                        version_id: version_id.unwrap_or("null").to_owned(),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(versions);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                return Ok(versions);
            }
        }
    }

    /// Deletes `versions` for good (DeleteObjects, 1,000 at a time: a
    /// version deleted by id is gone, where a plain delete on a versioned
    /// bucket only adds a delete marker). Returns those S3 refused, with
    /// its code and message; a version under an Object Lock retention
    /// is refused with `AccessDenied`.
    pub async fn delete_versions(
        &self,
        versions: &[ObjectVersion],
    ) -> Result<Vec<(ObjectVersion, String)>, S3Error> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let mut refused = Vec::new();
        for batch in versions.chunks(1000) {
            let objects = batch
                .iter()
                .map(|v| {
                    ObjectIdentifier::builder()
                        .key(&v.key)
                        .version_id(&v.version_id)
                        .build()
                        .map_err(S3Error::body)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(S3Error::body)?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.name)
                .delete(delete)
                .send()
                .await
                .map_err(S3Error::from_sdk)?;
            for error in output.errors() {
                let version = ObjectVersion {
                    key: error.key().unwrap_or_default().to_owned(),
                    version_id: error.version_id().unwrap_or("null").to_owned(),
                };
                let said = format!(
                    "{}: {}",
                    error.code().unwrap_or("error"),
                    error.message().unwrap_or("no message")
                );
                refused.push((version, said));
            }
        }
        Ok(refused)
    }

    /// Whether the bucket has S3 Object Lock enabled.
    pub async fn object_lock_enabled(&self) -> Result<bool, S3Error> {
        match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.name)
            .send()
            .await
        {
            Ok(output) => Ok(output
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| e.as_str() == "Enabled")),
            Err(err)
                if err.as_service_error().and_then(ProvideErrorMetadata::code)
                    == Some("ObjectLockConfigurationNotFoundError") =>
            {
                Ok(false)
            }
            Err(err) => Err(S3Error::from_sdk(err)),
        }
    }

    /// Until when `key` (version `version_id`, or the current one) is
    /// locked by an Object Lock retention; `None` if it carries none.
    pub async fn retained_until(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<time::OffsetDateTime>, S3Error> {
        match self
            .client
            .get_object_retention()
            .bucket(&self.name)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
        {
            Ok(output) => Ok(output
                .retention()
                .and_then(|r| r.retain_until_date())
                .and_then(|d| time::OffsetDateTime::from_unix_timestamp(d.secs()).ok())),
            Err(err)
                if err.as_service_error().and_then(ProvideErrorMetadata::code)
                    == Some("NoSuchObjectLockConfiguration") =>
            {
                Ok(None)
            }
            Err(err) => Err(S3Error::from_sdk(err)),
        }
    }

    /// A URL that lets its holder GET `key` for `valid_for`.
    pub async fn presigned_get(&self, key: &str, valid_for: Duration) -> Result<String, S3Error> {
        let presigning = PresigningConfig::expires_in(valid_for).map_err(S3Error::body)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(S3Error::from_sdk)?;
        Ok(request.uri().to_owned())
    }

    /// Every incomplete multipart upload under `prefix`: (key, upload id).
    pub async fn open_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, S3Error> {
        let mut uploads = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut upload_id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.name)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
                .map_err(S3Error::from_sdk)?;
            uploads.extend(page.uploads().iter().filter_map(|upload| {
                Some((upload.key()?.to_owned(), upload.upload_id()?.to_owned()))
            }));
            if page.is_truncated() != Some(true) {
                return Ok(uploads);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && upload_id_marker.is_none() {
                return Ok(uploads);
            }
        }
    }

    /// Aborts every incomplete multipart upload under `prefix` and returns
    /// the keys it aborted. Call only when nobody can be writing there.
    pub async fn abort_incomplete_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<String>, (Option<String>, S3Error)> {
        let uploads = self.open_uploads(prefix).await.map_err(|err| (None, err))?;
        let mut aborted = Vec::new();
        for (key, upload_id) in uploads {
            self.abort_upload(&key, &upload_id)
                .await
                .map_err(|err| (Some(key.clone()), err))?;
            aborted.push(key);
        }
        Ok(aborted)
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(S3Error::from_sdk)?;
        Ok(())
    }
}

/// A multipart upload failed; the object does not exist.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot start the multipart upload of {location}: {source}")]
    Create { location: String, source: S3Error },
    #[error("uploading part {part_number} of {location} failed: {source}")]
    Part {
        location: String,
        part_number: i32,
        source: S3Error,
    },
    #[error(
        "the upload of {location} needs more than {MAX_PARTS} parts; raise upload.part_size_mib"
    )]
    TooManyParts { location: String },
    #[error("the upload of {location} received no data")]
    Empty { location: String },
    #[error("a part upload task of {location} died: {reason}")]
    Task { location: String, reason: String },
    #[error("completing the multipart upload of {location} failed: {source}")]
    Complete { location: String, source: S3Error },
    #[error("aborting the multipart upload of {location} failed: {source}")]
    Abort { location: String, source: S3Error },
}

/// One multipart upload in progress. Cloning is cheap, so each part task
/// carries its own handle.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    bucket: Bucket,
    key: String,
    upload_id: String,
}

impl MultipartUpload {
    /// Starts a multipart upload of an encrypted object at `key` with
    /// CRC32 part checksums, which S3 verifies on every part, locked by
    /// `lock`.
    pub async fn create(
        bucket: &Bucket,
        key: &str,
        lock: Option<&ObjectLock>,
    ) -> Result<MultipartUpload, UploadError> {
        let create_error = |source: S3Error| UploadError::Create {
            location: bucket.location(key),
            source,
        };
        let output = bucket
            .client
            .create_multipart_upload()
            .bucket(&bucket.name)
            .key(key)
            .content_type(PGP_ENCRYPTED)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_object_lock_mode(lock.map(|l| l.mode.clone()))
            .set_object_lock_retain_until_date(lock.map(|l| l.retain_until))
            .send()
            .await
            .map_err(|err| create_error(S3Error::from_sdk(err)))?;
        let upload_id = output
            .upload_id()
            .ok_or_else(|| create_error(S3Error::answer("S3 returned no upload id")))?;
        Ok(MultipartUpload {
            bucket: bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn location(&self) -> String {
        self.bucket.location(&self.key)
    }

    /// Uploads one part (numbered from 1).
    pub async fn upload_part(
        &self,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, UploadError> {
        let part_error = |source: S3Error| UploadError::Part {
            location: self.location(),
            part_number,
            source,
        };
        let output = self
            .bucket
            .client
            .upload_part()
            .bucket(&self.bucket.name)
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
            .map_err(|err| part_error(S3Error::from_sdk(err)))?;
        let e_tag = output
            .e_tag()
            .ok_or_else(|| part_error(S3Error::answer("S3 returned no ETag")))?;
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
                                location: self.location(),
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
            location: self.location(),
            reason: err.to_string(),
        })?
    }

    /// Completes the upload. `parts` must be every part, in order, numbered
    /// 1..=n without gaps; anything else is refused before asking S3.
    pub async fn complete(&self, parts: Vec<CompletedPart>) -> Result<(), UploadError> {
        let complete_error = |source: S3Error| UploadError::Complete {
            location: self.location(),
            source,
        };
        if parts.is_empty() {
            return Err(UploadError::Empty {
                location: self.location(),
            });
        }
        if let Some((index, part)) = parts
            .iter()
            .enumerate()
            .find(|(index, part)| part.part_number() != Some(*index as i32 + 1))
        {
            return Err(complete_error(S3Error::answer(&format!(
                "part {} is missing (found {:?} in its place)",
                index + 1,
                part.part_number()
            ))));
        }
        self.bucket
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket.name)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|err| complete_error(S3Error::from_sdk(err)))?;
        Ok(())
    }

    /// Aborts the upload, discarding every part S3 holds for it.
    pub async fn abort(&self) -> Result<(), UploadError> {
        self.bucket
            .abort_upload(&self.key, &self.upload_id)
            .await
            .map_err(|source| UploadError::Abort {
                location: self.location(),
                source,
            })
    }
}
