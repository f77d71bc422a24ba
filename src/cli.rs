//! The command line: clap definitions, logging set-up, and the mapping from
//! outcomes to exit codes that schedulers rely on.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::controller::{RunOptions, RunReport};

/// Exit codes, documented in the README; schedulers depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Internal = 1,
    Config = 2,
    Launch = 3,
    BackupFailed = 4,
    TimedOut = 5,
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "backup-cloud",
    version,
    about = "Encrypted database backups on ephemeral EC2 instances"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch an instance for JOB, watch it, and exit with the result.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Name of the job in the configuration file.
        #[arg(long, short)]
        job: String,
        /// Show the resolved AMI, the rendered user-data and the launch
        /// request without launching anything.
        #[arg(long)]
        dry_run: bool,
        /// Agent binary to ship to the instance (default: this executable).
        #[arg(long, value_name = "PATH")]
        agent_binary: Option<PathBuf>,
    },
    /// Run a backup on this machine (what the instance's user-data calls).
    Agent {
        /// Bucket holding the job spec.
        #[arg(long)]
        spec_bucket: String,
        /// Key of the job spec.
        #[arg(long)]
        spec_key: String,
    },
}

/// Parses arguments, runs the command, prints a one-line reason on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent's log is the instance console: informative by default. The
    // controller prints its own progress lines, so its log is quiet unless
    // RUST_LOG asks for more.
    init_logging(if matches!(cli.command, Command::Agent { .. }) {
        "info"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("backup-cloud: cannot start the async runtime: {err}");
            return Exit::Internal.into();
        }
    };
    let (exit, error) = runtime.block_on(dispatch(cli.command));
    if let Some(error) = error {
        eprintln!("backup-cloud: {error:#}");
    }
    exit.into()
}

async fn dispatch(command: Command) -> (Exit, Option<anyhow::Error>) {
    match command {
        Command::Run {
            config,
            job,
            dry_run,
            agent_binary,
        } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(err) => return (Exit::Config, Some(err.into())),
            };
            let options = RunOptions {
                dry_run,
                agent_binary: agent_binary.as_deref(),
            };
            match crate::controller::run(&config, &job, options).await {
                Ok(Some(report)) => {
                    print_report(&report);
                    (Exit::Success, None)
                }
                Ok(None) => (Exit::Success, None),
                Err(err) => (err.exit(), Some(err.into())),
            }
        }
        Command::Agent {
            spec_bucket,
            spec_key,
        } => match crate::agent::run(&spec_bucket, &spec_key).await {
            Ok(()) => (Exit::Success, None),
            Err(err) => (Exit::BackupFailed, Some(err.into())),
        },
    }
}

fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The summary of a successful run, on stdout.
fn print_report(report: &RunReport) {
    let bytes: u64 = report.manifest.objects.iter().map(|o| o.size).sum();
    println!(
        "job {} succeeded in {}: {} object(s), {} bytes encrypted to {} key(s)",
        report.job_id,
        humantime::format_duration(std::time::Duration::from_secs(report.elapsed.as_secs())),
        report.manifest.objects.len(),
        bytes,
        report.manifest.recipients.len()
    );
    println!("manifest: s3://{}/{}", report.bucket, report.manifest_key);
    println!("instance {} terminated", report.instance_id);
}
