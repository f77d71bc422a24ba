//! The command line: clap definitions, logging set-up, and the mapping from
//! outcomes to the exit codes schedulers rely on (documented in the README).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::controller::{Controller, Interrupts, LaunchOptions, RunError};
use crate::output::{JobResult, Outcome, OutputFormat, Reporter};

/// Exit codes, documented in the README; schedulers depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Internal = 1,
    Config = 2,
    Launch = 3,
    BackupFailed = 4,
    TimedOut = 5,
    AlreadyRunning = 6,
    /// A backup failed verification, restore or drill.
    Unrestorable = 7,
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
    /// Configuration file.
    #[arg(long, short, global = true, env = "BACKUP_CLOUD_CONFIG")]
    pub config: Option<PathBuf>,
    /// How results and progress are printed.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Log format on stderr (levels via RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch an instance for a job, watch it, terminate it, exit with the result.
    Run {
        /// Name of the job in the configuration file.
        #[arg(long, short, required_unless_present = "all", conflicts_with = "all")]
        job: Option<String>,
        /// Run every configured job, each on its own instance.
        #[arg(long)]
        all: bool,
        /// With --all: at most this many jobs at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        max_concurrent: u16,
        /// If the job is already running, follow it instead of refusing.
        #[arg(long)]
        attach: bool,
        /// Show the plan (same as `plan`) without launching anything.
        #[arg(long, conflicts_with = "all")]
        dry_run: bool,
        #[command(flatten)]
        agent: AgentBinaryArg,
    },
    /// Launch a job detached: print its id and return.
    Launch {
        #[arg(long, short)]
        job: String,
        #[command(flatten)]
        agent: AgentBinaryArg,
    },
    /// Show the resolved AMI, the rendered user-data, the launch request and
    /// an estimated duration and cost. Launches nothing.
    Plan {
        #[arg(long, short)]
        job: String,
        /// Size to estimate for, e.g. `250GiB` (default: the last backup's size).
        #[arg(long, value_parser = parse_size)]
        database_size: Option<u64>,
    },
    /// Show the status of one job or of every configured job.
    Status { job: Option<String> },
    /// Wait for a running job to finish; exits with its result.
    Wait { job: String },
    /// List our instances, running and recent, with their jobs' status.
    List,
    /// Terminate a job's running instance now.
    Terminate { job: String },
    /// Terminate our instances whose job is finished, failed, stale or
    /// past its lifetime (the cure for a controller that died).
    Reap {
        /// Also terminate instances running longer than this (e.g. `6h`).
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
    /// Benchmark hook for `make bench`: runs the agent's encryption stage
    /// on stdin to the key(s) in a public key file, drops the parts, and
    /// prints the figures as JSON.
    #[command(hide = true)]
    BenchEncrypt {
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        #[arg(long, default_value_t = crate::config::DEFAULT_PART_SIZE_MIB,
              value_parser = clap::value_parser!(u64).range(5..=5120))]
        part_size_mib: u64,
    },
    #[command(flatten)]
    Restore(crate::restore::commands::RestoreCommand),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Write man pages (one per command) into a directory.
    Man {
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file and summarise its jobs.
    Check,
}

#[derive(Debug, clap::Args)]
pub struct AgentBinaryArg {
    /// Agent binary to ship to the instance (default: this executable).
    #[arg(long, value_name = "PATH")]
    agent_binary: Option<PathBuf>,
}

/// Parses arguments, runs the command, prints a one-line reason on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent's log is the instance console: informative by default. The
    // controller prints its own progress, so its log is quiet unless
    // RUST_LOG asks for more.
    let default_level = if matches!(cli.command, Command::Agent { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(default_level, cli.log_format);
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
    let (exit, error) = runtime.block_on(dispatch(cli));
    if let Some(error) = error {
        eprintln!("backup-cloud: {error:#}");
    }
    exit.into()
}

type Dispatched = (Exit, Option<anyhow::Error>);

fn fail(exit: Exit, error: impl Into<anyhow::Error>) -> Dispatched {
    (exit, Some(error.into()))
}

async fn dispatch(cli: Cli) -> Dispatched {
    match cli.command {
        Command::Agent {
            spec_bucket,
            spec_key,
        } => match crate::agent::run(&spec_bucket, &spec_key).await {
            Ok(()) => (Exit::Success, None),
            Err(err) => fail(Exit::BackupFailed, err),
        },
        Command::BenchEncrypt {
            public_key,
            part_size_mib,
        } => match crate::agent::bench_encrypt(&public_key, part_size_mib << 20).await {
            Ok(report) => {
                println!("{}", serde_json::json!(report));
                (Exit::Success, None)
            }
            Err(err) => fail(Exit::Internal, err),
        },
        Command::Restore(command) => {
            crate::restore::commands::dispatch(command, cli.config.as_deref()).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "backup-cloud",
                &mut std::io::stdout(),
            );
            (Exit::Success, None)
        }
        Command::Man { out } => match write_man_pages(&out) {
            Ok(()) => (Exit::Success, None),
            Err(err) => fail(Exit::Internal, err),
        },
        command => {
            let config = match load_config(cli.config.as_deref()) {
                Ok(config) => config,
                Err(err) => return fail(Exit::Config, err),
            };
            let reporter = Arc::new(Reporter::new(cli.output));
            controller_command(command, config, reporter).await
        }
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let path = path.ok_or_else(|| {
        anyhow::anyhow!("no configuration file: pass --config FILE or set BACKUP_CLOUD_CONFIG")
    })?;
    Ok(Config::load(path)?)
}

async fn controller_command(
    command: Command,
    config: Config,
    reporter: Arc<Reporter>,
) -> Dispatched {
    if let Command::Config {
        command: ConfigCommand::Check,
    } = command
    {
        print_config_summary(&config);
        return (Exit::Success, None);
    }
    let interrupts = Interrupts::listen(config.timeouts.interrupt_prompt);
    let controller = Arc::new(Controller::new(config, Arc::clone(&reporter), interrupts).await);
    let format = reporter.format();
    match command {
        Command::Run {
            dry_run: true,
            job: Some(job),
            ..
        } => done(controller.plan(&job, None).await),
        Command::Plan { job, database_size } => done(controller.plan(&job, database_size).await),
        Command::Run {
            job,
            all,
            max_concurrent,
            attach,
            agent,
            ..
        } => {
            let options = LaunchOptions {
                agent_binary: agent.agent_binary,
                attach,
                detach: false,
            };
            if all {
                let results = controller
                    .run_all(usize::from(max_concurrent), &options)
                    .await;
                let exit = combined_exit(&results);
                reporter.summary(&results, exit);
                (exit, None)
            } else {
                let job = job.expect("clap requires --job without --all");
                single(controller.run_job(&job, &options).await, format)
            }
        }
        Command::Launch { job, agent } => {
            let options = LaunchOptions {
                agent_binary: agent.agent_binary,
                attach: false,
                detach: true,
            };
            let result = controller.run_job(&job, &options).await;
            if result.outcome == Outcome::Detached && format == OutputFormat::Human {
                println!("{}", result.job_id.as_deref().unwrap_or_default());
            }
            single(result, format)
        }
        Command::Wait { job } => single(controller.wait(&job).await, format),
        Command::Status { job } => match controller.status(job.as_deref()).await {
            Ok(rows) => {
                print_rows(&rows, format);
                (Exit::Success, None)
            }
            Err(err) => fail(err.outcome().exit(), err),
        },
        Command::List => match controller.list().await {
            Ok(rows) => {
                print_rows(&rows, format);
                (Exit::Success, None)
            }
            Err(err) => fail(err.outcome().exit(), err),
        },
        Command::Terminate { job } => match controller.terminate(&job).await {
            Ok(ids) => {
                print_list(
                    format,
                    "terminated",
                    ids.iter().map(|id| (id.clone(), String::new())),
                );
                (Exit::Success, None)
            }
            Err(err) => fail(err.outcome().exit(), err),
        },
        Command::Reap { older_than } => match controller.reap(older_than).await {
            Ok(reaped) => {
                print_list(format, "reaped", reaped.into_iter());
                (Exit::Success, None)
            }
            Err(err) => fail(err.outcome().exit(), err),
        },
        Command::Config { .. }
        | Command::Agent { .. }
        | Command::BenchEncrypt { .. }
        | Command::Restore(_)
        | Command::Completions { .. }
        | Command::Man { .. } => unreachable!("dispatched before the controller starts"),
    }
}

fn done(result: Result<(), RunError>) -> Dispatched {
    match result {
        Ok(()) => (Exit::Success, None),
        Err(err) => fail(err.outcome().exit(), err),
    }
}

/// The exit of a single job: its outcome's code; in human mode the
/// summary goes to stdout and the reason to stderr.
fn single(result: JobResult, format: OutputFormat) -> Dispatched {
    let exit = result.outcome.exit();
    if format == OutputFormat::Human {
        if let (Outcome::Succeeded, Some(manifest)) = (result.outcome, &result.manifest) {
            println!(
                "job {} succeeded in {}: {} object(s), {} bytes",
                result.job_id.as_deref().unwrap_or_default(),
                humantime::format_duration(Duration::from_secs(result.elapsed_secs)),
                result.objects,
                result.bytes
            );
            println!("manifest: {manifest}");
            if let Some(instance) = &result.instance_id {
                println!("instance {instance} terminated");
            }
        }
    }
    match (exit, result.reason) {
        (Exit::Success, _) => (exit, None),
        (_, reason) => (exit, Some(anyhow::anyhow!(reason.unwrap_or_default()))),
    }
}

/// With several jobs: success only if every job succeeded; otherwise the
/// code they share, or 4 (backup failed) when they differ.
pub fn combined_exit(results: &[JobResult]) -> Exit {
    let failures: Vec<Exit> = results
        .iter()
        .map(|r| r.outcome.exit())
        .filter(|e| *e != Exit::Success)
        .collect();
    match failures.split_first() {
        None => Exit::Success,
        Some((first, rest)) if rest.iter().all(|e| e == first) => *first,
        Some(_) => Exit::BackupFailed,
    }
}

fn print_rows(rows: &[crate::controller::JobStatus], format: OutputFormat) {
    if format == OutputFormat::Json {
        for row in rows {
            println!("{}", serde_json::to_string(row).expect("rows serialise"));
        }
        return;
    }
    println!(
        "{:<20} {:<38} {:<10} {:>10} {:>10}  {:<20} {:<13} UPDATED",
        "JOB", "JOB ID", "PHASE", "READ MiB", "UP MiB", "INSTANCE", "STATE"
    );
    for row in rows {
        let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
        let (job_id, phase, read, uploaded, updated) = match &row.status {
            Some(s) => (
                s.job_id.clone(),
                s.phase.as_str().to_owned(),
                mib(s.bytes_read),
                mib(s.bytes_uploaded),
                s.updated_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            ),
            None => {
                let id = row
                    .instance
                    .as_ref()
                    .and_then(|i| i.job_id.clone())
                    .unwrap_or_else(|| "-".into());
                (id, "-".into(), "-".into(), "-".into(), "-".into())
            }
        };
        let (instance, state) = match &row.instance {
            Some(i) => (i.instance_id.clone(), i.state_name.clone()),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<20} {:<38} {:<10} {:>10} {:>10}  {:<20} {:<13} {updated}",
            row.job, job_id, phase, read, uploaded, instance, state
        );
        if let Some(s) = row.status.as_ref().filter(|s| !s.message.is_empty()) {
            println!("{:<20} └ {}", "", s.message);
        }
    }
}

fn print_list(format: OutputFormat, verb: &str, items: impl Iterator<Item = (String, String)>) {
    let items: Vec<_> = items.collect();
    if format == OutputFormat::Json {
        let rows: Vec<_> = items
            .iter()
            .map(|(id, why)| serde_json::json!({ "instance_id": id, "reason": why }))
            .collect();
        println!("{}", serde_json::json!({ verb: rows }));
        return;
    }
    if items.is_empty() {
        println!("nothing {verb}");
    }
    for (id, why) in items {
        if why.is_empty() {
            println!("{verb} {id}");
        } else {
            println!("{verb} {id}: {why}");
        }
    }
}

fn print_config_summary(config: &Config) {
    println!("{}: ok", config.path.display());
    println!(
        "storage: s3://{}/{}",
        config.storage.bucket,
        config.key_prefix()
    );
    for job in config.jobs.values() {
        println!(
            "job {}: {} {}@{}:{}/{} on {}{}, max lifetime {}",
            job.name,
            job.engine.as_str(),
            job.user,
            job.host,
            job.port,
            job.database,
            job.instance_type,
            if job.spot { " (spot)" } else { "" },
            humantime::format_duration(job.max_lifetime)
        );
    }
}

/// Parses sizes such as `250GiB`, `1.5TB`, `1048576`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 250GiB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ))
        }
    };
    Ok((number * factor) as u64)
}

fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    let mut pages = vec![(command.get_name().to_owned(), command.clone())];
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = format!("backup-cloud-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut bytes = Vec::new();
        clap_mangen::Man::new(page).render(&mut bytes)?;
        std::fs::write(dir.join(format!("{name}.1")), bytes)?;
    }
    Ok(())
}

fn init_logging(default_level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5 TB").unwrap(), 1_500_000_000_000);
        assert!(parse_size("12 parsecs").is_err());
    }

    fn result(outcome: Outcome) -> JobResult {
        JobResult::without_backup("j", outcome, String::new())
    }

    #[test]
    fn the_combined_exit_reflects_every_job() {
        assert_eq!(combined_exit(&[result(Outcome::Succeeded)]), Exit::Success);
        assert_eq!(
            combined_exit(&[result(Outcome::Succeeded), result(Outcome::TimedOut)]),
            Exit::TimedOut
        );
        assert_eq!(
            combined_exit(&[result(Outcome::Failed), result(Outcome::TimedOut)]),
            Exit::BackupFailed
        );
    }
}
