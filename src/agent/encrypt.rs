//! The encryption stage: plaintext in, OpenPGP ciphertext out, plus the
//! writer that hashes the ciphertext and cuts it into upload parts.
//!
//! [`crate::openpgp::Encryptor`] does the encrypting, to the recipients
//! `keys` imported and checked.
//!
//! The stage is blocking and runs on a blocking thread. It talks to the
//! async upload side only through a bounded channel of parts: when the
//! upload falls behind, `blocking_send` waits, gpg stops being read, and the
//! dump tool blocks on its pipe — or, for a dump that must not be held
//! back (mysqldump), the parts wait on disk in a [`Spool`]. Memory stays at a few
//! parts whatever the size of the database. When the upload gives up, the channel closes, the
//! next write fails and gpg is stopped. SHA-256 of the ciphertext runs on a
//! thread of its own, part by part, and part buffers are reused rather
//! than allocated per part.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::part_size::PartSizer;
use super::spool::Spool;

/// A reader that adds every byte it passes on to a shared counter.
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        CountingReader { inner, count }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What the ciphertext turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiphertextSummary {
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the whole ciphertext.
    pub sha256: String,
}

/// Part buffers that came back from the upload, for the next parts. A
/// fresh allocation per part costs a page fault and a zeroed page for
/// every 4 KiB of it, on every part; a reused buffer is faulted in once.
/// The pool holds no more buffers than were ever in use at once, which the
/// part channel and the upload's concurrency already bound.
#[derive(Default)]
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer with room for `size` bytes.
    fn take(&self, size: usize) -> Vec<u8> {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer = reused.unwrap_or_default();
        buffer.clear();
        buffer.reserve_exact(size);
        buffer
    }

    fn put(&self, buffer: Vec<u8>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }
}

/// A part's bytes on loan from the pool: when the last [`Bytes`] pointing
/// at them is dropped (the upload and the hasher are done), they go back.
struct PooledPart {
    buffer: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledPart {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledPart {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buffer));
    }
}

/// SHA-256 of the parts, in order, on a thread of its own, so hashing runs
/// beside the encryption instead of between its reads and writes.
struct PartHasher {
    parts: std::sync::mpsc::SyncSender<Bytes>,
    thread: std::thread::JoinHandle<String>,
}

impl PartHasher {
    fn start() -> PartHasher {
        // two parts of slack; a slower hasher holds the writer back
        let (parts, received) = std::sync::mpsc::sync_channel::<Bytes>(2);
        let thread = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for part in received {
                hasher.update(&part);
            }
            hex::encode(hasher.finalize())
        });
        PartHasher { parts, thread }
    }

    fn hash(&self, part: Bytes) -> io::Result<()> {
        self.parts
            .send(part)
            .map_err(|_| io::Error::other("the ciphertext hasher stopped"))
    }

    fn finish(self) -> io::Result<String> {
        drop(self.parts);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the ciphertext hasher panicked"))
    }
}

/// Hashes and counts everything written to it and hands it on in parts
/// sized by a [`PartSizer`] (the last part may be shorter) over a bounded
/// channel. Blocking: it must not be used on an async thread.
pub struct PartWriter {
    sizer: PartSizer,
    /// Number of the part being filled (from 1).
    part_number: u32,
    /// Size of the part being filled; 0 until its buffer is taken.
    part_size: usize,
    current: Vec<u8>,
    pool: Arc<BufferPool>,
    parts: Outlet,
    hasher: PartHasher,
    bytes: u64,
}

/// Where finished parts go.
enum Outlet {
    /// Straight to the upload's bounded channel: the writer waits while
    /// the upload is behind.
    Channel(mpsc::Sender<Bytes>),
    /// Through a [`Spool`]: the writer never waits for the upload.
    Spool(Spool),
}

impl PartWriter {
    /// Parts sized by `sizer`, sent on `parts`.
    pub fn new(sizer: PartSizer, parts: mpsc::Sender<Bytes>) -> Self {
        Self::with_outlet(sizer, Outlet::Channel(parts))
    }

    /// Parts sized by `sizer`, handed to `spool` (a stream dump, which
    /// must not be held back by a slow upload).
    pub fn spooled(sizer: PartSizer, spool: Spool) -> Self {
        Self::with_outlet(sizer, Outlet::Spool(spool))
    }

    fn with_outlet(sizer: PartSizer, parts: Outlet) -> Self {
        PartWriter {
            sizer,
            part_number: 1,
            part_size: 0,
            current: Vec::new(),
            pool: Arc::default(),
            parts,
            hasher: PartHasher::start(),
            bytes: 0,
        }
    }

    /// Sends the last, possibly short, part and returns the size and hash
    /// of everything written. Dropping the writer without finishing closes
    /// the channel with the last part unsent: the stream is incomplete.
    pub fn finish(mut self) -> io::Result<CiphertextSummary> {
        if !self.current.is_empty() {
            self.send_current()?;
        }
        if let Outlet::Spool(spool) = self.parts {
            let spilled = spool.finish()?;
            if spilled > 0 {
                tracing::info!("{spilled} part(s) waited on disk for the upload");
            }
        }
        Ok(CiphertextSummary {
            bytes: self.bytes,
            sha256: self.hasher.finish()?,
        })
    }

    fn send_current(&mut self) -> io::Result<()> {
        let part = Bytes::from_owner(PooledPart {
            buffer: std::mem::take(&mut self.current),
            pool: self.pool.clone(),
        });
        self.part_number = self.part_number.saturating_add(1);
        self.part_size = 0;
        self.hasher.hash(part.clone())?;
        match &self.parts {
            Outlet::Channel(parts) => parts.blocking_send(part).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the upload stopped accepting parts",
                )
            }),
            Outlet::Spool(spool) => spool.push(part),
        }
    }
}

impl Write for PartWriter {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        self.bytes += written as u64;
        while !buf.is_empty() {
            if self.part_size == 0 {
                // within S3's part sizes, which fit in memory by then
                self.part_size =
                    usize::try_from(self.sizer.part_size(self.part_number)).unwrap_or(usize::MAX);
                self.current = self.pool.take(self.part_size);
            }
            let room = self.part_size - self.current.len();
            let (now, later) = buf.split_at(room.min(buf.len()));
            self.current.extend_from_slice(now);
            buf = later;
            if self.current.len() == self.part_size {
                self.send_current()?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::openpgp::Encryptor;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Runs `gpg` in `home`, panicking with its stderr on failure.
    pub(crate) fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
        let output = Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args([
                "--batch",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("gpg runs");
        assert!(
            output.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// A private GNUPGHOME for a test; its gpg-agent is stopped on drop.
    pub(crate) struct TestKeyring {
        pub dir: tempfile::TempDir,
    }

    impl TestKeyring {
        pub fn new() -> Self {
            let dir = tempfile::Builder::new().prefix("gpgt").tempdir().unwrap();
            TestKeyring { dir }
        }

        pub fn home(&self) -> PathBuf {
            self.dir.path().to_owned()
        }

        /// Generates a key for `uid` with `gpg --quick-gen-key` `extra`
        /// arguments (algorithm, usage, expiry) and returns its fingerprint.
        pub fn generate(&self, uid: &str, extra: &[&str]) -> String {
            let mut args = vec!["--quick-gen-key", uid];
            args.extend_from_slice(extra);
            gpg(&self.home(), &args);
            self.fingerprint(uid)
        }

        pub fn fingerprint(&self, uid: &str) -> String {
            let listing = gpg(&self.home(), &["--with-colons", "--list-keys", uid]);
            let listing = String::from_utf8(listing).unwrap();
            listing
                .lines()
                .find(|l| l.starts_with("fpr:"))
                .and_then(|l| l.split(':').nth(9))
                .expect("fingerprint listed")
                .to_owned()
        }

        pub fn export(&self, fingerprint: &str) -> Vec<u8> {
            gpg(&self.home(), &["--armor", "--export", fingerprint])
        }
    }

    impl Drop for TestKeyring {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(self.dir.path())
                .args(["--kill", "all"])
                .status();
        }
    }

    /// Feeds `input` through a [`PartWriter`] in `chunk`-sized writes and
    /// returns the parts received and the summary.
    fn cut(input: &[u8], part_size: usize, chunk: usize) -> (Vec<Bytes>, CiphertextSummary) {
        let (tx, mut rx) = mpsc::channel(1);
        let receiver = std::thread::spawn(move || {
            let mut parts = Vec::new();
            while let Some(part) = rx.blocking_recv() {
                parts.push(part);
            }
            parts
        });
        let mut writer = PartWriter::new(PartSizer::new(part_size as u64, None), tx);
        for piece in input.chunks(chunk) {
            writer.write_all(piece).unwrap();
        }
        let summary = writer.finish().unwrap();
        (receiver.join().unwrap(), summary)
    }

    #[test]
    fn parts_are_exactly_part_size_except_the_last() {
        let input: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for (part_size, chunk) in [
            (1000, 7),
            (1000, 1000),
            (1024, 4096),
            (13, 1),
            (20_000, 333),
        ] {
            let (parts, summary) = cut(&input, part_size, chunk);
            let (last, full) = parts.split_last().unwrap();
            assert!(
                full.iter().all(|p| p.len() == part_size),
                "{part_size}/{chunk}"
            );
            assert!(!last.is_empty() && last.len() <= part_size);
            assert_eq!(parts.concat(), input);
            assert_eq!(summary.bytes, input.len() as u64);
            assert_eq!(summary.sha256, hex::encode(Sha256::digest(&input)));
        }
    }

    #[test]
    fn an_exact_multiple_sends_no_empty_part() {
        let input = vec![7u8; 4000];
        let (parts, summary) = cut(&input, 1000, 300);
        assert_eq!(parts.len(), 4);
        assert_eq!(summary.bytes, 4000);
    }

    #[test]
    fn writing_fails_once_the_upload_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut writer = PartWriter::new(PartSizer::new(4, None), tx);
        let err = writer.write_all(b"12345678").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn counting_reader_counts() {
        let count = Arc::new(AtomicU64::new(0));
        let mut reader = CountingReader::new(&b"hello world"[..], count.clone());
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn encrypted_stream_decrypts_with_stock_gpg() {
        let keyring = TestKeyring::new();
        let fingerprint = keyring.generate(
            "Test Recipient <t@example.org>",
            &["future-default", "default", "never"],
        );
        let plaintext: Vec<u8> = (0..3 * 1024 * 1024 + 17u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (tx, mut rx) = mpsc::channel::<Bytes>(1);
        let receiver = std::thread::spawn(move || {
            let mut ciphertext = Vec::new();
            while let Some(part) = rx.blocking_recv() {
                ciphertext.extend_from_slice(&part);
            }
            ciphertext
        });
        let count = Arc::new(AtomicU64::new(0));
        let mut writer = PartWriter::new(PartSizer::new(256 * 1024, None), tx);
        Encryptor::new(&keyring.home(), std::slice::from_ref(&fingerprint))
            .unwrap()
            .encrypt(
                CountingReader::new(&plaintext[..], count.clone()),
                &mut writer,
            )
            .unwrap();
        let summary = writer.finish().unwrap();
        let ciphertext = receiver.join().unwrap();
        assert_eq!(count.load(Ordering::Relaxed), plaintext.len() as u64);
        assert_eq!(summary.bytes, ciphertext.len() as u64);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&ciphertext)));

        let encrypted = keyring.dir.path().join("dump.gpg");
        std::fs::write(&encrypted, &ciphertext).unwrap();
        let decrypted = gpg(&keyring.home(), &["--decrypt", encrypted.to_str().unwrap()]);
        assert!(decrypted == plaintext, "round trip changed the data");
    }
}
