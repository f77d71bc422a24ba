//! Running a child process that is both fed and read.
//!
//! A child given input on stdin while its stdout and stderr are piped back
//! deadlocks when the parent writes all of stdin first: once the child has
//! filled its stdout pipe (64 KiB on Linux) it blocks writing, stops
//! reading stdin, and the parent blocks writing too. A drill's `mysql`
//! facts query over thousands of tables did exactly that. Here stdin is
//! written on a thread of its own while the output is read, so neither
//! side ever waits for the other.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Output, Stdio};

/// Runs `command` with `input` on its stdin and returns its exit status,
/// stdout and stderr (all of them, as bytes).
///
/// Blocking: call it from a blocking thread in async code.
///
/// # Errors
///
/// As [`run_with_input_streamed`].
pub fn run_with_input(command: Command, input: &[u8]) -> std::io::Result<Output> {
    let mut stdout = Vec::new();
    let (status, stderr) =
        run_with_input_streamed(command, input, |chunk| stdout.extend_from_slice(chunk))?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `command` with `input` on its stdin, handing its stdout to
/// `stdout` chunk by chunk as it arrives (so output of any size passes
/// through in constant memory); returns its exit status and stderr.
///
/// Blocking: call it from a blocking thread in async code.
///
/// # Errors
///
/// The child cannot be started, read or waited for. A child that exits
/// before reading all of its input is not an error here: its exit status
/// says what happened. Any other failure to write its input is returned
/// once the child has been waited for.
pub fn run_with_input_streamed(
    mut command: Command,
    input: &[u8],
    mut stdout: impl FnMut(&[u8]),
) -> std::io::Result<(ExitStatus, Vec<u8>)> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let mut output = child.stdout.take().expect("stdout was piped");
    let mut errors = child.stderr.take().expect("stderr was piped");
    std::thread::scope(|scope| {
        let feeder = scope.spawn(move || match stdin.write_all(input) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        });
        let complaints = scope.spawn(move || {
            let mut said = Vec::new();
            errors.read_to_end(&mut said).map(|_| said)
        });
        let mut buffer = vec![0; 64 * 1024];
        let read = loop {
            match output.read(&mut buffer) {
                Ok(0) => break Ok(()),
                Ok(n) => stdout(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        drop(output);
        let status = child.wait();
        let fed = feeder.join().expect("the stdin feeder does not panic");
        let said = complaints.join().expect("the stderr reader does not panic");
        read?;
        let status = status?;
        fed?;
        Ok((status, said?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Far more than a pipe holds, in both directions at once: writing
    /// all of it before reading would block forever.
    #[test]
    fn a_child_that_echoes_more_than_a_pipe_holds_does_not_deadlock() {
        let input: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = input.clone();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(run_with_input(Command::new("cat"), &input));
        });
        let output = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("cat never finished: stdin and stdout deadlocked")
            .unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout.len(), expected.len());
        assert!(output.stdout == expected);
    }

    #[test]
    fn a_child_that_stops_reading_early_is_judged_by_its_exit_status() {
        let mut command = Command::new("sh");
        command.args(["-c", "head -c 10 >/dev/null; echo done; exit 3"]);
        let output = run_with_input(command, &vec![b'x'; 4 * 1024 * 1024]).unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"done\n");
    }
}
