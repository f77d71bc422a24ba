//! What people and schedulers see while jobs run.
//!
//! Every observable moment of a job is an [`Event`]. The human renderer
//! draws a live progress bar per job on a terminal (phase, bytes, rate,
//! ETA) and prints plain timestamped lines anywhere else; the JSON renderer
//! prints each event as one JSON object per line on stdout — a stable,
//! documented interface (see the README) for schedulers and CI.
//!
//! The operator commands' results (`status` and `list` rows, instances
//! ended, `config check`) are rendered here too, so `cli` only wires
//! commands and maps outcomes to exit codes.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Config, Source};
use crate::controller::report::Report;
pub use crate::controller::report::{JobResult, Outcome};
use crate::controller::JobStatus;
use crate::exit::Exit;
use crate::lifecycle::catalog::{Entry, LastCheck};
use crate::lifecycle::monitor::{self, JobHealth};
use crate::lifecycle::prune::{JobPrune, Removal};
use crate::restore::commands::Done;
use crate::restore::pipeline::{mb_per_s, Restored};
use crate::retention::Verdict;
use crate::schema::{Phase, Status};

/// `println!`, but a reader that closed the pipe early (`backup-cloud
/// backups | head`) is not an error: the rest is dropped, and the command
/// still ends with its own exit code. Any other failure to write is
/// reported on stderr.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(err) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if err.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("backup-cloud: cannot write to stdout: {err}");
            }
        }
    }};
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Progress bars on a terminal, timestamped lines elsewhere.
    Human,
    /// One JSON object per event on stdout.
    Json,
    /// `check` only: Prometheus text format (for node_exporter's
    /// textfile collector).
    Prometheus,
}

/// Everything a renderer is told.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    Launched {
        #[serde(with = "time::serde::rfc3339")]
        time: OffsetDateTime,
        job: &'a str,
        job_id: &'a str,
        instance_id: &'a str,
        ami_id: &'a str,
        instance_type: &'a str,
        spot: bool,
    },
    Progress {
        #[serde(with = "time::serde::rfc3339")]
        time: OffsetDateTime,
        job: &'a str,
        job_id: &'a str,
        phase: Phase,
        bytes_read: u64,
        bytes_uploaded: u64,
        bytes_expected: Option<u64>,
        message: &'a str,
    },
    Finished {
        #[serde(with = "time::serde::rfc3339")]
        time: OffsetDateTime,
        #[serde(flatten)]
        result: &'a JobResult,
    },
    Summary {
        #[serde(with = "time::serde::rfc3339")]
        time: OffsetDateTime,
        jobs: &'a [JobResult],
        exit_code: u8,
    },
}

/// Renders events; shared by every job of a run.
pub struct Reporter {
    format: OutputFormat,
    bars: Option<MultiProgress>,
    jobs: Mutex<HashMap<String, JobView>>,
}

/// What the human renderer remembers about a job between events.
struct JobView {
    bar: Option<ProgressBar>,
    first: Option<(Instant, u64)>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Reporter {
    /// A reporter for `format`; bars only when stderr is a terminal.
    pub fn new(format: OutputFormat) -> Reporter {
        let bars = (format == OutputFormat::Human && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter {
            format,
            bars,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// The final table of a multi-job run (human) or the summary event.
    pub fn summary(&self, results: &[JobResult], exit: Exit) {
        let event = Event::Summary {
            time: OffsetDateTime::now_utc(),
            jobs: results,
            exit_code: exit as u8,
        };
        if self.json(&event) {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:>4} {:>9} {:>12}  DETAIL",
            "JOB", "OUTCOME", "EXIT", "TIME", "BYTES"
        );
        for r in results {
            let detail = r.manifest.as_deref().or(r.reason.as_deref()).unwrap_or("");
            let _ = writeln!(
                out,
                "{:<24} {:<16} {:>4} {:>9} {:>12}  {detail}",
                r.job,
                r.outcome.word(),
                r.exit_code,
                humantime::format_duration(Duration::from_secs(r.elapsed_secs)).to_string(),
                r.bytes
            );
        }
    }

    /// What `run --job` and `launch` print on stdout besides the events:
    /// in human mode, a succeeded job's summary and manifest, or the job id
    /// of a detached launch (for scripts to capture). The reason of a
    /// failure is the exit's message, printed on stderr by `main`.
    pub fn single_result(&self, result: &JobResult) {
        if self.format != OutputFormat::Human {
            return;
        }
        let job_id = result.job_id.as_deref().unwrap_or_default();
        match (result.outcome, &result.manifest) {
            (Outcome::Succeeded, Some(manifest)) => {
                say!(
                    "job {job_id} succeeded in {}: {} object(s), {} bytes",
                    humantime::format_duration(Duration::from_secs(result.elapsed_secs)),
                    result.objects,
                    result.bytes
                );
                say!("manifest: {manifest}");
                if let Some(instance) = &result.instance_id {
                    say!("instance {instance} terminated");
                }
            }
            (Outcome::Detached, _) => say!("{job_id}"),
            _ => {}
        }
    }

    /// The rows of `status` and `list`: a table, or one JSON object per row.
    pub fn job_statuses(&self, rows: &[JobStatus]) {
        if self.format == OutputFormat::Json {
            for row in rows {
                say!("{}", serde_json::to_string(row).expect("rows serialise"));
            }
            return;
        }
        say!(
            "{:<20} {:<38} {:<10} {:>10} {:>10}  {:<20} {:<13} UPDATED",
            "JOB",
            "JOB ID",
            "PHASE",
            "READ MiB",
            "UP MiB",
            "INSTANCE",
            "STATE"
        );
        for row in rows {
            let mib = |b: u64| format!("{:.1}", b as f64 / MIB);
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
            say!(
                "{:<20} {:<38} {:<10} {:>10} {:>10}  {:<20} {:<13} {updated}",
                row.job,
                job_id,
                phase,
                read,
                uploaded,
                instance,
                state
            );
            if let Some(s) = row.status.as_ref().filter(|s| !s.message.is_empty()) {
                say!("{:<20} └ {}", "", s.message);
            }
        }
    }

    /// The catalog: a table, newest first per job, or one JSON object
    /// per backup ([`Entry`]'s fields).
    pub fn backups(&self, entries: &[Entry]) {
        if self.format != OutputFormat::Human {
            for entry in entries {
                say!(
                    "{}",
                    serde_json::to_string(entry).expect("entries serialise")
                );
            }
            return;
        }
        say!(
            "{:<20} {:<17} {:<11} {:>10} {:>7}  {:<18} {:<18} {:<18} LOCKED UNTIL",
            "JOB",
            "TIMESTAMP",
            "STATE",
            "MiB",
            "OBJECTS",
            "FORMAT",
            "VERIFIED",
            "DRILLED"
        );
        for e in entries {
            say!(
                "{:<20} {:<17} {:<11} {:>10.1} {:>7}  {:<18} {:<18} {:<18} {}",
                e.job,
                e.timestamp,
                e.state.as_str(),
                e.size_bytes as f64 / MIB,
                e.objects,
                e.format.as_deref().unwrap_or("-"),
                last_check(e.last_verify.as_ref()),
                last_check(e.last_drill.as_ref()),
                e.locked_until
                    .map_or("-".to_owned(), |t| t.date().to_string()),
            );
        }
        if entries.is_empty() {
            say!("(no backups)");
        }
    }

    /// `prune`'s plan (and outcome): per backup KEEP or REMOVE with the
    /// reasons, or one JSON object per backup.
    pub fn pruned(&self, jobs: &[JobPrune], removing: bool) {
        for job in jobs {
            for planned in &job.backups {
                let (action, reasons, warning) = match &planned.verdict {
                    Verdict::Keep(reasons) => ("keep", reasons.clone(), false),
                    Verdict::Remove { reason, warning } => {
                        ("remove", vec![reason.clone()], *warning)
                    }
                };
                let outcome = planned.removal.as_ref().map(|removal| match removal {
                    Removal::Removed { versions, uploads } => {
                        format!("removed ({versions} object version(s), {uploads} upload(s) aborted)")
                    }
                    Removal::Failed(err) => format!("NOT removed: {err}"),
                    Removal::Retained { until, left } => format!(
                        "retained until {} by S3 Object Lock ({left} object version(s)); a later prune removes it",
                        until.map_or("a date S3 did not give".to_owned(), |u| u.date().to_string())
                    ),
                });
                if self.format != OutputFormat::Human {
                    say!(
                        "{}",
                        serde_json::json!({
                            "job": job.job,
                            "timestamp": planned.entry.timestamp,
                            "location": planned.entry.location,
                            "state": planned.entry.state,
                            "action": action,
                            "reasons": reasons,
                            "warning": warning,
                            "outcome": outcome,
                        })
                    );
                    continue;
                }
                say!(
                    "{:<6} {:<20} {:<17} {:<11} {}{}",
                    action.to_uppercase(),
                    job.job,
                    planned.entry.timestamp,
                    planned.entry.state.as_str(),
                    reasons.join("; "),
                    if warning {
                        "  WARNING: the job's last complete backup"
                    } else {
                        ""
                    }
                );
                if let Some(outcome) = outcome {
                    say!("{:<6} └ {outcome}", "");
                }
            }
        }
        if self.format == OutputFormat::Human {
            let removals = jobs
                .iter()
                .flat_map(|j| &j.backups)
                .filter(|p| p.verdict.removes())
                .count();
            if !removing && removals > 0 {
                say!("{removals} backup(s) would be removed; run again with --yes to remove them");
            } else if removals == 0 {
                say!("nothing to remove");
            }
        }
    }

    /// `check`'s findings: one line per problem (or that all is well), one
    /// JSON object per job, or Prometheus gauges.
    pub fn health(&self, health: &[JobHealth]) {
        match self.format {
            OutputFormat::Prometheus => say!("{}", monitor::prometheus(health).trim_end()),
            OutputFormat::Json => {
                for job in health {
                    say!("{}", serde_json::to_string(job).expect("health serialises"));
                }
            }
            OutputFormat::Human => {
                for job in health {
                    for problem in &job.problems {
                        say!("{}: {problem}", job.job);
                    }
                }
                let problems: usize = health.iter().map(|h| h.problems.len()).sum();
                if problems == 0 {
                    say!(
                        "all {} job(s) backed up and proven within their limits",
                        health.len()
                    );
                }
            }
        }
    }

    /// What a restore-side command did: its lines (`ok`/`BAD` per object,
    /// then a summary), or one JSON object whose `event` names the command
    /// (`verified`, `wrote`, `restored`/`decrypted`, `drill`, `exported`),
    /// byte counts in bytes and durations in seconds.
    pub fn restore_done(&self, done: &Done) {
        if self.format == OutputFormat::Json {
            say!("{}", restore_json(done));
            return;
        }
        match done {
            Done::Verified { location, report } => {
                for name in &report.good {
                    say!("ok {name}");
                }
                for problem in &report.problems {
                    say!("BAD {}: {}", problem.object, problem.problem);
                }
                if report.problems.is_empty() {
                    say!(
                        "verified {location}: {} object(s), {} bytes, {:.1} MB/s",
                        report.good.len(),
                        report.bytes,
                        mb_per_s(report.bytes, report.elapsed)
                    );
                }
            }
            Done::Wrote { path, bytes } => say!("wrote {} ({bytes} bytes)", path.display()),
            Done::Restored { verb, restored } => print_restored(verb, restored),
            Done::Drilled { report, kept } => {
                print_restored("drill restored", &report.restored);
                for problem in &report.problems {
                    say!("BAD {problem}");
                }
                if let Some(note) = report.note {
                    say!("note: {note}");
                }
                if report.problems.is_empty() {
                    say!(
                        "drill passed: {} table(s), {} row(s) match the dump{}",
                        report.tables,
                        report.rows,
                        if *kept {
                            format!("; scratch database {} kept", report.scratch_database)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Done::Exported { to, exported } => {
                for name in &exported.already_present {
                    say!("present {name}");
                }
                for name in &exported.copied {
                    say!("copied {name}");
                }
                say!(
                    "exported to {}: {} file(s) copied ({} bytes), {} already present and verified",
                    to.display(),
                    exported.copied.len(),
                    exported.bytes_copied,
                    exported.already_present.len()
                );
            }
        }
    }

    /// The instances `terminate` or `reap` (the `verb`) ended, each with
    /// why (may be empty): a line each, or one JSON object.
    pub fn instances(&self, verb: &str, items: &[(String, String)]) {
        if self.format == OutputFormat::Json {
            let rows: Vec<_> = items
                .iter()
                .map(|(id, why)| serde_json::json!({ "instance_id": id, "reason": why }))
                .collect();
            say!("{}", serde_json::json!({ verb: rows }));
            return;
        }
        if items.is_empty() {
            say!("nothing {verb}");
        }
        for (id, why) in items {
            if why.is_empty() {
                say!("{verb} {id}");
            } else {
                say!("{verb} {id}: {why}");
            }
        }
    }

    /// What `config check` prints: the file, the storage and each job.
    pub fn config_summary(&self, config: &Config) {
        say!("{}: ok", config.path.display());
        say!(
            "storage: s3://{}/{}",
            config.storage.bucket,
            config.key_prefix()
        );
        for job in config.jobs.values() {
            let from = match &job.source {
                Source::Live(live) => format!("{}@{}:{}", live.user, live.host, live.port),
                Source::Rds(rds) => rds.describe(),
            };
            say!(
                "job {}: {} {from}/{} on {}{}, max lifetime {}",
                job.name,
                job.engine.as_str(),
                job.database,
                job.instance_type,
                if job.spot { " (spot)" } else { "" },
                humantime::format_duration(job.max_lifetime)
            );
        }
    }

    /// Prints a JSON event when the format is JSON; returns whether it did.
    fn json(&self, event: &Event<'_>) -> bool {
        if self.format != OutputFormat::Json {
            return false;
        }
        let line = serde_json::to_string(event).expect("events serialise");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        true
    }

    /// A human line on stderr: above the bars on a terminal, timestamped
    /// elsewhere.
    fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => {
                let stamp = OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                eprintln!("{stamp} {text}");
            }
        }
    }
}

impl Report for Reporter {
    fn launched(
        &self,
        job: &str,
        job_id: &str,
        instance_id: &str,
        ami_id: &str,
        instance_type: &str,
        spot: bool,
    ) {
        let event = Event::Launched {
            time: OffsetDateTime::now_utc(),
            job,
            job_id,
            instance_id,
            ami_id,
            instance_type,
            spot,
        };
        if self.json(&event) {
            return;
        }
        let market = if spot { "spot" } else { "on-demand" };
        self.line(&format!(
            "{job}: launched {job_id} on {instance_id} ({instance_type} {market}, {ami_id})"
        ));
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} {spinner} {msg:<10} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_prefix(job.to_owned());
            bar.set_message("booting");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        self.jobs
            .lock()
            .expect("reporter lock")
            .insert(job_id.to_owned(), JobView { bar, first: None });
    }

    fn progress(&self, job: &str, status: &Status) {
        let event = Event::Progress {
            time: OffsetDateTime::now_utc(),
            job,
            job_id: &status.job_id,
            phase: status.phase,
            bytes_read: status.bytes_read,
            bytes_uploaded: status.bytes_uploaded,
            bytes_expected: status.bytes_expected,
            message: &status.message,
        };
        if self.json(&event) {
            return;
        }
        let mut jobs = self.jobs.lock().expect("reporter lock");
        let view = jobs.entry(status.job_id.clone()).or_insert(JobView {
            bar: None,
            first: None,
        });
        if let Some(bar) = &view.bar {
            if let Some(expected) = status.bytes_expected {
                bar.set_length(expected.max(status.bytes_read));
            }
            bar.set_position(status.bytes_read);
            bar.set_message(status.phase.as_str());
            return;
        }
        let now = Instant::now();
        let (since, base) = *view.first.get_or_insert((now, status.bytes_read));
        let elapsed = now.duration_since(since).as_secs_f64();
        let rate = (elapsed > 0.5)
            .then(|| (status.bytes_read - base.min(status.bytes_read)) as f64 / elapsed);
        drop(jobs);
        self.line(&format!("{job}: {}", describe_progress(status, rate)));
    }

    fn finished(&self, result: &JobResult) {
        let event = Event::Finished {
            time: OffsetDateTime::now_utc(),
            result,
        };
        if let Some(view) = result
            .job_id
            .as_ref()
            .and_then(|id| self.jobs.lock().expect("reporter lock").remove(id))
        {
            if let Some(bar) = view.bar {
                bar.finish_and_clear();
            }
        }
        if self.json(&event) {
            return;
        }
        let text = match (&result.outcome, &result.reason) {
            (Outcome::Succeeded, _) => format!(
                "job {} succeeded in {}: {} object(s), {} bytes",
                result.job_id.as_deref().unwrap_or(&result.job),
                humantime::format_duration(Duration::from_secs(result.elapsed_secs)),
                result.objects,
                result.bytes
            ),
            (outcome, reason) => format!(
                "job {} {}: {}",
                result.job_id.as_deref().unwrap_or(&result.job),
                outcome.word(),
                reason.as_deref().unwrap_or("no reason given")
            ),
        };
        self.line(&format!("{}: {text}", result.job));
    }
}

/// A catalog cell for a check: `2026-12-01 passed`, or `never`.
fn last_check(check: Option<&LastCheck>) -> String {
    check.map_or("never".to_owned(), |c| {
        format!(
            "{} {}",
            c.at.date(),
            match c.result {
                crate::schema::CheckResult::Passed => "passed",
                crate::schema::CheckResult::Failed => "FAILED",
            }
        )
    })
}

/// One line of progress: phase, bytes, share of the expected size, rate and
/// ETA when they can be known.
pub fn describe_progress(status: &Status, rate_bytes_per_sec: Option<f64>) -> String {
    let mut text = format!(
        "{} {:.1} MiB read, {:.1} MiB uploaded",
        status.phase.as_str(),
        status.bytes_read as f64 / MIB,
        status.bytes_uploaded as f64 / MIB
    );
    if status.phase.is_terminal() {
        // Share, rate and ETA describe a job in flight.
    } else if let Some(expected) = status.bytes_expected.filter(|e| *e > 0) {
        let share = (status.bytes_read as f64 / expected as f64 * 100.0).min(100.0);
        text.push_str(&format!(
            " of ~{:.1} MiB ({share:.0}%)",
            expected as f64 / MIB
        ));
        if let Some(rate) = rate_bytes_per_sec.filter(|r| *r > 0.0) {
            let remaining = expected.saturating_sub(status.bytes_read) as f64 / rate;
            text.push_str(&format!(
                ", {:.1} MiB/s, ETA {}",
                rate / MIB,
                humantime::format_duration(Duration::from_secs(remaining as u64))
            ));
        }
    } else if let Some(rate) = rate_bytes_per_sec.filter(|r| *r > 0.0) {
        text.push_str(&format!(", {:.1} MiB/s", rate / MIB));
    }
    if !status.message.is_empty() {
        text.push_str(" — ");
        text.push_str(&status.message);
    }
    text
}

/// One restore-side result as the JSON object [`Reporter::restore_done`]
/// prints.
fn restore_json(done: &Done) -> serde_json::Value {
    use serde_json::json;
    let restored = |r: &Restored| {
        json!({
            "objects": r.objects,
            "ciphertext_bytes": r.ciphertext_bytes,
            "plaintext_bytes": r.plaintext_bytes,
            "seconds": r.elapsed.as_secs_f64(),
            "mb_per_s": mb_per_s(r.plaintext_bytes, r.elapsed),
        })
    };
    match done {
        Done::Verified { location, report } => json!({
            "event": "verified",
            "backup": location,
            "passed": report.problems.is_empty(),
            "good": report.good,
            "problems": report.problems.iter().map(|p| json!({
                "object": p.object,
                "problem": p.problem,
            })).collect::<Vec<_>>(),
            "bytes": report.bytes,
            "seconds": report.elapsed.as_secs_f64(),
        }),
        Done::Wrote { path, bytes } => json!({
            "event": "wrote",
            "path": path.display().to_string(),
            "bytes": bytes,
        }),
        Done::Restored { verb, restored: r } => {
            let mut value = restored(r);
            value["event"] = json!(verb);
            value
        }
        Done::Drilled { report, kept } => json!({
            "event": "drill",
            "passed": report.problems.is_empty(),
            "tables": report.tables,
            "rows": report.rows,
            "problems": report.problems,
            "note": report.note,
            "restored": restored(&report.restored),
            "scratch_database": report.scratch_database,
            "kept": kept,
        }),
        Done::Exported { to, exported } => json!({
            "event": "exported",
            "to": to.display().to_string(),
            "copied": exported.copied,
            "already_present": exported.already_present,
            "bytes_copied": exported.bytes_copied,
        }),
    }
}

fn print_restored(verb: &str, restored: &Restored) {
    say!(
        "{verb} {} object(s): {} bytes encrypted, {} bytes restored in {:.1}s ({:.1} MB/s)",
        restored.objects,
        restored.ciphertext_bytes,
        restored.plaintext_bytes,
        restored.elapsed.as_secs_f64(),
        mb_per_s(restored.plaintext_bytes, restored.elapsed)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_is_one_json_object_with_its_verdict_and_figures() {
        let done = Done::Drilled {
            report: crate::restore::drill::DrillReport {
                restored: Restored {
                    objects: 1,
                    ciphertext_bytes: 10,
                    plaintext_bytes: 2_000_000,
                    elapsed: Duration::from_secs(2),
                },
                tables: 3,
                rows: 40,
                problems: vec!["orders: 39 rows, the dump had 40".to_owned()],
                scratch_database: "backup_cloud_drill_1".to_owned(),
                note: None,
            },
            kept: false,
        };
        let value = restore_json(&done);
        assert_eq!(value["event"], "drill");
        assert_eq!(value["passed"], false);
        assert_eq!(value["tables"], 3);
        assert_eq!(value["problems"][0], "orders: 39 rows, the dump had 40");
        assert_eq!(value["restored"]["plaintext_bytes"], 2_000_000);
        assert_eq!(value["restored"]["mb_per_s"], 1.0);
        assert!(done.failure().is_some(), "a drill with problems fails");
    }

    #[test]
    fn progress_lines_show_share_rate_and_eta_when_known() {
        let mut status = Status::new("j-1", Phase::Dumping);
        status.bytes_read = 50 * 1024 * 1024;
        status.bytes_expected = Some(100 * 1024 * 1024);
        let line = describe_progress(&status, Some(10.0 * MIB));
        assert!(line.starts_with("dumping 50.0 MiB read"), "{line}");
        assert!(line.contains("(50%)"), "{line}");
        assert!(line.contains("10.0 MiB/s, ETA 5s"), "{line}");
        status.bytes_expected = None;
        let line = describe_progress(&status, None);
        assert!(!line.contains("ETA"), "{line}");
        status.bytes_expected = Some(100 * 1024 * 1024);
        status.phase = Phase::Succeeded;
        let line = describe_progress(&status, Some(10.0 * MIB));
        assert!(!line.contains("ETA") && !line.contains('%'), "{line}");
    }

    #[test]
    fn events_serialise_with_a_stable_shape() {
        let result = JobResult {
            job: "orders".into(),
            job_id: Some("orders-1".into()),
            instance_id: Some("i-1".into()),
            outcome: Outcome::Succeeded,
            exit_code: 0,
            reason: None,
            manifest: Some("s3://b/k".into()),
            objects: 1,
            bytes: 10,
            elapsed_secs: 3,
        };
        let event = Event::Finished {
            time: OffsetDateTime::UNIX_EPOCH,
            result: &result,
        };
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "finished");
        assert_eq!(json["outcome"], "succeeded");
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["manifest"], "s3://b/k");
        assert_eq!(json["time"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn every_outcome_maps_to_its_documented_exit_code() {
        assert_eq!(Outcome::Succeeded.exit() as u8, 0);
        assert_eq!(Outcome::ConfigError.exit() as u8, 2);
        assert_eq!(Outcome::LaunchFailed.exit() as u8, 3);
        assert_eq!(Outcome::Failed.exit() as u8, 4);
        assert_eq!(Outcome::TimedOut.exit() as u8, 5);
        assert_eq!(Outcome::AlreadyRunning.exit() as u8, 6);
        assert_eq!(Outcome::Interrupted.exit() as u8, 130);
    }
}
