//! Directory dumps (`pg_dump -Fd`, `mydumper`): every file the tool writes
//! becomes its own encrypted object, uploaded while the dump still runs.
//!
//! Large databases are what these modes exist for, and there the time to
//! beat is the dump and the upload added together. So the directory is
//! watched with inotify: a file is ready the moment the tool closes it
//! after writing (`IN_CLOSE_WRITE`), and from then on it is compressed,
//! encrypted and uploaded by one of a bounded set of concurrent tasks, and
//! its plaintext deleted, while the tool goes on writing other files. The
//! files a tool writes last or reopens (mydumper's `metadata`, written as
//! `metadata.partial` and renamed; pg_dump's `toc.dat`, reopened to be
//! completed) wait for a final sweep of the directory after the tool has
//! exited successfully, which also catches anything an event missed.
//!
//! A file closed a second time after it was taken would mean the tool
//! rewrote it: that fails the backup rather than store a torn copy. A file
//! the tool deletes after closing it (mydumper drops the data file of an
//! empty table) is passed over when it is gone before it could be opened.
//!
//! On any failure every multipart upload still open is aborted before the
//! error is returned. Objects already stored stay, without a manifest (the
//! agent's role cannot delete under the backup prefix, by design: see
//! `policies/bucket.json`), so the backup is incomplete by definition.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::dump::DumpCommand;
use super::encrypt::{CiphertextSummary, CountingReader, PartWriter};
use super::facts::Tap;
use super::part_size::PartSizer;
use super::progress::TransferCounters;
use super::{crashed, AgentError};
use crate::facts::{CopyDigest, CopyRows, FactsError};
use crate::openpgp::Encryptor;
use crate::pg_archive::{directory_toc, Toc};
use crate::s3::{self, Bucket, MultipartUpload, ObjectLock, Put, S3Error};
use crate::schema::{DumpFacts, ManifestObject, Retention, UploadSettings};

/// Parts of one file's multipart upload in flight at once; several files
/// upload side by side, so each needs only a little parallelism of its own.
const PARTS_IN_FLIGHT_PER_FILE: usize = 2;

/// A directory dump went wrong outside the tool, the encryption and S3.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot watch the dump directory {dir}: {source}")]
    Watch { dir: PathBuf, source: io::Error },
    #[error("cannot read the dump file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot delete the uploaded dump file {path}: {source}")]
    Delete { path: PathBuf, source: io::Error },
    #[error("the dump tool wrote {path} again after it had been closed and taken for upload")]
    Rewritten { path: String },
    #[error("the kernel dropped file events (inotify queue overflow); the set of finished files is unknown")]
    EventsLost,
    #[error("cannot store s3://{bucket}/{key}: {source}")]
    Put {
        bucket: String,
        key: String,
        source: S3Error,
    },
}

/// How the tool names its files, which says which database and table
/// each holds and which files are only complete once the tool has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLayout {
    /// `db-schema-create.sql`, `db.table-schema.sql`, `db.table.00001.sql`,
    /// `metadata` (written last, via `metadata.partial`).
    Mydumper,
    /// `<dump id>.dat` per table, `toc.dat` written and reopened last;
    /// all of `database`. Each table's file is digested on its way up for
    /// the facts, taken with the dump session's `copy_settings` (see
    /// [`super::dump::ServerFacts::copy_settings`]).
    PostgresDirectory {
        database: String,
        copy_settings: BTreeMap<String, String>,
    },
}

impl FileLayout {
    /// Whether a closed file must wait for the tool to exit.
    fn written_last(&self, name: &str) -> bool {
        match self {
            FileLayout::Mydumper => name.starts_with("metadata"),
            FileLayout::PostgresDirectory { .. } => name == "toc.dat",
        }
    }

    /// The database and table a file belongs to, as far as its name says.
    /// (pg_dump's file names say nothing; its tables are named once the
    /// dump is over, from the table of contents.)
    pub fn labels(&self, relative: &str) -> (Option<String>, Option<String>) {
        match self {
            FileLayout::Mydumper => mydumper_labels(relative),
            FileLayout::PostgresDirectory { database, .. } => (Some(database.clone()), None),
        }
    }

    /// Whether a file holds a table's COPY text (`<dump id>.dat`), whose
    /// rows the facts digest.
    fn holds_table_data(&self, relative: &str) -> bool {
        match self {
            FileLayout::Mydumper => false,
            FileLayout::PostgresDirectory { .. } => relative
                .strip_suffix(".dat")
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
        }
    }
}

fn mydumper_labels(relative: &str) -> (Option<String>, Option<String>) {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    let stem = name
        .strip_suffix(".sql.gz")
        .or_else(|| name.strip_suffix(".sql"));
    let Some(stem) = stem else {
        return (None, None);
    };
    if let Some(database) = stem.strip_suffix("-schema-create") {
        return (Some(database.to_owned()), None);
    }
    let Some((database, rest)) = stem.split_once('.') else {
        return (None, None);
    };
    let mut table = rest;
    for suffix in [
        "-schema-triggers",
        "-schema-view",
        "-schema-post",
        "-schema",
    ] {
        if let Some(stripped) = table.strip_suffix(suffix) {
            table = stripped;
            break;
        }
    }
    if let Some((base, chunk)) = table.rsplit_once('.') {
        if !chunk.is_empty() && chunk.chars().all(|c| c.is_ascii_digit()) {
            table = base;
        }
    }
    (Some(database.to_owned()), Some(table.to_owned()))
}

/// Everything an upload task needs, shared by all of them.
pub struct ObjectSink {
    pub bucket: Bucket,
    /// Key prefix of the objects, ending in `/`.
    pub key_prefix: String,
    pub encryptor: Encryptor,
    pub upload: UploadSettings,
    /// zstd level; 0 stores the files uncompressed (before encryption).
    pub compression_level: i32,
    pub counters: TransferCounters,
    /// Object Lock retention of every object, and its latest end.
    pub retention: Option<Retention>,
    pub retention_not_after: Option<time::OffsetDateTime>,
    /// The digest of each table data file stored, by its path.
    pub copy_digests: Arc<Mutex<BTreeMap<String, CopyDigest>>>,
}

/// What a directory dump produced.
pub struct DirectoryDump {
    pub objects: Vec<ManifestObject>,
    pub dump_started_at: OffsetDateTime,
    pub dump_finished_at: OffsetDateTime,
    /// The table facts read from the dump itself (pg_dump).
    pub facts: Option<DumpFacts>,
}

/// Multipart uploads in progress, so a failure can abort every one.
#[derive(Default, Clone)]
struct OpenUploads(Arc<Mutex<HashMap<String, MultipartUpload>>>);

impl OpenUploads {
    fn insert(&self, upload: &MultipartUpload) {
        self.lock().insert(upload.key().to_owned(), upload.clone());
    }

    fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MultipartUpload>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn abort_all(&self) {
        let open: Vec<MultipartUpload> = self.lock().drain().map(|(_, upload)| upload).collect();
        for upload in open {
            super::abort_upload(&upload).await;
        }
    }
}

/// Runs `dump` into `dir` (which must exist and be empty) and stores every
/// file it writes, at most `upload.concurrency` files at a time;
/// `dump_finished` fires when the tool has exited successfully.
pub async fn dump_and_upload(
    dump: DumpCommand,
    dir: PathBuf,
    layout: FileLayout,
    sink: Arc<ObjectSink>,
    dump_finished: oneshot::Sender<()>,
) -> Result<DirectoryDump, AgentError> {
    let open_uploads = OpenUploads::default();
    let mut uploads = JoinSet::new();
    let result = run(
        dump,
        &dir,
        &layout,
        &sink,
        &open_uploads,
        &mut uploads,
        dump_finished,
    )
    .await;
    if result.is_err() {
        // cancel the tasks first, so none opens an upload after the aborts
        uploads.shutdown().await;
        open_uploads.abort_all().await;
    }
    result
}

/// Each task yields the object stored, or `None` for a file the tool
/// deleted before it could be read.
type UploadTasks = JoinSet<Result<Option<ManifestObject>, AgentError>>;

async fn run(
    dump: DumpCommand,
    dir: &Path,
    layout: &FileLayout,
    sink: &Arc<ObjectSink>,
    open_uploads: &OpenUploads,
    uploads: &mut UploadTasks,
    dump_finished: oneshot::Sender<()>,
) -> Result<DirectoryDump, AgentError> {
    let watch_error = |source| DirectoryError::Watch {
        dir: dir.to_owned(),
        source,
    };
    let inotify = Inotify::init().map_err(watch_error)?;
    inotify
        .watches()
        .add(dir, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO)
        .map_err(watch_error)?;
    let mut events = inotify
        .into_event_stream([0u8; 16 * 1024])
        .map_err(watch_error)?;

    let concurrency = sink.upload.concurrency.max(1);
    let mut taken: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut objects = Vec::new();

    let dump_started_at = OffsetDateTime::now_utc();
    let mut process = dump.spawn()?;
    let program = process.program();
    tracing::info!("{program} started, writing to {}", dir.display());
    loop {
        while uploads.len() < concurrency {
            let Some(relative) = queue.pop_front() else {
                break;
            };
            spawn_upload(uploads, sink, dir, relative, layout.clone(), open_uploads);
        }
        tokio::select! {
            exited = process.wait_success() => {
                exited?;
                break;
            }
            event = events.next() => {
                let event = match event {
                    Some(Ok(event)) => event,
                    Some(Err(source)) => return Err(watch_error(source).into()),
                    None => return Err(watch_error(io::Error::other("the event stream ended")).into()),
                };
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    return Err(DirectoryError::EventsLost.into());
                }
                let Some(name) = event.name.and_then(|n| n.to_str().map(str::to_owned)) else {
                    continue;
                };
                if event.mask.contains(EventMask::ISDIR)
                    || !event.mask.contains(EventMask::CLOSE_WRITE)
                    || layout.written_last(&name)
                {
                    continue; // renamed or written last: the final sweep takes it
                }
                if !taken.insert(name.clone()) {
                    return Err(DirectoryError::Rewritten { path: name }.into());
                }
                queue.push_back(name);
            }
            Some(finished) = uploads.join_next(), if !uploads.is_empty() => {
                objects.extend(finished.map_err(|err| crashed("file upload", err))??);
            }
        }
    }
    let dump_finished_at = OffsetDateTime::now_utc();
    let _ = dump_finished.send(());
    tracing::info!("{program} finished; uploading the files it left");
    drop(events);
    // read toc.dat before the sweep uploads (and deletes) it
    let toc = match layout {
        FileLayout::PostgresDirectory { .. } => Some(read_toc(dir)?),
        FileLayout::Mydumper => None,
    };

    for relative in list_files(dir)? {
        if taken.insert(relative.clone()) {
            queue.push_back(relative);
        }
    }
    while !queue.is_empty() || !uploads.is_empty() {
        while uploads.len() < concurrency {
            let Some(relative) = queue.pop_front() else {
                break;
            };
            spawn_upload(uploads, sink, dir, relative, layout.clone(), open_uploads);
        }
        if let Some(finished) = uploads.join_next().await {
            objects.extend(finished.map_err(|err| crashed("file upload", err))??);
        }
    }
    let mut facts = None;
    if let (Some(toc), FileLayout::PostgresDirectory { copy_settings, .. }) = (&toc, layout) {
        let table_files: BTreeMap<&str, String> = toc
            .table_data()
            .filter_map(|entry| Some((entry.filename.as_deref()?, entry.qualified_name())))
            .collect();
        for object in &mut objects {
            if let Some(table) = object.path.as_deref().and_then(|p| table_files.get(p)) {
                object.table = Some(table.clone());
            }
        }
        let digests = sink
            .copy_digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        facts = Some(super::facts::directory_facts(toc, &digests, copy_settings)?);
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(DirectoryDump {
        objects,
        dump_started_at,
        dump_finished_at,
        facts,
    })
}

fn spawn_upload(
    uploads: &mut UploadTasks,
    sink: &Arc<ObjectSink>,
    dir: &Path,
    relative: String,
    layout: FileLayout,
    open_uploads: &OpenUploads,
) {
    let sink = sink.clone();
    let path = dir.join(&relative);
    let open_uploads = open_uploads.clone();
    uploads.spawn(async move { upload_file(&sink, &path, relative, layout, &open_uploads).await });
}

/// Every regular file under `dir`, as paths relative to it.
fn list_files(dir: &Path) -> Result<Vec<String>, DirectoryError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let absolute = dir.join(&relative_dir);
        let read_error = |source| DirectoryError::Read {
            path: absolute.clone(),
            source,
        };
        for entry in std::fs::read_dir(&absolute).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let relative = relative_dir.join(entry.file_name());
            if entry.file_type().map_err(read_error)?.is_dir() {
                pending.push(relative);
            } else {
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Compresses, encrypts and stores one file, then deletes its plaintext.
/// A file that fits in one part is stored with one PutObject; a bigger
/// one goes up as a multipart upload.
async fn upload_file(
    sink: &ObjectSink,
    path: &Path,
    relative: String,
    layout: FileLayout,
    open_uploads: &OpenUploads,
) -> Result<Option<ManifestObject>, AgentError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            tracing::debug!("{relative} was deleted by the dump tool; nothing to store");
            return Ok(None);
        }
        Err(source) => {
            return Err(DirectoryError::Read {
                path: path.to_owned(),
                source,
            }
            .into())
        }
    };
    let (database, table) = layout.labels(&relative);
    let label = match (&database, &table) {
        (Some(database), Some(table)) => format!("{database}.{table}"),
        _ => relative.clone(),
    };
    sink.counters.set_activity(&format!("uploading {label}"));
    let upload_started_at = OffsetDateTime::now_utc();
    let compressed = sink.compression_level > 0;
    let key = format!(
        "{}{relative}{}",
        sink.key_prefix,
        if compressed { ".zst.gpg" } else { ".gpg" }
    );
    let file_bytes = Arc::new(AtomicU64::new(0));
    let digest_as = layout.holds_table_data(&relative).then(|| relative.clone());
    let (parts, encryption) = encrypt_file(sink, file, file_bytes.clone(), digest_as);
    let ciphertext = store_parts(sink, &key, parts, encryption, open_uploads, &relative).await?;
    delete_plaintext(path)?;
    sink.counters.objects_done.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("stored {}", sink.bucket.location(&key));
    Ok(Some(ManifestObject {
        key,
        size: ciphertext.bytes,
        sha256: ciphertext.sha256,
        plaintext_bytes: file_bytes.load(Ordering::Relaxed),
        path: Some(relative),
        database,
        table,
        compression: compressed.then(|| "zstd".to_owned()),
        upload_started_at: Some(upload_started_at),
        upload_finished_at: Some(OffsetDateTime::now_utc()),
    }))
}

/// Compresses and encrypts `file` on a blocking thread into parts sized
/// for its upload, counting its plaintext bytes into `file_bytes` (and the
/// job's total) and, with `digest_as`, digesting its COPY rows into the
/// sink's digests under that name. The parts arrive on the receiver; the
/// task's result says whether the whole file was encrypted.
fn encrypt_file(
    sink: &ObjectSink,
    file: File,
    file_bytes: Arc<AtomicU64>,
    digest_as: Option<String>,
) -> (
    mpsc::Receiver<Bytes>,
    tokio::task::JoinHandle<Result<CiphertextSummary, AgentError>>,
) {
    // the file is complete, so its size is known: compression only shrinks it
    let file_size = file.metadata().ok().map(|metadata| metadata.len());
    let sizer = PartSizer::new(sink.upload.part_size_bytes, file_size);
    let (part_sender, parts) = mpsc::channel(1);
    let encryptor = sink.encryptor.clone();
    let level = sink.compression_level;
    let total_bytes = sink.counters.plaintext_bytes.clone();
    let digests = sink.copy_digests.clone();
    let encryption = tokio::task::spawn_blocking(move || {
        let mut rows = digest_as.is_some().then(CopyRows::default);
        let counted = CountingReader::new(CountingReader::new(file, file_bytes), total_bytes);
        let plaintext = Tap::new(counted, |bytes| {
            if let Some(rows) = rows.as_mut() {
                rows.feed(bytes);
            }
        });
        let mut writer = PartWriter::new(sizer, part_sender);
        encryptor.encrypt_maybe_compressed(plaintext, level, 0, &mut writer)?;
        let summary = writer.finish().map_err(AgentError::CiphertextSink)?;
        if let (Some(rows), Some(name)) = (rows, digest_as) {
            let digest = rows.finish()?;
            digests
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(name, digest);
        }
        Ok(summary)
    });
    (parts, encryption)
}

/// Stores the ciphertext arriving on `parts` at `key`: one part with one
/// PutObject, more as a multipart upload (tracked in `open_uploads` until
/// completed). Stores nothing unless `encryption` succeeds.
async fn store_parts(
    sink: &ObjectSink,
    key: &str,
    mut parts: mpsc::Receiver<Bytes>,
    encryption: tokio::task::JoinHandle<Result<CiphertextSummary, AgentError>>,
    open_uploads: &OpenUploads,
    relative: &str,
) -> Result<CiphertextSummary, AgentError> {
    let first = parts.recv().await;
    let second = match first {
        Some(_) => parts.recv().await,
        None => None,
    };
    match (first, second) {
        (Some(only), None) => {
            let ciphertext = encryption
                .await
                .map_err(|err| crashed("encryption stage", err))??;
            let size = only.len() as u64;
            put_object(sink, key, only).await?;
            sink.counters
                .uploaded_bytes
                .fetch_add(size, Ordering::Relaxed);
            Ok(ciphertext)
        }
        (Some(first), Some(second)) => {
            let lock = ObjectLock::new(sink.retention, sink.retention_not_after);
            let upload = MultipartUpload::create(&sink.bucket, key, lock.as_ref()).await?;
            open_uploads.insert(&upload);
            let (forward, forwarded) = mpsc::channel(1);
            let forwarding = async move {
                for part in [first, second] {
                    if forward.send(part).await.is_err() {
                        return;
                    }
                }
                while let Some(part) = parts.recv().await {
                    if forward.send(part).await.is_err() {
                        return;
                    }
                }
            };
            let uploading = upload.upload_parts(
                forwarded,
                PARTS_IN_FLIGHT_PER_FILE,
                sink.counters.uploaded_bytes.clone(),
            );
            let ((), uploaded) = tokio::join!(forwarding, uploading);
            let encrypted = encryption
                .await
                .map_err(|err| crashed("encryption stage", err));
            let ciphertext = match (encrypted, uploaded) {
                (Ok(Ok(ciphertext)), Ok(completed)) => {
                    upload.complete(completed).await?;
                    ciphertext
                }
                (Err(err) | Ok(Err(err)), _) => return Err(err),
                (_, Err(err)) => return Err(err.into()),
            };
            open_uploads.remove(upload.key());
            Ok(ciphertext)
        }
        (None, _) => {
            // the encryption ended without a byte: its error says why
            encryption
                .await
                .map_err(|err| crashed("encryption stage", err))??;
            Err(AgentError::Crashed {
                stage: "encryption stage",
                reason: format!("no ciphertext for {relative}"),
            })
        }
    }
}

/// Deletes a stored file's plaintext; the tool may have deleted it itself
/// (see the module comment).
fn delete_plaintext(path: &Path) -> Result<(), AgentError> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(DirectoryError::Delete {
            path: path.to_owned(),
            source: err,
        }
        .into()),
        _ => Ok(()),
    }
}

async fn put_object(sink: &ObjectSink, key: &str, body: Bytes) -> Result<(), DirectoryError> {
    let options = Put {
        content_type: Some(s3::PGP_ENCRYPTED),
        lock: ObjectLock::new(sink.retention, sink.retention_not_after),
        checksum_crc32: true,
        ..Put::default()
    };
    sink.bucket
        .put(key, body, options)
        .await
        .map_err(|source| DirectoryError::Put {
            bucket: sink.bucket.name().to_owned(),
            key: key.to_owned(),
            source,
        })?;
    Ok(())
}

/// Reads pg_dump's `toc.dat` from `dir` (after the dump, before the file
/// is uploaded): it names each data file's table, and the facts need it.
fn read_toc(dir: &Path) -> Result<Toc, AgentError> {
    let path = dir.join("toc.dat");
    let bytes = std::fs::read(&path).map_err(|source| DirectoryError::Read { path, source })?;
    Ok(directory_toc(&bytes).map_err(FactsError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mydumper_file_names_say_database_and_table() {
        let cases = [
            ("shop-schema-create.sql", Some("shop"), None),
            ("shop.orders-schema.sql", Some("shop"), Some("orders")),
            ("shop.orders.sql", Some("shop"), Some("orders")),
            ("shop.orders.00003.sql", Some("shop"), Some("orders")),
            (
                "shop.orders-schema-triggers.sql",
                Some("shop"),
                Some("orders"),
            ),
            (
                "shop.big_view-schema-view.sql",
                Some("shop"),
                Some("big_view"),
            ),
            ("metadata", None, None),
        ];
        for (name, database, table) in cases {
            let (d, t) = FileLayout::Mydumper.labels(name);
            assert_eq!((d.as_deref(), t.as_deref()), (database, table), "{name}");
        }
    }

    #[test]
    fn files_written_last_wait_for_the_sweep() {
        assert!(FileLayout::Mydumper.written_last("metadata"));
        assert!(FileLayout::Mydumper.written_last("metadata.partial"));
        assert!(!FileLayout::Mydumper.written_last("shop.orders.sql"));
        let postgres = FileLayout::PostgresDirectory {
            database: "orders".into(),
            copy_settings: BTreeMap::new(),
        };
        assert!(postgres.written_last("toc.dat"));
        assert!(!postgres.written_last("3345.dat"));
        assert!(postgres.holds_table_data("3345.dat"));
        assert!(!postgres.holds_table_data("toc.dat"));
        assert!(!postgres.holds_table_data("blob_16400.dat"));
        assert!(!FileLayout::Mydumper.holds_table_data("3345.dat"));
    }

    #[test]
    fn the_sweep_lists_files_relative_to_the_dump_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("toc.dat"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/1.dat"), b"y").unwrap();
        assert_eq!(list_files(dir.path()).unwrap(), ["sub/1.dat", "toc.dat"]);
    }
}
