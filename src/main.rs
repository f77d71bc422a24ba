//! Entry point: parse the command line, run, and turn the outcome into a
//! documented exit code with a one-line reason on stderr.

use std::process::ExitCode;

fn main() -> ExitCode {
    backup_cloud::cli::main()
}
