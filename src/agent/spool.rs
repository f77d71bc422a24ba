//! An elastic queue between the encryption stage and the upload of a
//! mysqldump stream: parts the upload cannot take yet wait on the scratch
//! disk instead of holding the dump tool back.
//!
//! A MySQL server gives a client `net_write_timeout` (60 s by default) to
//! take each next packet, and a stream dump reads only as fast as its
//! output drains. With the parts handed straight to a bounded channel, one
//! slow round of part uploads (large parts on a slow link, S3 retrying)
//! held mysqldump back past the timeout and the server cut it off: "Error
//! 2013: Lost connection to server during query when dumping table … at
//! row: 4" (tried with the pipe's reader stalled past the timeout;
//! mysqldump has no way to raise the session's timeout, and MariaDB's
//! mysqldump refuses `init-command` in any option group). It also keeps
//! the database's snapshot open no longer than the dump itself needs.
//! (PostgreSQL waits for a slow reader as long as it takes, so pg_dump's
//! stream keeps waiting for the upload and nothing of it reaches the disk.)
//!
//! The waiting parts are ciphertext, so nothing readable reaches the
//! disk, and each lives in an unnamed file, gone when it is sent or the
//! agent dies. At most one part waits in memory; the rest go to disk,
//! whose free space is the only bound (a full disk fails the backup,
//! naming it).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A part waiting for the upload.
enum Waiting {
    Memory(Bytes),
    /// An unnamed file holding the part, rewound.
    Disk(File),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Waiting>,
    /// No more parts will be pushed.
    closed: bool,
    /// Why the forwarder stopped early.
    failed: Option<String>,
    /// Parts that went through the disk so far.
    spilled: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Parts in order from the encryption stage to the upload's channel,
/// forwarded by a thread of its own. Blocking: use it off the async
/// threads.
pub struct Spool {
    shared: Arc<Shared>,
    dir: PathBuf,
    forwarder: Option<JoinHandle<()>>,
}

impl Spool {
    /// Forwards pushed parts to `parts`, spilling those that must wait to
    /// unnamed files in `dir`.
    pub fn start(dir: &Path, parts: mpsc::Sender<Bytes>) -> Spool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let forwarder = {
            let shared = shared.clone();
            std::thread::spawn(move || forward(&shared, &parts))
        };
        Spool {
            shared,
            dir: dir.to_owned(),
            forwarder: Some(forwarder),
        }
    }

    /// Queues `part` behind those already waiting, without waiting for
    /// the upload. Errors: the upload stopped taking parts, or the part
    /// could not be written to the disk.
    pub fn push(&self, part: Bytes) -> io::Result<()> {
        let in_memory = {
            let state = self.shared.lock();
            if let Some(reason) = &state.failed {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, reason.clone()));
            }
            state.queue.is_empty()
        };
        let waiting = if in_memory {
            Waiting::Memory(part)
        } else {
            Waiting::Disk(self.spill(&part).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "cannot keep a part waiting for the upload in {}: {err}",
                        self.dir.display()
                    ),
                )
            })?)
        };
        let mut state = self.shared.lock();
        if matches!(waiting, Waiting::Disk(_)) {
            state.spilled += 1;
        }
        state.queue.push_back(waiting);
        self.shared.changed.notify_all();
        Ok(())
    }

    fn spill(&self, part: &[u8]) -> io::Result<File> {
        let mut file = tempfile::tempfile_in(&self.dir)?;
        file.write_all(part)?;
        file.rewind()?;
        Ok(file)
    }

    /// Waits until every part has gone to the upload; returns how many
    /// waited on the disk.
    pub fn finish(mut self) -> io::Result<u64> {
        self.close();
        if let Some(forwarder) = self.forwarder.take() {
            forwarder
                .join()
                .map_err(|_| io::Error::other("the part forwarder panicked"))?;
        }
        let state = self.shared.lock();
        match &state.failed {
            Some(reason) => Err(io::Error::new(io::ErrorKind::BrokenPipe, reason.clone())),
            None => Ok(state.spilled),
        }
    }

    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

impl Drop for Spool {
    /// Unfinished: the forwarder sends what is queued and ends; the
    /// upload side sees the stream end short of its summary.
    fn drop(&mut self) {
        self.close();
    }
}

/// The forwarder: sends queued parts in order until the queue is closed
/// and empty, or the upload stops taking them.
fn forward(shared: &Shared, parts: &mpsc::Sender<Bytes>) {
    loop {
        let next = {
            let mut state = shared.lock();
            loop {
                if let Some(next) = state.queue.pop_front() {
                    break next;
                }
                if state.closed {
                    return;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let part = match next {
            Waiting::Memory(part) => Ok(part),
            Waiting::Disk(mut file) => {
                let mut buffer = Vec::new();
                file.read_to_end(&mut buffer).map(|_| Bytes::from(buffer))
            }
        };
        let failure = match part {
            Ok(part) => parts
                .blocking_send(part)
                .err()
                .map(|_| "the upload stopped accepting parts".to_owned()),
            Err(err) => Some(format!(
                "cannot read back a part that waited on disk: {err}"
            )),
        };
        if let Some(reason) = failure {
            let mut state = shared.lock();
            state.failed = Some(reason);
            state.queue.clear();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u8) -> Bytes {
        Bytes::from(vec![n; 1000])
    }

    #[test]
    fn parts_arrive_in_order_and_those_that_waited_went_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let spool = Spool::start(dir.path(), tx);
        // nobody receives yet: the pushes must not wait for the upload
        for n in 0..20 {
            spool.push(part(n)).unwrap();
        }
        let receiver = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(part) = rx.blocking_recv() {
                got.push(part);
            }
            got
        });
        let spilled = spool.finish().unwrap();
        let got = receiver.join().unwrap();
        assert_eq!(got, (0..20).map(part).collect::<Vec<_>>());
        assert!(spilled >= 17, "{spilled} of 20 waited on disk");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the waiting files are unnamed"
        );
    }

    #[test]
    fn a_gone_upload_fails_the_next_push_and_the_finish() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let spool = Spool::start(dir.path(), tx);
        spool.push(part(1)).unwrap();
        let pushed = (0..100).try_for_each(|n| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            spool.push(part(n))
        });
        assert_eq!(pushed.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        let err = spool.finish().unwrap_err();
        assert!(err.to_string().contains("stopped accepting"), "{err}");
    }

    #[test]
    fn a_disk_that_cannot_take_a_part_is_named() {
        let (tx, _rx) = mpsc::channel(1);
        let missing = Path::new("/nonexistent/backup-cloud-spool");
        let spool = Spool::start(missing, tx);
        spool.push(part(1)).unwrap();
        // the first part may be in memory or already with the forwarder;
        // at most two more fit before one must wait on the disk
        let err = (0..3).try_for_each(|n| spool.push(part(n))).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }
}
