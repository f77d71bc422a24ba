//! End to end, the operator's and the scheduler's commands: detached
//! launch → status → wait, many jobs at once with a concurrency cap,
//! single-flight with recovery, reaping an orphan, JSON output, and every
//! documented exit code from a real scenario. Real LocalStack, real
//! PostgreSQL, the instance simulator and the real binary throughout.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::config::{Job, PostgresFormat};
use crate::common::faultproxy::FaultProxy;
use crate::common::*;

/// Holds an ACCESS EXCLUSIVE lock on a table in an open transaction, so a
/// backup of that database blocks in `pg_dump` until [`TableLock::release`]:
/// a job that stays running for as long as a test needs.
struct TableLock {
    psql: Child,
}

impl TableLock {
    fn hold(database: &str, table: &str) -> TableLock {
        let mut psql = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres dbname={database}",
                pg_port()
            ))
            .env("PGPASSWORD", PG_ADMIN_PASSWORD)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = psql.stdin.as_mut().unwrap();
        writeln!(stdin, "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;").unwrap();
        stdin.flush().unwrap();
        // Wait until the lock is visible to other sessions.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let held = crate::common::psql(
                database,
                &format!(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                     WHERE c.relname = '{table}' AND l.mode = 'AccessExclusiveLock' AND l.granted"
                ),
            );
            if held.trim() == "1" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the table lock was never granted"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        TableLock { psql }
    }

    fn release(mut self) {
        let mut stdin = self.psql.stdin.take().unwrap();
        writeln!(stdin, "COMMIT;").unwrap();
        drop(stdin);
        self.psql.wait().unwrap();
    }
}

/// `backup-cloud ARGS --config <fixture config>`, not yet started.
fn backup_cloud(fixture: &Fixture, args: &[&str]) -> Command {
    let mut command = fixture.command(args);
    command.env_remove("RUST_LOG");
    command
}

fn spawn(fixture: &Fixture, args: &[&str]) -> Child {
    backup_cloud(fixture, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn json_lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// The pid of the agent serving this fixture's bucket, once it runs.
async fn agent_pid(fixture: &Fixture) -> u32 {
    let pattern = format!("agent --spec-bucket {}", fixture.bucket);
    eventually("the agent process", Duration::from_secs(60), || {
        let pattern = pattern.clone();
        async move {
            let out = Command::new("pgrep").args(["-f", &pattern]).output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .and_then(|l| l.trim().parse().ok())
        }
    })
    .await
}

fn signal(pid: u32, name: &str) {
    run_ok(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]));
}

/// The job's phase, or "" while its status parameter does not exist yet.
async fn phase(fixture: &Fixture) -> String {
    let Ok(out) = fixture
        .aws
        .ssm
        .get_parameter()
        .name(fixture.status_parameter())
        .send()
        .await
    else {
        return String::new();
    };
    let status: serde_json::Value =
        serde_json::from_str(out.parameter().unwrap().value().unwrap()).unwrap();
    status["phase"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn launch_status_wait_follow_a_detached_job() {
    let (_holder, database, fixture) = sample_fixture("ops_detached_").await;
    let lock = TableLock::hold(&database, "orders");

    let launched = fixture.backup_cloud(&["launch", "--job", &fixture.job]);
    assert_eq!(launched.status.code(), Some(0), "{}", show(&launched));
    let job_id = String::from_utf8_lossy(&launched.stdout).trim().to_owned();
    assert!(
        job_id.starts_with(&format!("{}-", fixture.job)),
        "launch prints the job id: {job_id}"
    );

    // While pg_dump waits for the lock, the job is visibly running.
    eventually(
        "the agent to start dumping",
        Duration::from_secs(60),
        || async { (phase(&fixture).await == "dumping").then_some(()) },
    )
    .await;
    let status = fixture.backup_cloud(&["status", &fixture.job, "--output", "json"]);
    assert_eq!(status.status.code(), Some(0), "{}", show(&status));
    let rows = json_lines(&status);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"]["job_id"], job_id.as_str());
    assert_eq!(rows[0]["status"]["phase"], "dumping");
    assert!(
        rows[0]["status"]["bytes_expected"].as_u64().unwrap() > 0,
        "size reported for an ETA"
    );
    assert_eq!(rows[0]["instance"]["state"], "running");
    let human = fixture.backup_cloud(&["status", &fixture.job]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("dumping"),
        "{}",
        show(&human)
    );

    let list = fixture.backup_cloud(&["list", "--output", "json"]);
    assert!(
        json_lines(&list).iter().any(
            |r| r["instance"]["state"] == "running" && r["status"]["job_id"] == job_id.as_str()
        ),
        "{}",
        show(&list)
    );

    let waiter = Streaming::spawn(&mut backup_cloud(
        &fixture,
        &["wait", &fixture.job, "--output", "json"],
    ));
    waiter
        .wait_for_line(
            Pipe::Stdout,
            "wait to follow the dumping job",
            Duration::from_secs(60),
            |line| line.contains(r#""event":"progress""#) && line.contains(r#""phase":"dumping""#),
        )
        .await;
    lock.release();
    let waited = waiter.wait_with_output();
    assert_eq!(waited.status.code(), Some(0), "{}", show(&waited));
    let events = json_lines(&waited);
    let finished = events
        .iter()
        .find(|e| e["event"] == "finished")
        .expect("a finished event");
    assert_eq!(finished["outcome"], "succeeded");
    assert_eq!(finished["job_id"], job_id.as_str());
    assert!(finished["manifest"]
        .as_str()
        .unwrap()
        .ends_with("/manifest.json"));
    assert_instances_gone(&fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_jobs_run_at_most_four_at_a_time() {
    let (_holder, database, fixture) = sample_fixture("ops_many_").await;
    let names: Vec<String> = (0..10).map(|i| format!("{}-{i}", fixture.job)).collect();
    // The fixture's own job is replaced by ten of the same, named alike.
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.jobs = names
        .iter()
        .map(|name| (name.clone(), fixture.postgres_job(&database)))
        .collect();
    fixture.write(&config);

    let mut run = spawn(
        &fixture,
        &["run", "--all", "--max-concurrent", "4", "--output", "json"],
    );
    let mut most_at_once = 0;
    let started = Instant::now();
    while run.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "--all never finished"
        );
        let out = fixture
            .aws
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let ours = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                i.tags().iter().any(|t| {
                    t.key() == Some("backup-cloud:job")
                        && t.value().is_some_and(|v| names.iter().any(|n| n == v))
                })
            })
            .count();
        most_at_once = most_at_once.max(ours);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(most_at_once <= 4, "{most_at_once} instances ran at once");
    assert!(
        most_at_once >= 2,
        "jobs did run concurrently (saw {most_at_once})"
    );

    let events = json_lines(&output);
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["exit_code"], 0);
    let jobs = summary["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 10);
    let mut seen: Vec<&str> = jobs.iter().map(|j| j["job"].as_str().unwrap()).collect();
    seen.sort();
    let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(jobs
        .iter()
        .all(|j| j["outcome"] == "succeeded" && j["manifest"].is_string()));
    assert_eq!(
        events.iter().filter(|e| e["event"] == "launched").count(),
        10
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_refuses_a_second_run_until_its_lease_expires() {
    let (_holder, database, fixture) = sample_fixture("ops_single_").await;
    let lock = TableLock::hold(&database, "orders");

    let mut first = spawn(&fixture, &["run", "--job", &fixture.job]);
    eventually("the first job to dump", Duration::from_secs(60), || async {
        (phase(&fixture).await == "dumping").then_some(())
    })
    .await;
    let first_id = fixture.status().await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let second = fixture.run_job();
    assert_eq!(second.status.code(), Some(6), "{}", show(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&first_id),
        "names the running job: {stderr}"
    );
    assert!(stderr.contains("--attach"), "{stderr}");

    // The controller dies; its job carries on and holds the lease.
    first.kill().unwrap();
    first.wait().unwrap();
    let again = fixture.run_job();
    assert_eq!(
        again.status.code(),
        Some(6),
        "still running: {}",
        show(&again)
    );

    // --attach follows the running job to its end.
    let attached = Streaming::spawn(&mut backup_cloud(
        &fixture,
        &["run", "--job", &fixture.job, "--attach"],
    ));
    let following = format!("{}: dumping", fixture.job);
    attached
        .wait_for_line(
            Pipe::Stderr,
            "--attach to follow the dumping job",
            Duration::from_secs(60),
            |line| line.contains(&following),
        )
        .await;
    lock.release();
    let attached = attached.wait_with_output();
    assert_eq!(attached.status.code(), Some(0), "{}", show(&attached));
    assert!(String::from_utf8_lossy(&attached.stdout).contains(&first_id));

    // The job is over, so its lease has expired: the next night runs.
    let next = fixture.run_job();
    assert_eq!(next.status.code(), Some(0), "{}", show(&next));
    assert_ne!(fixture.status().await["job_id"].as_str().unwrap(), first_id);
    assert_instances_gone(&fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reap_ends_the_orphan_of_a_dead_controller() {
    let (_holder, database, fixture) = sample_fixture("ops_reap_").await;
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.status.heartbeat_timeout = Duration::from_secs(10);
    fixture.write(&config);
    let lock = TableLock::hold(&database, "orders");

    let mut controller = spawn(&fixture, &["run", "--job", &fixture.job]);
    eventually("the job to dump", Duration::from_secs(60), || async {
        (phase(&fixture).await == "dumping").then_some(())
    })
    .await;
    controller.kill().unwrap();
    controller.wait().unwrap();

    // A healthy orphan is left alone.
    let reap = fixture.backup_cloud(&["reap"]);
    assert_eq!(reap.status.code(), Some(0), "{}", show(&reap));
    assert!(
        String::from_utf8_lossy(&reap.stdout).contains("nothing reaped"),
        "{}",
        show(&reap)
    );
    assert!(fixture
        .instance_states()
        .await
        .contains(&"running".to_owned()));

    // The agent hangs: its heartbeat goes stale, and reap ends it.
    let agent = agent_pid(&fixture).await;
    signal(agent, "STOP");
    let reaped = fixture.reap_once_stale().await;
    let rows = reaped["reaped"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{reaped:?}");
    assert!(
        rows[0]["reason"].as_str().unwrap().contains("no heartbeat"),
        "{reaped:?}"
    );
    assert_instances_gone(&fixture).await;
    let status = fixture.status().await;
    assert_eq!(status["phase"], "failed");
    assert!(
        status["message"].as_str().unwrap().starts_with("reaped:"),
        "{status}"
    );
    lock.release();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_exit_code_comes_from_a_real_scenario() {
    let (_holder, database, fixture) = sample_fixture("ops_exits_").await;

    // 0: success, with a JSON record.
    let ok = fixture.backup_cloud(&["run", "--job", &fixture.job, "--output", "json"]);
    assert_eq!(ok.status.code(), Some(0), "{}", show(&ok));
    let events = json_lines(&ok);
    assert_eq!(events.first().unwrap()["event"], "launched");
    assert!(events.iter().any(|e| e["event"] == "progress"));
    assert_eq!(events.last().unwrap()["event"], "finished");
    assert_eq!(events.last().unwrap()["exit_code"], 0);

    // 2: a configuration error.
    let bad = fixture.backup_cloud(&["run", "--job", "no-such-job"]);
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));

    // 3: a launch failure (the AMI parameter does not exist).
    let good_config = fixture.config(fixture.postgres_job(&database));
    let mut no_ami = good_config.clone();
    no_ami.instance.ami_parameter = "/backup-cloud/amis/no-such-ami".to_owned();
    fixture.write(&no_ami);
    let launch = fixture.backup_cloud(&["run", "--job", &fixture.job, "--output", "json"]);
    assert_eq!(launch.status.code(), Some(3), "{}", show(&launch));
    assert_eq!(
        json_lines(&launch).last().unwrap()["outcome"],
        "launch_failed"
    );
    fixture.write(&good_config);

    // 4: the backup failed (wrong password).
    fixture.set_password("wrong-password", None).await;
    let failed = fixture.run_job();
    assert_eq!(failed.status.code(), Some(4), "{}", show(&failed));
    fixture.set_password(&pg_backup_password(), None).await;

    // 5: timed out (the agent hangs; its heartbeat goes stale).
    let mut short_heartbeat = good_config;
    short_heartbeat.status.heartbeat_timeout = Duration::from_secs(10);
    fixture.write(&short_heartbeat);
    let lock = TableLock::hold(&database, "orders");
    let run = spawn(&fixture, &["run", "--job", &fixture.job]);
    let agent = agent_pid(&fixture).await;
    eventually("the job to dump", Duration::from_secs(60), || async {
        (phase(&fixture).await == "dumping").then_some(())
    })
    .await;
    signal(agent, "STOP");
    let timed_out = run.wait_with_output().unwrap();
    assert_eq!(timed_out.status.code(), Some(5), "{}", show(&timed_out));
    assert!(String::from_utf8_lossy(&timed_out.stderr).contains("no heartbeat"));
    assert_instances_gone(&fixture).await;

    // 6: already running.
    let holder_run = spawn(&fixture, &["run", "--job", &fixture.job]);
    eventually("the job to dump", Duration::from_secs(60), || async {
        (phase(&fixture).await == "dumping").then_some(())
    })
    .await;
    let refused = fixture.run_job();
    assert_eq!(refused.status.code(), Some(6), "{}", show(&refused));

    // 130: interrupted (non-interactive Ctrl-C terminates the instance).
    signal(holder_run.id(), "INT");
    let interrupted = holder_run.wait_with_output().unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(130),
        "{}",
        show(&interrupted)
    );
    assert_instances_gone(&fixture).await;
    // The agent's heartbeats may outlive the controller's verdict; they do
    // not write over it.
    assert_eq!(fixture.status().await["phase"], "failed");
    lock.release();
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_the_launch_and_an_estimate_without_launching() {
    let (_holder, _database, fixture) = sample_fixture("ops_plan_").await;
    let plan = fixture.backup_cloud(&["plan", "--job", &fixture.job, "--database-size", "50GiB"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("#!/bin/bash"), "shows the user-data: {text}");
    assert!(
        text.contains("estimate:") && text.contains("50.0 GiB") && text.contains("assumed"),
        "{text}"
    );
    assert!(text.contains("cost:"), "{text}");
    assert!(
        fixture.instance_states().await.is_empty(),
        "plan launched nothing"
    );
    let check = fixture.backup_cloud(&["config", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", show(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains(&fixture.job));
}

/// A directory dump's files wait on the instance's disk: `plan` shows
/// where (the root volume of a type without instance storage, every
/// instance-store device of one with it, from `DescribeInstanceTypes`)
/// and warns when the database is larger, naming the ways out.
#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_the_scratch_space_and_warns_when_the_database_exceeds_it() {
    let (_holder, database, fixture) = sample_fixture("ops_scratch_").await;
    let mut job = fixture.postgres_job(&database);
    job.format = Some(PostgresFormat::Directory);
    let mut config = fixture.config(job);
    config.instance.root_volume_gib = Some(30);
    fixture.write(&config);
    let plan = |size: &str| {
        let plan = fixture.backup_cloud(&["plan", "--job", &fixture.job, "--database-size", size]);
        assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
        String::from_utf8_lossy(&plan.stdout).into_owned()
    };
    let text = plan("10GiB");
    assert!(
        text.contains("scratch:          root volume, 30 GiB"),
        "{text}"
    );
    assert!(!text.contains("warning:"), "{text}");
    let text = plan("40GiB");
    assert!(
        text.contains("the database (40.0 GiB) is larger than the scratch space")
            && text.contains("(30.0 GiB)")
            && text.contains("instance storage (e.g. m6id)")
            && text.contains("root_volume_gib"),
        "{text}"
    );

    config.instance.instance_type = "m6id.large".to_owned();
    fixture.write(&config);
    let text = plan("40GiB");
    assert!(
        text.contains("scratch:          1 × instance store, 118 GB"),
        "{text}"
    );
    assert!(!text.contains("warning:"), "{text}");
}

/// A plan that cannot finish: 2 TiB at the assumed rate takes hours, and
/// the job's instance terminates itself after 20 minutes. `plan` showed
/// the estimate and exited 0, and `run` would have launched it and lost
/// the night. Both now refuse (exit 2), naming both figures and the keys;
/// `run` judges from the last backup's size and measured rate.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_would_outlive_its_max_lifetime_is_refused_before_launch() {
    let (_holder, _database, fixture) = sample_fixture("ops_fits_").await;
    let plan = fixture.backup_cloud(&["plan", "--job", &fixture.job, "--database-size", "2TiB"]);
    assert_eq!(plan.status.code(), Some(2), "{}", show(&plan));
    let stderr = String::from_utf8_lossy(&plan.stderr);
    for text in [
        "would not finish",
        "5h 52m",
        "max_lifetime of 20m",
        &format!("jobs.{}.max_lifetime", fixture.job),
    ] {
        assert!(stderr.contains(text), "{text:?} in: {stderr}");
    }
    assert!(String::from_utf8_lossy(&plan.stdout).contains("#!/bin/bash"));

    // the last backup measured: its boot took 3 hours (edited in)
    let (mut manifest, address) = back_up(&fixture).await;
    let dump_started = manifest["dump_started_at"].as_str().unwrap().to_owned();
    let started = time::OffsetDateTime::parse(
        &dump_started,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        - time::Duration::hours(3);
    manifest["started_at"] = started
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .into();
    let key = address
        .strip_prefix(&format!("s3://{}/", fixture.bucket))
        .unwrap();
    let (stamp_folder, _) = key
        .trim_end_matches("/manifest.json")
        .rsplit_once('/')
        .unwrap();
    let later = format!("{stamp_folder}/99991231T000000Z-ffffffff/manifest.json");
    fixture
        .aws
        .s3
        .put_object()
        .bucket(&fixture.bucket)
        .key(&later)
        .body(serde_json::to_vec(&manifest).unwrap().into())
        .send()
        .await
        .unwrap();
    let launched_before = fixture.instance_states().await.len();
    let run = fixture.run_job();
    assert_eq!(run.status.code(), Some(2), "{}", show(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("measured by the last backup") && stderr.contains("3h"),
        "{stderr}"
    );
    assert_eq!(
        fixture.instance_states().await.len(),
        launched_before,
        "nothing launched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spot_falls_back_to_on_demand_when_capacity_is_refused() {
    let (_holder, database, fixture) = sample_fixture("ops_spot_").await;
    let proxy = FaultProxy::start(&endpoint());
    let mut config = fixture.config(Job {
        spot: Some(true),
        ..fixture.postgres_job(&database)
    });
    config.aws.endpoint_url = proxy.url();
    fixture.write(&config);
    // EC2 refuses the spot request, as it does when a pool runs dry.
    proxy.add_rule(serde_json::json!({
        "body_contains": "InstanceMarketOptions.MarketType=spot",
        "action": "error",
        "format": "ec2",
        "code": "InsufficientInstanceCapacity",
        "count": -1,
    }));

    let output = fixture.backup_cloud(&["run", "--job", &fixture.job, "--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    // The SDK retries the 500 a few times before the refusal reaches us.
    assert!(proxy.fired()[0] >= 1, "the spot request was refused");
    let events = json_lines(&output);
    let launched = events.iter().find(|e| e["event"] == "launched").unwrap();
    assert_eq!(
        launched["spot"], false,
        "fell back to on-demand: {launched}"
    );
    assert_eq!(events.last().unwrap()["outcome"], "succeeded");

    // Without the refusal, the same job runs on spot.
    proxy.clear_rules();
    let output = fixture.backup_cloud(&["run", "--job", &fixture.job, "--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let events = json_lines(&output);
    let launched = events.iter().find(|e| e["event"] == "launched").unwrap();
    assert_eq!(launched["spot"], true, "{launched}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_cannot_be_terminated_exits_1_and_is_named() {
    let (_holder, database, fixture) = sample_fixture("ops_stuck_").await;
    let proxy = FaultProxy::start(&endpoint());
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.aws.endpoint_url = proxy.url();
    fixture.write(&config);
    // The dump waits on a lock, so the instance is still running when the
    // operator interrupts; then EC2 refuses every TerminateInstances: the
    // controller cannot confirm the instance gone, which must never pass
    // for success. (An instance that has shut itself down is confirmed
    // gone without a TerminateInstances.)
    let lock = TableLock::hold(&database, "orders");
    let run = spawn(&fixture, &["run", "--job", &fixture.job]);
    eventually("the job to dump", Duration::from_secs(60), || async {
        (phase(&fixture).await == "dumping").then_some(())
    })
    .await;
    proxy.add_rule(serde_json::json!({
        "body_contains": "Action=TerminateInstances",
        "action": "error",
        "format": "ec2",
        "code": "UnauthorizedOperation",
        "status": 403,
        "count": -1,
    }));
    signal(run.id(), "INT");
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("could not be confirmed terminated"),
        "{stderr}"
    );
    assert!(stderr.contains("UnauthorizedOperation"), "{stderr}");

    // Once EC2 cooperates again, the operator's tools clean up.
    proxy.clear_rules();
    let terminate = fixture.backup_cloud(&["terminate", &fixture.job]);
    assert_eq!(terminate.status.code(), Some(0), "{}", show(&terminate));
    assert_instances_gone(&fixture).await;
    lock.release();
}
