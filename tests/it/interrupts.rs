//! Ctrl-C, end to end: only the commands that watch a job (`run`, `wait`)
//! handle it; every other command stops at once, as any Unix command does.
//! Under `run --all`, Ctrl-C also stops queued jobs from being launched.
//! Real LocalStack, the instance simulator and the real binary throughout.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::faultproxy::FaultProxy;
use crate::common::*;

const SIGINT: i32 = 2;

/// `backup-cloud ARGS --config <fixture config>`, its output piped.
fn start(fixture: &Fixture, args: &[&str]) -> Child {
    let mut command = fixture.command(args);
    command
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Ctrl-C as a terminal delivers it: a test run started in the
    // background of a shell (`make test &`) ignores SIGINT, and its
    // children would inherit that
    // SAFETY: signal() is async-signal-safe, as pre_exec requires
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    command.spawn().unwrap()
}

fn interrupt(child: &Child) {
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
}

/// Whether the process ended the way an interrupted command does: killed
/// by SIGINT (the shell reports 130), or exiting with 130 itself.
fn ended_interrupted(status: ExitStatus) -> bool {
    status.signal() == Some(SIGINT) || status.code() == Some(130)
}

/// Waits at most `limit` for `child` to exit; kills it if it does not.
fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// `status` and `list` never watch a job: Ctrl-C must stop them at once,
/// not print the terminate-or-detach prompt and carry on.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_a_command_that_watches_nothing() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let proxy = FaultProxy::start(&endpoint());
    let mut config = fixture.config(fixture.postgres_job("unused"));
    config.aws.endpoint_url = proxy.url();
    fixture.write(&config);
    // Every AWS call hangs for a while: the command is still running when
    // Ctrl-C comes, its signal handling (if any) long in place.
    proxy.add_rule(serde_json::json!({"action": "delay", "seconds": 30, "count": -1}));

    for command in [vec!["status"], vec!["list"]] {
        let before = proxy.log().len();
        let mut child = start(&fixture, &command);
        let deadline = Instant::now() + Duration::from_secs(20);
        while proxy.log().len() == before {
            assert!(Instant::now() < deadline, "{command:?} never called AWS");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        interrupt(&child);
        let status = exit_within(&mut child, Duration::from_secs(10));
        let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
        assert!(
            status.is_some_and(ended_interrupted),
            "{command:?} after Ctrl-C: {status:?}\n{stderr}"
        );
        assert!(
            !stderr.contains("terminate the backup instance"),
            "{stderr}"
        );
    }
}

/// `run --all` with one job at a time: after Ctrl-C the running job is
/// ended and the queued ones are reported interrupted, never launched.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_under_run_all_launches_no_queued_job() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("intr_all_");
    create_sample_database(&database, 100);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let names: Vec<String> = (0..3).map(|i| format!("{}-{i}", fixture.job)).collect();
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.jobs = names
        .iter()
        .map(|name| (name.clone(), fixture.postgres_job(&database)))
        .collect();
    // A 30 s poll interval keeps the first job's watch (and so its slot)
    // open long after its launch, whatever the job itself does: nothing
    // but Ctrl-C can free the slot within the test's time.
    config.status.poll_interval = Duration::from_secs(30);
    fixture.write(&config);

    let mut run = start(
        &fixture,
        &["run", "--all", "--max-concurrent", "1", "--output", "json"],
    );
    let mut events = Vec::new();
    let mut stdout = BufReader::new(run.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "run --all ended before launching: {events:?}"
        );
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        let launched = event["event"] == "launched";
        events.push(event);
        if launched {
            break;
        }
    }
    interrupt(&run);
    let status = exit_within(&mut run, Duration::from_secs(120));
    for line in stdout.lines() {
        events.push(serde_json::from_str(&line.unwrap()).unwrap());
    }
    let stderr = std::io::read_to_string(run.stderr.take().unwrap()).unwrap();
    let shown = format!("{status:?}\n{events:#?}\n{stderr}");

    assert_eq!(status.and_then(|s| s.code()), Some(130), "{shown}");
    assert_eq!(
        events.iter().filter(|e| e["event"] == "launched").count(),
        1,
        "a queued job was launched after Ctrl-C: {shown}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary", "{shown}");
    let jobs = summary["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{shown}");
    assert!(
        jobs.iter().all(|j| j["outcome"] == "interrupted"),
        "{shown}"
    );
    let instances = fixture.instances_of(&names).await;
    assert_eq!(instances.len(), 1, "{instances:#?}");
    let state = instances[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str());
    assert!(
        matches!(state, Some("terminated" | "shutting-down")),
        "the launched job's instance was left {state:?}"
    );
}
