//! The streaming restore: download → decrypt (GPGME) → zstd -d (when the
//! object was compressed) → a file or the database's restore tool, with
//! bounded memory and no plaintext on disk unless asked for.
//!
//! Directory dumps (`pg_dump -Fd`, mydumper) cannot be streamed into a
//! tool: their objects are decrypted, each back at its `path` (a pack's
//! files each at theirs, unpacked from its tar archive), into a private
//! (0700) scratch directory, restored from there with `pg_restore --jobs`
//! or `myloader`, and the plaintext deleted. Scratch files are not synced
//! to disk (they are read once and deleted); files kept for the operator
//! are.
//!
//! The download runs on the async side and hands chunks to GPGME's blocking
//! thread over a bounded channel (the agent's upload pipeline, reversed):
//! when the restore tool is slow, GPGME stops reading, the channel fills
//! and the download waits. The ciphertext is hashed as it passes; an object
//! whose size or SHA-256 differs from the manifest fails the restore even if
//! gpg accepted it. Objects of a multi-object backup run in parallel.

use std::collections::HashMap;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::engine::{Shape, Target};
use super::store::{Backup, StoreError};
use super::RestoreError;
use crate::openpgp::{decrypt, Decryptor};
use crate::schema::{Manifest, ManifestObject, PackedFile};

/// Objects decrypted at once, at most (each is a download and a gpg).
fn parallel_objects() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Chunks queued between the download and GPGME.
const QUEUED_CHUNKS: usize = 8;
const CHUNK: usize = 1 << 20;

/// Where plaintext goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A file per object in `dir` (a pack's files each in theirs), written
    /// under a temporary name and renamed once complete; `durable`: synced
    /// to disk first (what the operator keeps, not scratch).
    Dir { dir: PathBuf, durable: bool },
    /// The database's restore tool.
    Database {
        target: Target,
        /// Also keep each object's plaintext here.
        keep_plaintext: Option<PathBuf>,
    },
}

/// What a restore moved.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub objects: usize,
    pub ciphertext_bytes: u64,
    pub plaintext_bytes: u64,
    pub elapsed: Duration,
}

/// How each object's decryptor is chosen.
pub type DecryptorFor = dyn Fn(&ManifestObject) -> Result<Decryptor, RestoreError> + Send + Sync;

/// Restores every object of `backup` into `sink`, in parallel, printing
/// progress on stderr. A directory dump bound for a database goes through
/// a scratch directory (or `keep_plaintext`, which is then kept).
pub async fn restore(
    backup: &Backup,
    manifest: &Manifest,
    decryptor_for: &DecryptorFor,
    sink: &Sink,
) -> Result<Restored, RestoreError> {
    let Sink::Database {
        target,
        keep_plaintext,
    } = sink
    else {
        return restore_objects(backup, manifest, decryptor_for, sink).await;
    };
    if target.check_backup(manifest)? == Shape::Stream {
        return restore_objects(backup, manifest, decryptor_for, sink).await;
    }
    let started = Instant::now();
    let (scratch, mut restored, dir) = match keep_plaintext {
        Some(dir) => {
            let sink = Sink::Dir {
                dir: dir.clone(),
                durable: true,
            };
            let restored = restore_objects(backup, manifest, decryptor_for, &sink).await?;
            (None, restored, dir.clone())
        }
        None => {
            let (scratch, restored) = decrypt_to_scratch(backup, manifest, decryptor_for).await?;
            let dir = scratch.path().to_owned();
            (Some(scratch), restored, dir)
        }
    };
    restore_directory(target, &dir, None).await?;
    drop(scratch); // deletes the plaintext
    restored.elapsed = started.elapsed();
    Ok(restored)
}

/// Decrypts every object of a directory dump into a new private scratch
/// directory, which deletes the plaintext when dropped.
pub async fn decrypt_to_scratch(
    backup: &Backup,
    manifest: &Manifest,
    decryptor_for: &DecryptorFor,
) -> Result<(tempfile::TempDir, Restored), RestoreError> {
    let scratch = private_scratch()?;
    let sink = Sink::Dir {
        dir: scratch.path().to_owned(),
        durable: false,
    };
    let restored = restore_objects(backup, manifest, decryptor_for, &sink).await?;
    Ok((scratch, restored))
}

/// Runs the target's directory restore tool on `dir` (`only`: one
/// database of a MySQL dump) on a blocking thread.
pub async fn restore_directory(
    target: &Target,
    dir: &Path,
    only: Option<&str>,
) -> Result<(), RestoreError> {
    let (tool, dir, only) = (target.clone(), dir.to_owned(), only.map(str::to_owned));
    let jobs = parallel_objects();
    eprintln!("restoring the dump directory with {jobs} worker(s)");
    tokio::task::spawn_blocking(move || tool.restore_directory(&dir, jobs, only.as_deref()))
        .await
        .map_err(RestoreError::crashed)?
}

/// A private (0700) directory for decrypted dump files, deleted on drop.
/// `TMPDIR` chooses where; it needs room for the whole plaintext dump.
fn private_scratch() -> Result<tempfile::TempDir, RestoreError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: io::Error| RestoreError::Failed(format!("cannot make a scratch directory: {e}"));
    let dir = tempfile::Builder::new()
        .prefix("backup-cloud-restore-")
        .tempdir()
        .map_err(fail)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    Ok(dir)
}

/// What an object's restore says when it stopped for another's failure.
const CANCELLED: &str = "stopped: another object failed";

/// Every object into `sink`, at most [`parallel_objects`] at once; at the
/// first failure the rest stop, and all have stopped when this returns.
async fn restore_objects(
    backup: &Backup,
    manifest: &Manifest,
    decryptor_for: &DecryptorFor,
    sink: &Sink,
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    let names = plaintext_names(backup, &manifest.objects)?;
    if let Sink::Dir { dir, .. } = sink {
        std::fs::create_dir_all(dir).map_err(|e| {
            RestoreError::Failed(format!("cannot create the folder {}: {e}", dir.display()))
        })?;
    }
    let total: u64 = manifest.objects.iter().map(|o| o.size).sum();
    let downloaded = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(report_progress(downloaded.clone(), total));
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel_objects()));
    // set at the first failure: the others stop at their next chunk or
    // file, and are awaited, so none writes into a folder after it is gone
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for (object, name) in manifest.objects.iter().zip(names) {
        let decryptor = decryptor_for(object)?;
        let slots = slots.clone();
        let (backup, object, sink, downloaded, cancelled) = (
            backup.clone(),
            object.clone(),
            sink.clone(),
            downloaded.clone(),
            cancelled.clone(),
        );
        tasks.spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .map_err(|e| RestoreError::Crashed(format!("the object queue closed: {e}")))?;
            if cancelled.load(Ordering::Relaxed) {
                return Err(RestoreError::Failed(CANCELLED.to_owned()));
            }
            restore_object(backup, object, name, decryptor, sink, downloaded, cancelled).await
        });
    }
    let mut restored = Restored::default();
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done.map_err(RestoreError::crashed).and_then(|r| r) {
            Ok(plaintext) => {
                restored.objects += 1;
                restored.plaintext_bytes += plaintext;
            }
            Err(err) => {
                if first_error.is_none() {
                    first_error = Some(err);
                    cancelled.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    progress.abort();
    if let Some(err) = first_error {
        return Err(err);
    }
    restored.ciphertext_bytes = downloaded.load(Ordering::Relaxed);
    restored.elapsed = started.elapsed();
    Ok(restored)
}

async fn report_progress(downloaded: Arc<AtomicU64>, total: u64) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let done = downloaded.load(Ordering::Relaxed);
        eprintln!(
            "restoring: {:.1} of {:.1} MB encrypted ({:.1} MB/s)",
            done as f64 / 1e6,
            total as f64 / 1e6,
            mb_per_s(done, started.elapsed())
        );
    }
}

/// Whether `path` names a file inside the restore's folder: relative, with
/// no empty, `.` or `..` segment, and not in the form of a file being
/// written ([`TempFile`]'s `.NAME.partial`).
fn is_relative_file(path: &str) -> bool {
    let writing = |name: &str| name.starts_with('.') && name.ends_with(".partial");
    !path.is_empty()
        && !path.starts_with('/')
        && !path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        && !path.rsplit('/').next().is_some_and(writing)
}

/// Every object's [`plaintext_name`], in order, refusing a manifest that
/// names one plaintext file twice (a pack: each of its files): objects
/// are written side by side, so the second would silently replace the
/// first.
fn plaintext_names(
    backup: &Backup,
    objects: &[ManifestObject],
) -> Result<Vec<String>, RestoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut names = Vec::with_capacity(objects.len());
    for object in objects {
        let name = plaintext_name(backup, object)?;
        let files: Vec<&str> = match &object.packed {
            Some(packed) => packed.iter().map(|file| file.path.as_str()).collect(),
            None => vec![name.as_str()],
        };
        for file in files {
            if !seen.insert(file.to_owned()) {
                return Err(RestoreError::Failed(format!(
                    "the manifest lists {file:?} more than once (again in {})",
                    object.key
                )));
            }
        }
        names.push(name);
    }
    Ok(names)
}

/// Where an object's plaintext goes in a folder: a directory dump's file
/// back at its `path`; otherwise its name without `.gpg` (and `.zst` once
/// decompressed).
fn plaintext_name(backup: &Backup, object: &ManifestObject) -> Result<String, RestoreError> {
    let outside = || RestoreError::Failed(format!("{}: outside the backup", object.key));
    if let Some(packed) = &object.packed {
        if object.path.is_some() {
            return Err(RestoreError::Failed(format!(
                "{}: the manifest gives it both a path and packed files",
                object.key
            )));
        }
        if let Some(file) = packed.iter().find(|file| !is_relative_file(&file.path)) {
            return Err(RestoreError::Failed(format!(
                "{}: {:?} is outside the backup",
                object.key, file.path
            )));
        }
    }
    if let Some(path) = &object.path {
        return if is_relative_file(path) {
            Ok(path.clone())
        } else {
            Err(outside())
        };
    }
    let name = backup.name_of(&object.key).ok_or_else(outside)?;
    let name = name.strip_suffix(".gpg").unwrap_or(name);
    Ok(match object.compression.as_deref() {
        Some("zstd") => name.strip_suffix(".zst").unwrap_or(name),
        _ => name,
    }
    .to_owned())
}

/// Decrypts `input` into `out`, undoing the compression the manifest
/// names; returns `out`.
fn decrypt_into<R, W>(
    decryptor: &Decryptor,
    compression: Option<&str>,
    input: R,
    out: W,
) -> Result<W, RestoreError>
where
    R: Read + Send,
    W: Write + Send,
{
    match compression {
        None => {
            let mut out = out;
            decrypt::decrypt(decryptor, input, &mut out)?;
            Ok(out)
        }
        Some("zstd") => {
            let fail = |e: io::Error| RestoreError::Failed(format!("zstd -d: {e}"));
            let mut decoder = zstd::stream::write::Decoder::new(out).map_err(fail)?;
            decrypt::decrypt(decryptor, input, &mut decoder)?;
            decoder.flush().map_err(fail)?;
            Ok(decoder.into_inner())
        }
        Some(other) => Err(RestoreError::Failed(format!(
            "compression {other:?} is not one this build undoes"
        ))),
    }
}

/// One object: returns the plaintext bytes written.
async fn restore_object(
    backup: Backup,
    object: ManifestObject,
    name: String,
    decryptor: Decryptor,
    sink: Sink,
    downloaded: Arc<AtomicU64>,
    cancelled: Arc<AtomicBool>,
) -> Result<u64, RestoreError> {
    let plain_name = name;
    let compression = object.compression.clone();
    let packed = object.packed.clone();
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(QUEUED_CHUNKS);
    let download = tokio::spawn(download(backup, object.clone(), sender, downloaded));
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let decrypting = tokio::task::spawn_blocking(move || -> Result<(), RestoreError> {
        let input = ChannelReader {
            receiver,
            current: Bytes::new(),
            cancelled: cancelled.clone(),
        };
        match (sink, packed) {
            (Sink::Dir { dir, durable }, Some(files)) => {
                // the archive goes to an unnamed file beside the files
                let fail = |e: io::Error| RestoreError::Failed(format!("{plain_name}: {e}"));
                let archive = tempfile::tempfile_in(&dir).map_err(|e| {
                    RestoreError::Failed(format!(
                        "{plain_name}: cannot create a temporary file in {}: {e}",
                        dir.display()
                    ))
                })?;
                let out = io::BufWriter::new(&archive);
                let mut out = decrypt_into(&decryptor, compression.as_deref(), input, out)?;
                out.flush().map_err(fail)?;
                drop(out);
                let mut archive = archive;
                archive.rewind().map_err(fail)?;
                unpack(&plain_name, archive, &dir, &files, durable, &counter, &cancelled)
            }
            (Sink::Dir { dir, durable }, None) => {
                let file = TempFile::create(&dir.join(&plain_name))?;
                let out = Counting::new(io::BufWriter::new(&file.file), counter);
                let mut out = decrypt_into(&decryptor, compression.as_deref(), input, out)?;
                out.inner
                    .flush()
                    .map_err(|e| RestoreError::Failed(format!("{plain_name}: {e}")))?;
                drop(out);
                file.keep(durable)
            }
            (Sink::Database { .. }, Some(_)) => Err(RestoreError::Failed(format!(
                "{plain_name}: a pack of a directory dump's files cannot be streamed into a database"
            ))),
            (
                Sink::Database {
                    target,
                    keep_plaintext,
                },
                None,
            ) => {
                let mut tool = target.spawn_restore()?;
                let stdin = target.restore_input(tool.child.stdin.take().expect("stdin is piped"));
                let kept = keep_plaintext
                    .map(|dir| TempFile::create(&dir.join(&plain_name)))
                    .transpose()?;
                let second = kept
                    .as_ref()
                    .map(|f| f.file.try_clone())
                    .transpose()
                    .map_err(|e| RestoreError::Failed(format!("{plain_name}: {e}")))?
                    .map(io::BufWriter::new);
                let tee = Tee {
                    first: stdin,
                    second,
                };
                let out = Counting::new(tee, counter);
                let decrypted = decrypt_into(&decryptor, compression.as_deref(), input, out);
                let second = match decrypted {
                    Ok(Counting {
                        inner: Tee { first, second },
                        ..
                    }) => {
                        drop(first); // end of input for the tool
                        second
                    }
                    Err(err) => {
                        // the tool's stdin closes with the writer
                        let _ = target.wait_restore(tool);
                        return Err(err);
                    }
                };
                if let Some(mut second) = second {
                    second
                        .flush()
                        .map_err(|e| RestoreError::Failed(format!("{plain_name}: {e}")))?;
                }
                let finished = target.wait_restore(tool);
                finished?;
                kept.map(|file| file.keep(true)).transpose()?;
                Ok(())
            }
        }
    });
    let decrypted = decrypting.await.map_err(RestoreError::crashed)?;
    let downloaded = download.await.map_err(RestoreError::crashed)?;
    // the download's verdict first: a damaged object explains a gpg failure
    downloaded?;
    decrypted?;
    Ok(written.load(Ordering::Relaxed))
}

/// Writes every file of the pack `name` from its tar `archive` into `dir`
/// (synced when `durable`), adding their bytes to `written`. The archive
/// must hold exactly the `files` the manifest lists, each a regular file
/// of the listed size: nothing else is written, and a pack that differs
/// fails the restore. Stops before the next file once `cancelled`.
fn unpack(
    name: &str,
    archive: impl Read,
    dir: &Path,
    files: &[PackedFile],
    durable: bool,
    written: &AtomicU64,
    cancelled: &AtomicBool,
) -> Result<(), RestoreError> {
    let damaged = |what: String| RestoreError::Failed(format!("{name}: {what}"));
    let fail = |e: io::Error| damaged(format!("cannot read the archive: {e}"));
    let mut expected: HashMap<&str, u64> = HashMap::new();
    for file in files {
        if !is_relative_file(&file.path)
            || expected.insert(file.path.as_str(), file.bytes).is_some()
        {
            return Err(damaged(format!(
                "the manifest lists {:?} outside the folder or twice",
                file.path
            )));
        }
    }
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().map_err(fail)? {
        if cancelled.load(Ordering::Relaxed) {
            return Err(RestoreError::Failed(CANCELLED.to_owned()));
        }
        let mut entry = entry.map_err(fail)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(bytes) = expected.remove(path.as_str()) else {
            return Err(damaged(format!(
                "holds {path:?}, which the manifest does not list for it (or lists once)"
            )));
        };
        if entry.header().entry_type() != tar::EntryType::Regular || entry.size() != bytes {
            return Err(damaged(format!(
                "{path:?} is not the regular file of {bytes} bytes the manifest lists"
            )));
        }
        let file = TempFile::create(&dir.join(&path))?;
        let mut out = io::BufWriter::new(&file.file);
        let copied = io::copy(&mut entry, &mut out)
            .and_then(|copied| out.flush().map(|()| copied))
            .map_err(|e| damaged(format!("{path}: {e}")))?;
        drop(out);
        if copied != bytes {
            return Err(damaged(format!(
                "{path:?}: {copied} bytes, the manifest lists {bytes}"
            )));
        }
        file.keep(durable)?;
        written.fetch_add(copied, Ordering::Relaxed);
    }
    if !expected.is_empty() {
        let mut missing: Vec<&str> = expected.into_keys().collect();
        missing.sort_unstable();
        return Err(damaged(format!("lacks {}", missing.join(", "))));
    }
    Ok(())
}

/// Streams the object into `sender`, hashing it; fails if it differs from
/// the manifest.
async fn download(
    backup: Backup,
    object: ManifestObject,
    sender: mpsc::Sender<io::Result<Bytes>>,
    downloaded: Arc<AtomicU64>,
) -> Result<(), RestoreError> {
    let location = backup.store.location(&object.key);
    let mut reader = backup.store.open(&object.key, 0, None).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        // whole chunks: the HTTP body arrives in pieces of a few KiB, and
        // each piece handed on alone would cost GPGME a round of its loop
        let mut n = 0;
        while n < CHUNK {
            match reader.read(&mut buffer[n..]).await {
                Ok(0) => break,
                Ok(read) => n += read,
                Err(err) => {
                    let reason = err.to_string();
                    let _ = sender.send(Err(err)).await;
                    return Err(StoreError::Read { location, reason }.into());
                }
            }
        }
        if n == 0 {
            break;
        }
        let chunk = Bytes::copy_from_slice(&buffer[..n]);
        hasher.update(&chunk);
        size += n as u64;
        downloaded.fetch_add(n as u64, Ordering::Relaxed);
        if size > object.size {
            break;
        }
        if sender.send(Ok(chunk)).await.is_err() {
            // GPGME stopped reading; its error tells why
            return Ok(());
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    if size != object.size || !sha256.eq_ignore_ascii_case(&object.sha256) {
        let _ = sender
            .send(Err(io::Error::other(
                "the object differs from the manifest",
            )))
            .await;
        return Err(RestoreError::Failed(format!(
            "{location} differs from the manifest ({size} bytes, SHA-256 {sha256}; expected {} bytes, {}): run verify",
            object.size, object.sha256
        )));
    }
    Ok(())
}

/// A blocking reader over the download's chunks.
struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    /// Set when another object failed: the next read fails.
    cancelled: Arc<AtomicBool>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::other(CANCELLED));
        }
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

struct Counting<W> {
    inner: W,
    count: Arc<AtomicU64>,
}

impl<W> Counting<W> {
    fn new(inner: W, count: Arc<AtomicU64>) -> Self {
        Counting { inner, count }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes to the restore tool and, optionally, a file.
struct Tee<A, B> {
    first: A,
    second: Option<B>,
}

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.first.write_all(buf)?;
        if let Some(second) = &mut self.second {
            second.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.first.flush()?;
        if let Some(second) = &mut self.second {
            second.flush()?;
        }
        Ok(())
    }
}

/// A file written under `.NAME.partial` and renamed to NAME only once
/// complete and synced; removed if dropped before that.
pub struct TempFile {
    pub file: std::fs::File,
    temp: PathBuf,
    path: PathBuf,
    kept: bool,
}

impl TempFile {
    pub fn create(path: &Path) -> Result<TempFile, RestoreError> {
        let fail = |e: io::Error| RestoreError::Failed(format!("{}: {e}", path.display()));
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.partial"));
        let file = std::fs::File::create(&temp).map_err(fail)?;
        Ok(TempFile {
            file,
            temp,
            path: path.to_owned(),
            kept: false,
        })
    }

    /// Where the file is while it is being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Renames into place, syncing the file and its directory first when
    /// `durable`.
    pub fn keep(mut self, durable: bool) -> Result<(), RestoreError> {
        let fail = |e: io::Error| RestoreError::Failed(format!("{}: {e}", self.path.display()));
        if durable {
            self.file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&self.temp, &self.path).map_err(fail)?;
        if let (true, Some(dir)) = (durable, self.path.parent()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(fail)?;
        }
        self.kept = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Throughput in MB/s (10^6 bytes per second).
pub fn mb_per_s(bytes: u64, elapsed: std::time::Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::store::Store;

    fn object(key: &str, path: Option<&str>, compression: Option<&str>) -> ManifestObject {
        ManifestObject {
            key: key.into(),
            size: 1,
            sha256: String::new(),
            plaintext_bytes: 1,
            path: path.map(str::to_owned),
            packed: None,
            database: None,
            table: None,
            compression: compression.map(str::to_owned),
            upload_started_at: None,
            upload_finished_at: None,
        }
    }

    #[test]
    fn plaintext_goes_back_to_its_path_and_never_outside_the_folder() {
        let prefix = "p/backup/j/t/";
        let backup = Backup {
            store: Store::Dir {
                root: "/copy".into(),
                prefix: prefix.into(),
            },
            prefix: prefix.into(),
            public_keys_prefix: format!("{prefix}public-keys/"),
        };
        let name = |key: &str, path, compression| {
            plaintext_name(
                &backup,
                &object(&format!("{prefix}{key}"), path, compression),
            )
        };
        assert_eq!(
            name("pg_dump.custom.gpg", None, None).unwrap(),
            "pg_dump.custom"
        );
        assert_eq!(
            name("mysqldump.sql.zst.gpg", None, Some("zstd")).unwrap(),
            "mysqldump.sql"
        );
        assert_eq!(
            name("data/sub/1.dat.zst.gpg", Some("sub/1.dat"), Some("zstd")).unwrap(),
            "sub/1.dat"
        );
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "",
            "sub/.1.dat.partial",
        ] {
            assert!(name("data/x.gpg", Some(bad), None).is_err(), "{bad:?}");
            let mut pack = object(&format!("{prefix}packs/00001.tar.gpg"), None, None);
            pack.packed = Some(vec![packed("ok.dat", 1), packed(bad, 1)]);
            assert!(plaintext_name(&backup, &pack).is_err(), "{bad:?}");
        }
        // a pack has no path of its own: one with both could hide its files
        let mut both = object(
            &format!("{prefix}packs/00001.tar.gpg"),
            Some("toc.dat"),
            None,
        );
        both.packed = Some(vec![packed("/home/op/.ssh/authorized_keys", 26)]);
        assert!(plaintext_name(&backup, &both).is_err());
        both.packed = Some(vec![packed("1.dat", 1)]);
        assert!(plaintext_name(&backup, &both).is_err());

        // every file is written once: a second listing is refused
        let file = |path: &str| object(&format!("{prefix}data/{path}.gpg"), Some(path), None);
        let pack = |number: u32, paths: &[&str]| {
            let mut pack = object(&format!("{prefix}packs/{number:05}.tar.gpg"), None, None);
            pack.packed = Some(paths.iter().map(|path| packed(path, 1)).collect());
            pack
        };
        let good = [file("toc.dat"), pack(1, &["1.dat", "sub/1.dat"])];
        plaintext_names(&backup, &good).unwrap();
        for twice in [
            vec![file("1.dat"), pack(1, &["1.dat"])],
            vec![pack(1, &["1.dat"]), pack(2, &["1.dat"])],
            vec![pack(1, &["1.dat", "1.dat"])],
            vec![file("1.dat"), file("1.dat")],
        ] {
            let err = plaintext_names(&backup, &twice).unwrap_err();
            assert!(
                err.to_string().contains("\"1.dat\" more than once"),
                "{err}"
            );
        }
    }

    fn packed(path: &str, bytes: u64) -> PackedFile {
        PackedFile {
            path: path.into(),
            bytes,
            database: None,
            table: None,
        }
    }

    /// A tar archive of `entries` (name, type, content), written without
    /// the checks a pack's writer makes.
    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(content.len() as u64);
            header.set_mode(0o600);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").unwrap();
            }
            // set_path would refuse `..`: write the name bytes as they are
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_pack_unpacks_exactly_the_files_its_manifest_lists() {
        use tar::EntryType::{Regular, Symlink};
        let files = [packed("1.dat", 3), packed("sub/toc.dat", 0)];
        let good = archive(&[("1.dat", Regular, b"abc"), ("sub/toc.dat", Regular, b"")]);
        let written = AtomicU64::new(0);
        let unpack_into = |archive: &[u8], dir: &Path, cancelled: bool| {
            let cancelled = AtomicBool::new(cancelled);
            unpack("pack 1", archive, dir, &files, false, &written, &cancelled)
        };
        let dir = tempfile::tempdir().unwrap();
        unpack_into(&good, dir.path(), false).unwrap();
        assert_eq!(std::fs::read(dir.path().join("1.dat")).unwrap(), b"abc");
        assert_eq!(std::fs::read(dir.path().join("sub/toc.dat")).unwrap(), b"");
        assert_eq!(written.load(Ordering::Relaxed), 3);

        let bad = [
            // one more file than listed, and one outside the folder
            archive(&[
                ("1.dat", Regular, b"abc"),
                ("sub/toc.dat", Regular, b""),
                ("2.dat", Regular, b"x"),
            ]),
            archive(&[("../1.dat", Regular, b"abc")]),
            // one missing, one of another size, a link where a file belongs
            archive(&[("1.dat", Regular, b"abc")]),
            archive(&[("1.dat", Regular, b"abcd"), ("sub/toc.dat", Regular, b"")]),
            archive(&[("1.dat", Symlink, b""), ("sub/toc.dat", Regular, b"")]),
            // a file twice
            archive(&[
                ("1.dat", Regular, b"abc"),
                ("1.dat", Regular, b"abc"),
                ("sub/toc.dat", Regular, b""),
            ]),
        ];
        for (case, archive) in bad.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let err = unpack_into(archive, dir.path(), false).expect_err(&format!("case {case}"));
            assert!(err.to_string().starts_with("pack 1: "), "{err}");
            assert!(!dir.path().parent().unwrap().join("1.dat").exists());
        }

        // another object failed: nothing more is written
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_into(&good, dir.path(), true).unwrap_err();
        assert_eq!(err.to_string(), CANCELLED);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn zstd_is_undone_only_when_the_manifest_says_so() {
        use crate::openpgp::packets::tests::Gpg;
        let holder = Gpg::new();
        holder.generate("H <h@x>", "future-default");
        let plaintext = b"INSERT INTO t VALUES (1);\n".repeat(10_000);
        let compressed = zstd::encode_all(&plaintext[..], 3).unwrap();
        let ciphertext = holder.encrypt(&["h@x"], &compressed, &[]);
        let keyring = Decryptor::Keyring(Some(holder.home.path().to_owned()));
        let out = decrypt_into(&keyring, Some("zstd"), &ciphertext[..], Vec::new()).unwrap();
        assert!(out == plaintext);
        let out = decrypt_into(&keyring, None, &ciphertext[..], Vec::new()).unwrap();
        assert!(out == compressed);
        let refused = decrypt_into(&keyring, Some("lz4"), &ciphertext[..], Vec::new());
        assert!(refused.unwrap_err().to_string().contains("lz4"));
    }
}
