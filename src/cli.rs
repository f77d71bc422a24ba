//! The command line: clap definitions, logging set-up, and the mapping from
//! outcomes to the exit codes schedulers rely on (documented in the README).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::controller::{Controller, Interrupts, LaunchOptions, RunError};
use crate::exit::Exit;
use crate::output::{JobResult, OutputFormat, Reporter};

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
        #[command(flatten)]
        agent: AgentBinaryArg,
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
    /// List every backup of every job (or one), newest first: state,
    /// size, format, recipients, and when it was last verified and
    /// drilled (`--output json`: one object per backup).
    Backups {
        #[arg(long, short)]
        job: Option<String>,
    },
    /// Show which backups the retention rules (`[retention]`) no longer
    /// keep, and why; remove them with --yes (needs the role of
    /// policies/prune.json).
    Prune {
        #[arg(long, short)]
        job: Option<String>,
        /// Remove them (otherwise only show the plan).
        #[arg(long)]
        yes: bool,
    },
    /// Exit 0 when every job's newest complete backup is younger than its
    /// max_age_alert and it passed a verify and a drill within
    /// verify_every and drill_every; otherwise 10, 11 or 12 with one line
    /// per problem (`--output prometheus` for node_exporter).
    Check {
        #[arg(long, short)]
        job: Option<String>,
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
        /// Instead of running the backup, put into the job's status that
        /// the instance failed while WHAT (user-data's set-up, or an
        /// agent that died before reporting); exits 4 once it is there.
        #[arg(long, value_name = "WHAT")]
        report_failure: Option<String>,
        /// With --report-failure: the set-up's output, whose last lines
        /// the status quotes.
        #[arg(long, value_name = "FILE", requires = "report_failure")]
        set_up_log: Option<PathBuf>,
    },
    /// Check that this executable can run the agent on this machine: its
    /// architecture, the GPGME linked into it and the gpg that GPGME
    /// drives (for pre-baked AMIs, and `make dist`'s agents).
    SelfCheck,
    /// Show what the agent executable FILE needs of an instance: its
    /// architecture, its newest glibc symbol version and the AMI families
    /// whose glibc has it; exits 3 when no AMI could run it as it is (a
    /// shared library beyond glibc's, or not a Linux executable).
    InspectAgent { file: PathBuf },
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
        // One convention for every error: its message is whole, naming
        // its cause itself (the cause is also its `source`, for code that
        // inspects it), so only the outermost message is printed; the
        // chain would print every cause twice.
        eprintln!("backup-cloud: {error}");
    }
    exit.into()
}

type Dispatched = (Exit, Option<anyhow::Error>);

fn fail(exit: Exit, error: impl Into<anyhow::Error>) -> Dispatched {
    (exit, Some(error.into()))
}

/// An agent's failure: 4 when the job's status carries it, 1 when it does
/// not (user-data then says what it can).
fn agent_failed(err: crate::agent::AgentError) -> Dispatched {
    match err {
        crate::agent::AgentError::Unreported(_) => fail(Exit::Internal, err),
        err => fail(Exit::BackupFailed, err),
    }
}

async fn dispatch(cli: Cli) -> Dispatched {
    match cli.command {
        _ if cli.output == OutputFormat::Prometheus
            && !matches!(cli.command, Command::Check { .. }) =>
        {
            fail(
                Exit::Config,
                anyhow::anyhow!("--output prometheus is for `check` only; use human or json"),
            )
        }
        Command::Agent {
            spec_bucket,
            spec_key,
            report_failure: None,
            ..
        } => match crate::agent::run(&spec_bucket, &spec_key).await {
            Ok(()) => (Exit::Success, None),
            Err(err) => agent_failed(err),
        },
        Command::Agent {
            spec_bucket,
            spec_key,
            report_failure: Some(what),
            set_up_log,
        } => agent_failed(
            crate::agent::report_failure(&spec_bucket, &spec_key, &what, set_up_log.as_deref())
                .await,
        ),
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
            match crate::restore::commands::run(command, cli.config.as_deref()).await {
                Ok(done) => {
                    Reporter::new(cli.output).restore_done(&done);
                    match done.failure() {
                        None => (Exit::Success, None),
                        Some(err) => fail(err.exit(), err),
                    }
                }
                Err(err) => fail(err.exit(), err),
            }
        }
        Command::SelfCheck => match crate::openpgp::self_check() {
            Ok(report) => {
                println!(
                    "backup-cloud {} for {}: GPGME {}, gpg {} {}",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::ARCH,
                    report.gpgme,
                    report.gpg.display(),
                    report.gpg_version
                );
                (Exit::Success, None)
            }
            Err(err) => fail(Exit::Internal, err),
        },
        Command::InspectAgent { file } => match crate::controller::launch::AgentBinary::read(&file)
        {
            Ok(agent) => {
                let families = crate::controller::platform::runs_on(&agent.platform);
                println!(
                    "{}: {} agent, {}; runs on {}",
                    file.display(),
                    agent.platform.arch.ec2_name(),
                    agent
                        .platform
                        .glibc
                        .map_or("no glibc needed".to_owned(), |(major, minor)| {
                            format!("needs glibc {major}.{minor}")
                        }),
                    if families.is_empty() {
                        "none of the AMI families of known glibc".to_owned()
                    } else {
                        families.join(", ")
                    }
                );
                (Exit::Success, None)
            }
            Err(err) => fail(Exit::Launch, err),
        },
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
        command @ (Command::Backups { .. } | Command::Prune { .. } | Command::Check { .. }) => {
            let config = match load_config(cli.config.as_deref()) {
                Ok(config) => config,
                Err(err) => return fail(Exit::Config, err),
            };
            lifecycle_command(command, &config, &Reporter::new(cli.output)).await
        }
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

/// Wires `backups`, `prune` and `check`: runs it, renders its result,
/// maps it to an exit code.
async fn lifecycle_command(command: Command, config: &Config, reporter: &Reporter) -> Dispatched {
    use crate::lifecycle;
    let outcome = match command {
        Command::Backups { job } => {
            lifecycle::backups(config, job.as_deref())
                .await
                .map(|entries| {
                    reporter.backups(&entries);
                    Exit::Success
                })
        }
        Command::Prune { job, yes } => match lifecycle::prune(config, job.as_deref(), yes).await {
            Ok(pruned) => {
                reporter.pruned(&pruned, yes);
                if let Some((count, first)) = lifecycle::prune::failures(&pruned) {
                    return fail(
                        Exit::Internal,
                        anyhow::anyhow!(
                            "{count} backup(s) could not be removed; the first: {first}"
                        ),
                    );
                }
                Ok(Exit::Success)
            }
            Err(err) => Err(err),
        },
        Command::Check { job } => lifecycle::check(config, job.as_deref())
            .await
            .map(|health| {
                reporter.health(&health);
                lifecycle::monitor::exit(&health)
            }),
        _ => unreachable!("only the lifecycle commands are dispatched here"),
    };
    match outcome {
        Ok(exit) => (exit, None),
        Err(err) => fail(err.exit(), err),
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let path = path.ok_or_else(|| {
        anyhow::anyhow!("no configuration file: pass --config FILE or set BACKUP_CLOUD_CONFIG")
    })?;
    Ok(Config::load(path)?)
}

/// Wires a controller command: builds the controller, runs the command,
/// has the reporter render its result and maps it to an exit code.
async fn controller_command(
    command: Command,
    config: Config,
    reporter: Arc<Reporter>,
) -> Dispatched {
    if let Command::Config {
        command: ConfigCommand::Check,
    } = command
    {
        reporter.config_summary(&config);
        return (Exit::Success, None);
    }
    // Only the commands that watch jobs have anything to ask on Ctrl-C;
    // for the others it keeps its usual meaning: stop now.
    let interrupts = match command {
        Command::Run { dry_run: false, .. } | Command::Wait { .. } => {
            Interrupts::listen(config.timeouts.interrupt_prompt)
        }
        _ => Interrupts::unhandled(),
    };
    let controller = Arc::new(Controller::new(config, Arc::clone(&reporter), interrupts).await);
    match command {
        Command::Run {
            dry_run: true,
            job: Some(job),
            agent,
            ..
        } => shown(
            controller.plan(&job, None, agent.agent_binary).await,
            |()| {},
        ),
        Command::Plan {
            job,
            database_size,
            agent,
        } => shown(
            controller
                .plan(&job, database_size, agent.agent_binary)
                .await,
            |()| {},
        ),
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
                single(&reporter, controller.run_job(&job, &options).await)
            }
        }
        Command::Launch { job, agent } => {
            let options = LaunchOptions {
                agent_binary: agent.agent_binary,
                attach: false,
                detach: true,
            };
            single(&reporter, controller.run_job(&job, &options).await)
        }
        Command::Wait { job } => single(&reporter, controller.wait(&job).await),
        Command::Status { job } => shown(controller.status(job.as_deref()).await, |rows| {
            reporter.job_statuses(rows)
        }),
        Command::List => shown(controller.list().await, |rows| reporter.job_statuses(rows)),
        Command::Terminate { job } => shown(controller.terminate(&job).await, |ids| {
            let ids: Vec<_> = ids.iter().map(|id| (id.clone(), String::new())).collect();
            reporter.instances("terminated", &ids)
        }),
        Command::Reap { older_than } => shown(controller.reap(older_than).await, |reaped| {
            reporter.instances("reaped", reaped)
        }),
        Command::Config { .. }
        | Command::Backups { .. }
        | Command::Prune { .. }
        | Command::Check { .. }
        | Command::Agent { .. }
        | Command::BenchEncrypt { .. }
        | Command::Restore(_)
        | Command::Completions { .. }
        | Command::SelfCheck
        | Command::InspectAgent { .. }
        | Command::Man { .. } => unreachable!("dispatched before the controller starts"),
    }
}

/// The exit of an operator command: success after `render` shows its
/// result, or the error's code and message.
fn shown<T>(result: Result<T, RunError>, render: impl FnOnce(&T)) -> Dispatched {
    match result {
        Ok(value) => {
            render(&value);
            (Exit::Success, None)
        }
        Err(err) => fail(err.outcome().exit(), err),
    }
}

/// The exit of a single job: its outcome's code, after the reporter has
/// shown the result; the reason goes to stderr.
fn single(reporter: &Reporter, result: JobResult) -> Dispatched {
    reporter.single_result(&result);
    match (result.outcome.exit(), result.reason) {
        (Exit::Success, _) => (Exit::Success, None),
        (exit, reason) => (exit, Some(anyhow::anyhow!(reason.unwrap_or_default()))),
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
    use crate::output::Outcome;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The agent's two command lines as user-data writes them.
    #[test]
    fn the_user_data_s_agent_commands_parse() {
        let script = include_str!("../userdata-templates/user-data.sh");
        for flag in ["--report-failure \"$what\"", "--set-up-log \"$set_up_log\""] {
            assert!(script.contains(flag), "{flag}");
        }
        let agent = |extra: &[&str]| {
            let base = [
                "backup-cloud",
                "agent",
                "--spec-bucket",
                "b",
                "--spec-key",
                "k",
            ];
            Cli::try_parse_from(base.iter().chain(extra))
        };
        let cli = agent(&[
            "--report-failure",
            "installing (exit 100)",
            "--set-up-log",
            "/tmp/set-up.log",
        ])
        .unwrap();
        let Command::Agent {
            report_failure,
            set_up_log,
            ..
        } = cli.command
        else {
            panic!("not the agent");
        };
        assert_eq!(report_failure.as_deref(), Some("installing (exit 100)"));
        assert_eq!(set_up_log, Some(PathBuf::from("/tmp/set-up.log")));
        assert!(
            agent(&["--set-up-log", "/f"]).is_err(),
            "a set-up log without a failure to report is refused"
        );
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
