//! Bulk data through a gpg process's own pipes, for both directions:
//! the agent's encryption and the restore side's decryption.
//!
//! GPGME decides what gpg is asked to do (which engine, which keyring,
//! which recipients, which session key), but bulk data does not go through
//! GPGME's data callbacks: GPGME 1.18 formats a trace line for every 48
//! bytes it pumps, tracing on or not (`_gpgme_debug_trace()` is the
//! constant 1 in its debug.h). `perf` put 37% of the encrypt stage's CPU
//! there, against 28% for the encryption itself, and pumped by GPGME the
//! agent was slower than `pg_dump | gpg | aws s3 cp`.
//!
//! So a feeder thread writes the input into gpg's stdin while the calling
//! thread drains its stdout, through pipes enlarged to 1 MiB. Only a clean
//! exit with all input read and every output byte passed on succeeds.
//! When the output side fails, gpg is killed, which also stops the feeder.
//! Blocking: run it on a blocking thread.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use gpgme::Context;

/// Bytes moved per read or write between the pipes and our buffers.
const CHUNK: usize = 256 * 1024;

/// Capacity asked for the pipes to and from gpg: the largest an
/// unprivileged process may set by default (`/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: libc::c_int = 1 << 20;

/// How much of gpg's error output an error carries.
const STDERR_LIMIT: u64 = 4096;

/// Options every run gets: no prompts, no terminal, warnings only.
const QUIET: [&str; 3] = ["--batch", "--no-tty", "--quiet"];

/// Streaming through gpg failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("GPGME names no gpg engine for OpenPGP")]
    NoEngine,
    #[error("cannot start {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("reading its input failed: {0}")]
    Input(io::Error),
    #[error("passing its output on failed: {0}")]
    Output(io::Error),
    #[error("gpg exited with {status}: {stderr}")]
    Gpg { status: ExitStatus, stderr: String },
}

/// The gpg GPGME itself runs for `context`'s OpenPGP protocol.
pub fn engine(context: &Context) -> Result<PathBuf, StreamError> {
    use std::os::unix::ffi::OsStrExt;
    match context.engine_info().path_raw() {
        Some(path) if !path.to_bytes().is_empty() => {
            Ok(PathBuf::from(OsStr::from_bytes(path.to_bytes())))
        }
        _ => Err(StreamError::NoEngine),
    }
}

/// Runs `gpg` (quietly, in batch mode) with `args`, feeding it `input` and
/// writing its standard output to `output`.
pub fn run<R, W, A>(gpg: &Path, args: A, input: R, output: W) -> Result<(), StreamError>
where
    R: Read + Send,
    W: Write,
    A: IntoIterator,
    A::Item: AsRef<OsStr>,
{
    run_passing(gpg, args, None, input, output)
}

/// [`run`], with `passed` open in gpg under its own number, for an option
/// such as `--override-session-key-fd N` to read: a secret handed over
/// this way is on no command line and in no file. Only this gpg inherits
/// it, and the caller's copy is closed once gpg has started.
pub fn run_passing<R, W, A>(
    gpg: &Path,
    args: A,
    passed: Option<OwnedFd>,
    input: R,
    mut output: W,
) -> Result<(), StreamError>
where
    R: Read + Send,
    W: Write,
    A: IntoIterator,
    A::Item: AsRef<OsStr>,
{
    let spawn_error = |source| StreamError::Spawn {
        program: gpg.to_owned(),
        source,
    };
    let mut command = Command::new(gpg);
    command
        .args(QUIET)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(fd) = &passed {
        let raw = fd.as_raw_fd();
        // SAFETY: the closure runs in the child between fork and exec,
        // where only async-signal-safe calls are allowed; it makes one,
        // fcntl(F_SETFD), on a descriptor the parent holds open until the
        // spawn has returned.
        unsafe {
            command.pre_exec(move || {
                let fd = BorrowedFd::borrow_raw(raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(io::Error::from)
            });
        }
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    drop(passed);
    let (Some(stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(spawn_error(io::Error::other("no pipes to the child")));
    };
    for pipe in [stdin.as_raw_fd(), stdout.as_raw_fd()] {
        enlarge_pipe(pipe);
    }
    std::thread::scope(|scope| {
        // dropping stdin when done tells gpg its input has ended
        let feeder = scope.spawn(move || copy(&mut { input }, &mut { stdin }));
        let complaints = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.take(STDERR_LIMIT).read_to_string(&mut text);
            text
        });
        let drained = copy(&mut stdout, &mut output).map_err(|err| match err {
            CopyError::Read(err) | CopyError::Write(err) => err,
        });
        if drained.is_err() {
            // nobody reads gpg any more: stop it, which stops the feeder
            let _ = child.kill();
        }
        drop(stdout);
        let fed = feeder.join().unwrap_or_else(|_| {
            Err(CopyError::Read(io::Error::other(
                "the input feeder panicked",
            )))
        });
        let status = child.wait();
        let stderr = complaints.join().unwrap_or_default();
        drained.map_err(StreamError::Output)?;
        let status = status.map_err(spawn_error)?;
        match fed {
            Err(CopyError::Read(err)) => return Err(StreamError::Input(err)),
            // gpg stopped reading: its exit status says why
            Err(CopyError::Write(_)) if !status.success() => {}
            Err(CopyError::Write(err)) => {
                return Err(StreamError::Input(io::Error::other(format!(
                    "gpg stopped reading it: {err}"
                ))))
            }
            Ok(()) => {}
        }
        if status.success() {
            Ok(())
        } else {
            Err(StreamError::Gpg {
                status,
                stderr: stderr.trim().to_owned(),
            })
        }
    })
}

/// Gives a pipe to gpg [`PIPE_BYTES`] of buffer instead of the kernel's
/// 64 KiB, so gpg and the threads feeding and draining it wake each other
/// far less often. A hint: when the kernel refuses, the default works,
/// only slower.
fn enlarge_pipe(fd: RawFd) {
    // SAFETY: F_SETPIPE_SZ on a pipe we own changes only its capacity
    let result = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES) };
    if result < 0 {
        tracing::debug!(
            "keeping the default pipe size: {}",
            io::Error::last_os_error()
        );
    }
}

/// Which side of a copy failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to` until `from` ends, [`CHUNK`] bytes at a time
/// (`io::copy` moves 8 KiB per call, 32 times the system calls).
fn copy(from: &mut impl Read, to: &mut impl Write) -> Result<(), CopyError> {
    let mut buffer = vec![0; CHUNK];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(CopyError::Read(err)),
        };
        to.write_all(&buffer[..n]).map_err(CopyError::Write)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `good` bytes, then fails.
    struct FailingReader {
        good: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::other("the dump pipe broke"));
            }
            let n = buf.len().min(self.good);
            buf[..n].fill(b'x');
            self.good -= n;
            Ok(n)
        }
    }

    /// Accepts `room` bytes, then fails, as a closed part channel does.
    struct StoppingWriter {
        room: usize,
    }

    impl Write for StoppingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "upload gone"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// gpg with a throwaway home and `args`: `--store` (wrap the input in
    /// a literal data packet) and `--decrypt` (unwrap it) need no keys, so
    /// these tests exercise the plumbing alone.
    fn keyless(
        args: &[&str],
        input: impl Read + Send,
        output: impl Write,
    ) -> Result<(), StreamError> {
        let home = tempfile::tempdir().unwrap();
        let home = home.path().to_str().unwrap();
        let mut all = vec!["--homedir", home, "--no-options"];
        all.extend_from_slice(args);
        run(Path::new("gpg"), all, input, output)
    }

    fn store(input: impl Read + Send, output: impl Write) -> Result<(), StreamError> {
        keyless(&["--compress-algo", "none", "--store"], input, output)
    }

    #[test]
    fn every_byte_goes_through_and_comes_back() {
        let input: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut packed = Vec::new();
        store(&input[..], &mut packed).unwrap();
        assert!(packed.len() > input.len());
        let mut unpacked = Vec::new();
        keyless(&["--decrypt"], &packed[..], &mut unpacked).unwrap();
        assert!(unpacked == input, "the round trip changed the data");
    }

    #[test]
    fn an_input_that_breaks_fails_the_run() {
        let err = store(FailingReader { good: 3 << 20 }, io::sink()).unwrap_err();
        assert!(matches!(err, StreamError::Input(_)), "{err}");
        assert!(err.to_string().contains("the dump pipe broke"), "{err}");
    }

    #[test]
    fn an_output_that_stops_stops_gpg_and_the_endless_input() {
        let err = store(io::repeat(7), StoppingWriter { room: 1 << 20 }).unwrap_err();
        assert!(matches!(err, StreamError::Output(_)), "{err}");
    }

    #[test]
    fn gpg_refusing_is_reported_with_what_it_said() {
        let err = keyless(&["--decrypt"], &b"not OpenPGP at all"[..], io::sink()).unwrap_err();
        match err {
            StreamError::Gpg { stderr, .. } => assert!(!stderr.is_empty()),
            other => panic!("{other}"),
        }
    }
}
