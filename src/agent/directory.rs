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
//! Files below [`PACK_FILES_BELOW`] are not objects of their own: they
//! are gathered into packs, each a tar archive of many files encrypted as
//! one object (see [`crate::schema::ManifestObject::packed`]). An object
//! costs a gpg run and a PUT, and in S3's infrequent-access and Glacier
//! classes a minimum billed size (128 KiB; 40 KiB of overhead in the
//! archive classes); for the thousands of few-KiB files of a schema with
//! many small tables those costs, not the bytes, would be the backup.
//!
//! On any failure every multipart upload still open is aborted before the
//! error is returned. Objects already stored stay, without a manifest (the
//! agent's role cannot delete under the backup prefix, by design: see
//! `policies/bucket.json`), so the backup is incomplete by definition.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
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
use crate::layout;
use crate::openpgp::Encryptor;
use crate::pg_archive::{directory_toc, Toc};
use crate::s3::{self, Bucket, MultipartUpload, ObjectLock, Put, S3Error};
use crate::schema::{DumpFacts, ManifestObject, PackedFile, Retention, UploadSettings};

/// Parts of one file's multipart upload in flight at once; several files
/// upload side by side, so each needs only a little parallelism of its own.
const PARTS_IN_FLIGHT_PER_FILE: usize = 2;

/// Files smaller than this many bytes go into packs. Above it an object's
/// own costs (a gpg run of ~8 ms of CPU, a PUT) are small beside its bytes.
pub const PACK_FILES_BELOW: u64 = 1 << 20;

/// A pack is stored once its files add up to this many bytes (the last
/// one when the dump is over, whatever it holds).
const PACK_BYTES: u64 = 32 << 20;

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
    #[error("cannot pack the dump file {path}: {source}")]
    Pack { path: String, source: io::Error },
    #[error("the dump file {path} shrank while it was packed ({expected} bytes when opened, {read} read)")]
    PackedSizeChanged {
        path: String,
        expected: u64,
        read: u64,
    },
    #[error("the dump file {path} grew past its {expected} bytes while it was packed")]
    PackedFileGrew { path: String, expected: u64 },
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
    /// Key prefix of the packs, ending in `/`.
    pub pack_prefix: String,
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

/// What one upload task stores.
#[derive(Debug, PartialEq, Eq)]
enum Upload {
    /// A file as an object of its own.
    File(String),
    /// Small files together, as pack `number` (from 1).
    Pack { number: u32, files: Vec<String> },
}

/// Small files waiting for their pack.
#[derive(Default)]
struct Packer {
    files: Vec<String>,
    bytes: u64,
    packs: u32,
}

impl Packer {
    /// Decides how the finished file `relative` in `dir` is stored: alone,
    /// or in a pack, which is returned once full. `None` also for a file
    /// the tool has deleted again.
    fn take(&mut self, dir: &Path, relative: String) -> Result<Option<Upload>, DirectoryError> {
        let bytes = match std::fs::metadata(dir.join(&relative)) {
            Ok(metadata) => metadata.len(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::debug!("{relative} was deleted by the dump tool; nothing to store");
                return Ok(None);
            }
            Err(source) => {
                return Err(DirectoryError::Read {
                    path: dir.join(relative),
                    source,
                })
            }
        };
        if bytes >= PACK_FILES_BELOW {
            return Ok(Some(Upload::File(relative)));
        }
        self.files.push(relative);
        self.bytes += bytes;
        Ok((self.bytes >= PACK_BYTES).then(|| self.seal()))
    }

    /// The files waiting, as a pack, if there are any.
    fn rest(&mut self) -> Option<Upload> {
        (!self.files.is_empty()).then(|| self.seal())
    }

    fn seal(&mut self) -> Upload {
        self.packs += 1;
        self.bytes = 0;
        Upload::Pack {
            number: self.packs,
            files: std::mem::take(&mut self.files),
        }
    }
}

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
    let mut packer = Packer::default();
    let mut queue: VecDeque<Upload> = VecDeque::new();
    let mut objects = Vec::new();

    let dump_started_at = OffsetDateTime::now_utc();
    let mut process = dump.spawn()?;
    let program = process.program();
    tracing::info!("{program} started, writing to {}", dir.display());
    loop {
        while uploads.len() < concurrency {
            let Some(upload) = queue.pop_front() else {
                break;
            };
            spawn_upload(uploads, sink, dir, upload, layout.clone(), open_uploads);
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
                queue.extend(packer.take(dir, name)?);
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
            queue.extend(packer.take(dir, relative)?);
        }
    }
    queue.extend(packer.rest());
    while !queue.is_empty() || !uploads.is_empty() {
        while uploads.len() < concurrency {
            let Some(upload) = queue.pop_front() else {
                break;
            };
            spawn_upload(uploads, sink, dir, upload, layout.clone(), open_uploads);
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
            for file in object.packed.iter_mut().flatten() {
                file.table = table_files.get(file.path.as_str()).cloned();
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
    upload: Upload,
    layout: FileLayout,
    open_uploads: &OpenUploads,
) {
    let sink = sink.clone();
    let dir = dir.to_owned();
    let open_uploads = open_uploads.clone();
    uploads.spawn(async move {
        match upload {
            Upload::File(relative) => {
                let path = dir.join(&relative);
                upload_file(&sink, &path, relative, layout, &open_uploads).await
            }
            Upload::Pack { number, files } => {
                upload_pack(&sink, dir, number, files, layout, &open_uploads).await
            }
        }
    });
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
        "{}{}",
        sink.key_prefix,
        layout::encrypted_name(&relative, compressed)
    );
    let file_bytes = Arc::new(AtomicU64::new(0));
    let digest_as = layout.holds_table_data(&relative).then(|| relative.clone());
    // the file is complete, so its size is known: compression only shrinks it
    let file_size = file.metadata().ok().map(|metadata| metadata.len());
    let total_bytes = sink.counters.plaintext_bytes.clone();
    let digests = sink.copy_digests.clone();
    let counted_bytes = file_bytes.clone();
    let (parts, encryption) = encrypt_with(sink, file_size, move |encryptor, level, writer| {
        let counted = CountingReader::new(CountingReader::new(file, counted_bytes), total_bytes);
        digest_plaintext(counted, digest_as, &digests, |plaintext| {
            Ok(encryptor.encrypt_maybe_compressed(plaintext, level, 0, writer)?)
        })
    });
    let (ciphertext, ()) =
        store_parts(sink, &key, parts, encryption, open_uploads, &relative).await?;
    delete_plaintext(path)?;
    sink.counters.objects_done.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("stored {}", sink.bucket.location(&key));
    Ok(Some(ManifestObject {
        key,
        size: ciphertext.bytes,
        sha256: ciphertext.sha256,
        plaintext_bytes: file_bytes.load(Ordering::Relaxed),
        path: Some(relative),
        packed: None,
        database,
        table,
        compression: compressed.then(|| "zstd".to_owned()),
        upload_started_at: Some(upload_started_at),
        upload_finished_at: Some(OffsetDateTime::now_utc()),
    }))
}

/// Packs `files` (relative to `dir`) into one tar archive, compresses,
/// encrypts and stores it as pack `number`, then deletes their plaintext.
/// A file the tool deleted before it could be read is left out.
async fn upload_pack(
    sink: &ObjectSink,
    dir: PathBuf,
    number: u32,
    files: Vec<String>,
    layout: FileLayout,
    open_uploads: &OpenUploads,
) -> Result<Option<ManifestObject>, AgentError> {
    sink.counters.set_activity(&format!(
        "uploading pack {number} ({} small files)",
        files.len()
    ));
    let upload_started_at = OffsetDateTime::now_utc();
    let compressed = sink.compression_level > 0;
    let key = format!(
        "{}{}",
        sink.pack_prefix,
        layout::encrypted_name(&format!("{number:05}.tar"), compressed)
    );
    let total_bytes = sink.counters.plaintext_bytes.clone();
    let digests = sink.copy_digests.clone();
    let packing_dir = dir.clone();
    let (parts, encryption) =
        encrypt_with(sink, Some(PACK_BYTES), move |encryptor, level, writer| {
            let (archive, pipe) = io::pipe().map_err(|source| DirectoryError::Pack {
                path: format!("pack {number}"),
                source,
            })?;
            std::thread::scope(|scope| {
                let packing = scope.spawn(|| {
                    write_pack(pipe, &packing_dir, files, &layout, total_bytes, &digests)
                });
                let encrypted = encryptor.encrypt_maybe_compressed(archive, level, 0, writer);
                let packed = packing.join().map_err(|_| AgentError::Crashed {
                    stage: "packing",
                    reason: format!("the thread writing pack {number} panicked"),
                })?;
                // a failed encryption stops the packing: its error says why
                encrypted?;
                packed
            })
        });
    let label = format!("pack {number}");
    let (ciphertext, packed) =
        store_parts(sink, &key, parts, encryption, open_uploads, &label).await?;
    for file in &packed {
        delete_plaintext(&dir.join(&file.path))?;
    }
    sink.counters.objects_done.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        "stored {} ({} files)",
        sink.bucket.location(&key),
        packed.len()
    );
    Ok(Some(ManifestObject {
        key,
        size: ciphertext.bytes,
        sha256: ciphertext.sha256,
        plaintext_bytes: packed.iter().map(|file| file.bytes).sum(),
        path: None,
        packed: Some(packed),
        database: None,
        table: None,
        compression: compressed.then(|| "zstd".to_owned()),
        upload_started_at: Some(upload_started_at),
        upload_finished_at: Some(OffsetDateTime::now_utc()),
    }))
}

/// Writes `files` (relative to `dir`) into `out` as a tar archive, each
/// entry named by its relative path, counting their bytes into `total`
/// and digesting table data files into `digests`; returns what it packed.
/// Entries carry no owner or time (a restore writes its own files), and
/// names too long for a ustar header get GNU long-name entries (GNU tar,
/// bsdtar and Python's tarfile read them).
fn write_pack<W: Write>(
    out: W,
    dir: &Path,
    files: Vec<String>,
    layout: &FileLayout,
    total: Arc<AtomicU64>,
    digests: &Mutex<BTreeMap<String, CopyDigest>>,
) -> Result<Vec<PackedFile>, AgentError> {
    let mut archive = tar::Builder::new(io::BufWriter::with_capacity(256 << 10, out));
    archive.mode(tar::HeaderMode::Deterministic);
    let mut packed = Vec::with_capacity(files.len());
    for relative in files {
        let fail = |source| DirectoryError::Pack {
            path: relative.clone(),
            source,
        };
        let file = match File::open(dir.join(&relative)) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                tracing::debug!("{relative} was deleted by the dump tool; nothing to store");
                continue;
            }
            Err(source) => return Err(fail(source).into()),
        };
        let bytes = file.metadata().map_err(fail)?.len();
        let read = Arc::new(AtomicU64::new(0));
        let counted = CountingReader::new(CountingReader::new(file, read.clone()), total.clone());
        let digest_as = layout.holds_table_data(&relative).then(|| relative.clone());
        digest_plaintext(counted, digest_as, digests, |plaintext| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            archive
                .append_data(&mut header, &relative, (&mut *plaintext).take(bytes))
                .map_err(fail)?;
            if plaintext.read(&mut [0]).map_err(fail)? > 0 {
                return Err(DirectoryError::PackedFileGrew {
                    path: relative.clone(),
                    expected: bytes,
                }
                .into());
            }
            Ok(())
        })?;
        let read = read.load(Ordering::Relaxed);
        if read != bytes {
            return Err(DirectoryError::PackedSizeChanged {
                path: relative,
                expected: bytes,
                read,
            }
            .into());
        }
        let (database, table) = layout.labels(&relative);
        packed.push(PackedFile {
            path: relative,
            bytes,
            database,
            table,
        });
    }
    let fail = |source| DirectoryError::Pack {
        path: "(the end of the archive)".to_owned(),
        source,
    };
    let mut out = archive.into_inner().map_err(fail)?;
    out.flush().map_err(fail)?;
    Ok(packed)
}

/// Runs `consume` on `plaintext`; with `digest_as`, digests the COPY rows
/// passing through into `digests` under that name once all have passed.
fn digest_plaintext<R: Read + Send>(
    plaintext: R,
    digest_as: Option<String>,
    digests: &Mutex<BTreeMap<String, CopyDigest>>,
    consume: impl FnOnce(&mut (dyn Read + Send)) -> Result<(), AgentError>,
) -> Result<(), AgentError> {
    let mut rows = digest_as.is_some().then(CopyRows::default);
    let mut tapped = Tap::new(plaintext, |bytes| {
        if let Some(rows) = rows.as_mut() {
            rows.feed(bytes);
        }
    });
    consume(&mut tapped)?;
    if let (Some(rows), Some(name)) = (rows, digest_as) {
        let digest = rows.finish()?;
        digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, digest);
    }
    Ok(())
}

/// The blocking task encrypting one object: the ciphertext's summary and
/// what its encryption returned, once the whole plaintext is encrypted.
type Encryption<T> = tokio::task::JoinHandle<Result<(CiphertextSummary, T), AgentError>>;

/// Runs `encrypt` on a blocking thread with the sink's encryptor, its
/// zstd level and a writer cutting the ciphertext into parts sized for
/// `expected_bytes` of plaintext. The parts arrive on the receiver; the
/// task yields the ciphertext's summary and what `encrypt` returned, once
/// the whole plaintext is encrypted.
fn encrypt_with<T, F>(
    sink: &ObjectSink,
    expected_bytes: Option<u64>,
    encrypt: F,
) -> (mpsc::Receiver<Bytes>, Encryption<T>)
where
    T: Send + 'static,
    F: FnOnce(&Encryptor, i32, &mut PartWriter) -> Result<T, AgentError> + Send + 'static,
{
    let sizer = PartSizer::new(sink.upload.part_size_bytes, expected_bytes);
    let (part_sender, parts) = mpsc::channel(1);
    let encryptor = sink.encryptor.clone();
    let level = sink.compression_level;
    let encryption = tokio::task::spawn_blocking(move || {
        let mut writer = PartWriter::new(sizer, part_sender);
        let result = encrypt(&encryptor, level, &mut writer)?;
        let summary = writer.finish().map_err(AgentError::CiphertextSink)?;
        Ok((summary, result))
    });
    (parts, encryption)
}

/// Stores the ciphertext arriving on `parts` at `key`: one part with one
/// PutObject, more as a multipart upload (tracked in `open_uploads` until
/// completed). Stores nothing unless `encryption` succeeds.
async fn store_parts<T>(
    sink: &ObjectSink,
    key: &str,
    mut parts: mpsc::Receiver<Bytes>,
    encryption: Encryption<T>,
    open_uploads: &OpenUploads,
    relative: &str,
) -> Result<(CiphertextSummary, T), AgentError> {
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

    #[test]
    fn small_files_fill_packs_and_big_ones_go_alone() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: u64| {
            let file = File::create(dir.path().join(name)).unwrap();
            file.set_len(bytes).unwrap();
            name.to_owned()
        };
        let mut packer = Packer::default();
        let big = write("big.dat", PACK_FILES_BELOW);
        assert_eq!(
            packer.take(dir.path(), big.clone()).unwrap(),
            Some(Upload::File(big))
        );
        assert_eq!(packer.take(dir.path(), "gone.dat".into()).unwrap(), None);
        let small = PACK_FILES_BELOW - 1;
        let per_pack = PACK_BYTES.div_ceil(small);
        let mut names = Vec::new();
        for i in 0..per_pack - 1 {
            let name = write(&format!("{i}.dat"), small);
            names.push(name.clone());
            assert_eq!(packer.take(dir.path(), name).unwrap(), None);
        }
        let last = write("last.dat", small);
        names.push(last.clone());
        assert_eq!(
            packer.take(dir.path(), last).unwrap(),
            Some(Upload::Pack {
                number: 1,
                files: names
            })
        );
        assert_eq!(packer.rest(), None);
        let empty = write("empty.dat", 0);
        assert_eq!(packer.take(dir.path(), empty).unwrap(), None);
        assert_eq!(
            packer.rest(),
            Some(Upload::Pack {
                number: 2,
                files: vec!["empty.dat".into()]
            })
        );
    }

    /// What GNU tar, which an operator restoring by hand runs, makes of a
    /// pack: every file back at its path (a name too long for a ustar
    /// header included), byte for byte; a file the tool deleted is left
    /// out; table data files are digested on the way.
    #[test]
    fn a_pack_is_a_tar_archive_the_tar_command_unpacks() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("shop.{}.00001.sql", "t".repeat(150));
        let files: Vec<(String, Vec<u8>)> = vec![
            ("3345.dat".into(), b"1\tone\n2\ttwo\n\\.\n\n".to_vec()),
            ("toc.dat".into(), vec![0, 1, 2, 255]),
            ("empty.dat".into(), Vec::new()),
            (long.clone(), b"INSERT INTO t VALUES (1);\n".repeat(100)),
        ];
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let layout = FileLayout::PostgresDirectory {
            database: "orders".into(),
            copy_settings: BTreeMap::new(),
        };
        let mut names: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
        names.insert(1, "deleted.dat".into());
        let total = Arc::new(AtomicU64::new(0));
        let digests = Mutex::new(BTreeMap::new());
        let mut archive = Vec::new();
        let packed = write_pack(
            &mut archive,
            dir.path(),
            names,
            &layout,
            total.clone(),
            &digests,
        )
        .unwrap();
        let listed: Vec<(&str, u64)> = packed.iter().map(|f| (f.path.as_str(), f.bytes)).collect();
        let expected: Vec<(&str, u64)> = files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.len() as u64))
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(
            total.load(Ordering::Relaxed),
            files.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
        );
        assert_eq!(digests.lock().unwrap()["3345.dat"].rows, 2);
        assert!(packed
            .iter()
            .all(|f| f.database.as_deref() == Some("orders")));

        let out = tempfile::tempdir().unwrap();
        let tar_file = out.path().join("pack.tar");
        std::fs::write(&tar_file, &archive).unwrap();
        let unpacked = out.path().join("files");
        std::fs::create_dir(&unpacked).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar_file)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(status.success());
        for (name, bytes) in &files {
            assert!(
                std::fs::read(unpacked.join(name)).unwrap() == *bytes,
                "{name}"
            );
        }

        // a file with more to read than its size said when it was opened
        // (a /proc file: 0 bytes by stat, text when read) fails the pack
        std::os::unix::fs::symlink("/proc/version", dir.path().join("grown.dat")).unwrap();
        let err = write_pack(
            io::sink(),
            dir.path(),
            vec!["toc.dat".into(), "grown.dat".into()],
            &layout,
            total,
            &digests,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                AgentError::Directory(DirectoryError::PackedFileGrew { ref path, expected: 0 })
                    if path == "grown.dat"
            ),
            "{err}"
        );
    }
}
