//! End to end under injected faults: the dump tool dies, the database or
//! the password is missing, S3 fails for a while or for good, a connection
//! drops mid-part, the agent dies, the instance is terminated from outside,
//! SSM throttles status writes, the controller dies.
//!
//! Every case first takes a good backup of the same job, then runs the
//! faulted one and checks the promises of a failure: a non-zero exit with a
//! reason, a status that says what happened, no manifest, no incomplete
//! multipart upload, no instance left running, and the earlier backup
//! untouched. Faults in S3 and SSM come from `localstack/faultproxy.py`,
//! which both the controller (its `endpoint_url`) and the agent (the
//! simulator's `backup-cloud-sim:endpoint` tag) talk through.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::config::ConfigFile;
use crate::common::faultproxy::FaultProxy;
use crate::common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Pids of processes whose command line contains every one of `needles`.
fn processes_with(needles: &[&str]) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if needles.iter().all(|n| args.iter().any(|a| a.contains(n))) {
            found.push(pid);
        }
    }
    found
}

fn kill(signal: &str, target: &str) {
    run_ok(Command::new("kill").args([&format!("-{signal}"), "--", target]));
}

/// A database of `mib` MiB of incompressible rows plus the sample tables,
/// so the dump outlasts the upload pipeline's buffers.
fn create_big_database(name: &str, mib: u32) {
    create_sample_database(name, 1_000);
    psql(
        name,
        &format!(
            "CREATE TABLE blobs AS
               SELECT g AS id,
                      (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')
                         FROM generate_series(1, 64) AS i) AS b
               FROM generate_series(1, {}) AS g;
             GRANT SELECT ON blobs TO {PG_BACKUP_USER};",
            mib * 1024
        ),
    );
}

/// The objects of a finished backup, with the SHA-256 of each.
#[derive(Debug, PartialEq)]
struct Snapshot(Vec<(String, String)>);

/// One fault scenario: a job with a good earlier backup, and a proxy both
/// sides will talk through from now on.
struct Case {
    fixture: Fixture,
    proxy: FaultProxy,
    database: String,
    earlier: Snapshot,
    _holder: KeyHolder,
}

impl Case {
    async fn new(database: &str) -> Case {
        require_services();
        let holder = KeyHolder::generate("holder");
        let fixture = Fixture::new(&holder, database, &pg_backup_password()).await;
        let output = fixture.run_job();
        assert_eq!(
            output.status.code(),
            Some(0),
            "earlier backup: {}",
            show(&output)
        );
        let earlier = snapshot(&fixture).await;
        assert_eq!(earlier.0.len(), 2, "object and manifest: {earlier:?}");
        let proxy = FaultProxy::start(&endpoint());
        let case = Case {
            fixture,
            proxy,
            database: database.to_owned(),
            earlier,
            _holder: holder,
        };
        case.configure(|_| {});
        case
    }

    /// A case on a fresh database with `mib` MiB of incompressible rows
    /// (see [`create_big_database`]).
    async fn big(prefix: &str, mib: u32) -> Case {
        let database = unique(prefix);
        create_big_database(&database, mib);
        Case::new(&database).await
    }

    /// Starts `backup-cloud run` held mid-way: one part in flight, each
    /// part delayed `delay_secs` by the proxy, and `edit` applied to the
    /// config besides; returns once the first part has gone through.
    async fn start_held(
        &self,
        delay_secs: u32,
        edit: impl FnOnce(&mut ConfigFile),
    ) -> std::process::Child {
        self.configure(|config| {
            config.upload.concurrency = 1;
            edit(config);
        });
        self.proxy.add_rule(json!({
            "method": "PUT", "query_contains": "partNumber=", "action": "delay",
            "seconds": delay_secs, "count": -1
        }));
        let run = self.spawn_run();
        self.wait_for_first_part().await;
        run
    }

    /// Rewrites the config: both sides through the proxy, then `edit`.
    fn configure(&self, edit: impl FnOnce(&mut ConfigFile)) {
        let fixture = &self.fixture;
        let mut config = fixture.config(fixture.postgres_job(&self.database));
        config.aws.endpoint_url = self.proxy.url();
        config
            .instance
            .tags
            .insert("backup-cloud-sim:endpoint".to_owned(), self.proxy.url());
        edit(&mut config);
        fixture.write(&config);
    }

    /// Starts `backup-cloud run` without waiting for it.
    fn spawn_run(&self) -> std::process::Child {
        self.fixture
            .command(&["run", "--job", &self.fixture.job])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until the agent has sent at least one part through the proxy.
    async fn wait_for_first_part(&self) {
        eventually(
            "the first part upload",
            Duration::from_secs(120),
            || async {
                self.proxy
                    .log()
                    .iter()
                    .any(|r| {
                        r["method"] == "PUT" && r["query"].as_str().unwrap().contains("partNumber=")
                    })
                    .then_some(())
            },
        )
        .await;
    }

    /// Asserts every promise of a failed run.
    async fn assert_failed_cleanly(&self, output: &Output, exit: i32, reason: &str) {
        let fixture = &self.fixture;
        assert_eq!(output.status.code(), Some(exit), "{}", show(output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(reason),
            "the last line gives the reason ({reason}): {}",
            show(output)
        );
        let status = fixture.status().await;
        assert_eq!(status["phase"], "failed", "{status}");
        assert!(
            status["message"].as_str().unwrap().contains(reason),
            "the status says what happened ({reason}): {status}"
        );
        assert_eq!(
            snapshot(fixture).await,
            self.earlier,
            "no new manifest or object, and the earlier backup is untouched"
        );
        assert_eq!(
            fixture.incomplete_uploads().await,
            0,
            "no multipart upload left behind"
        );
        assert_instances_gone(fixture).await;
    }
}

/// Every object under the job's backup prefix with its SHA-256.
async fn snapshot(fixture: &Fixture) -> Snapshot {
    let prefix = fixture.backup_prefix();
    let mut keys = fixture.keys(&prefix).await;
    keys.sort();
    let mut objects = Vec::new();
    for key in keys {
        let digest = hex::encode(Sha256::digest(fixture.get(&key).await));
        objects.push((key, digest));
    }
    Snapshot(objects)
}

fn wait_output(child: std::process::Child) -> Output {
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dump_tool_dying_halfway_fails_the_backup() {
    let case = Case::big("f_dumpdies_", 40).await;
    // slow parts keep pg_dump blocked on its pipe, alive, mid-way
    let run = case.start_held(1, |_| {}).await;
    let dbname = format!("dbname='{}'", case.database);
    let pids = processes_with(&["pg_dump", &dbname]);
    assert_eq!(pids.len(), 1, "one pg_dump for {}: {pids:?}", case.database);
    kill("KILL", &pids[0].to_string());
    case.proxy.clear_rules();
    let output = wait_output(run);
    case.assert_failed_cleanly(&output, 4, "pg_dump failed")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_fails_the_backup() {
    let database = unique("f_unreach_");
    create_sample_database(&database, 200);
    let case = Case::new(&database).await;
    // port 1 on loopback: nothing listens, the connection is refused
    case.configure(|config| config.only_job().port = 1);
    let output = case.fixture.run_job();
    case.assert_failed_cleanly(&output, 4, "psql failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_password_parameter_fails_the_backup() {
    let database = unique("f_nopw_");
    create_sample_database(&database, 200);
    let case = Case::new(&database).await;
    case.fixture
        .aws
        .ssm
        .delete_parameter()
        .name(&case.fixture.password_parameter)
        .send()
        .await
        .unwrap();
    let output = case.fixture.run_job();
    case.assert_failed_cleanly(&output, 4, "does not exist")
        .await;
    let status = case.fixture.status().await;
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains(&case.fixture.password_parameter),
        "names the parameter: {status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_errors_for_a_while_are_retried_and_the_backup_succeeds() {
    let case = Case::big("f_s3blip_", 12).await;
    for (status, code) in [(503, "SlowDown"), (500, "InternalError")] {
        case.proxy.add_rule(json!({
            "method": "PUT", "query_contains": "partNumber=", "skip": 1, "count": 1,
            "status": status, "code": code
        }));
    }
    case.proxy.add_rule(json!({
        "method": "POST", "query_contains": "uploadId=", "count": 1, "status": 503, "code": "SlowDown"
    }));
    let output = case.fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(
        case.proxy.fired(),
        vec![1, 1, 1],
        "every fault was injected"
    );
    let status = case.fixture.status().await;
    assert_eq!(status["phase"], "succeeded", "{status}");
    let after = snapshot(&case.fixture).await;
    assert_eq!(
        after.0.len(),
        4,
        "the earlier backup and the new one: {after:?}"
    );
    assert!(case.earlier.0.iter().all(|o| after.0.contains(o)));
    let manifest: serde_json::Value = serde_json::from_slice(
        &case
            .fixture
            .get(status["manifest_key"].as_str().unwrap())
            .await,
    )
    .unwrap();
    let object = &manifest["objects"][0];
    let stored = case.fixture.get(object["key"].as_str().unwrap()).await;
    assert_eq!(
        hex::encode(Sha256::digest(&stored)),
        object["sha256"].as_str().unwrap()
    );
    assert_eq!(case.fixture.incomplete_uploads().await, 0);
    assert_instances_gone(&case.fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_failing_for_good_fails_the_backup_cleanly() {
    let case = Case::big("f_s3down_", 12).await;
    case.proxy.add_rule(json!({
        "method": "PUT", "query_contains": "partNumber=", "skip": 1, "count": -1,
        "status": 500, "code": "InternalError"
    }));
    let output = case.fixture.run_job();
    case.assert_failed_cleanly(&output, 4, "InternalError")
        .await;
    assert!(case.proxy.fired()[0] >= 2, "the failing part was retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_mid_part_is_retried() {
    let case = Case::big("f_drop_", 12).await;
    case.proxy.add_rule(json!({
        "method": "PUT", "query_contains": "partNumber=", "skip": 1, "count": 1, "action": "drop"
    }));
    let output = case.fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(case.proxy.fired(), vec![1], "the connection was dropped");
    assert_eq!(case.fixture.status().await["phase"], "succeeded");
    assert_eq!(case.fixture.incomplete_uploads().await, 0);
    assert_instances_gone(&case.fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_on_every_part_fails_cleanly() {
    let case = Case::big("f_drops_", 12).await;
    case.proxy.add_rule(json!({
        "method": "PUT", "query_contains": "partNumber=", "count": -1, "action": "drop"
    }));
    let output = case.fixture.run_job();
    case.assert_failed_cleanly(&output, 4, "uploading part")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_goes_stale_and_the_controller_ends_the_job() {
    let case = Case::big("f_agentdies_", 40).await;
    let run = case
        .start_held(1, |config| {
            config.status.heartbeat_timeout = Duration::from_secs(10);
        })
        .await;
    // the whole instance process group: agent, pg_dump and the user-data
    // script, so nothing is left to report the death
    let agents = processes_with(&["agent", "--spec-bucket", &case.fixture.bucket]);
    assert_eq!(agents.len(), 1, "{agents:?}");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", agents[0])).unwrap();
    let pgid = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned();
    kill("KILL", &format!("-{pgid}"));
    let output = wait_output(run);
    case.assert_failed_cleanly(&output, 5, "no heartbeat").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_terminated_from_outside_fails_the_job() {
    let case = Case::big("f_vanish_", 40).await;
    let run = case.start_held(1, |_| {}).await;
    let status = case.fixture.status().await;
    let instance_id = status["instance_id"].as_str().map(str::to_owned);
    let fixture = &case.fixture;
    let ids: Vec<String> = match instance_id {
        Some(id) => vec![id],
        None => fixture
            .instances()
            .await
            .iter()
            .filter(|i| {
                i.state().and_then(|s| s.name())
                    == Some(&aws_sdk_ec2::types::InstanceStateName::Running)
            })
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect(),
    };
    assert_eq!(ids.len(), 1, "{ids:?}");
    fixture
        .aws
        .ec2
        .terminate_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap();
    case.proxy.clear_rules();
    let output = wait_output(run);
    case.assert_failed_cleanly(&output, 4, "the instance went away")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_status_writes_delay_progress_but_the_backup_succeeds() {
    let database = unique("f_throttle_");
    create_sample_database(&database, 2_000);
    let case = Case::new(&database).await;
    // the controller's `launching` write passes; the agent's next writes are
    // throttled, more than the SDK's own retries absorb
    case.proxy.add_rule(json!({
        "target": "AmazonSSM.PutParameter", "skip": 1, "count": 8,
        "code": "ThrottlingException", "status": 400
    }));
    let output = case.fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(case.proxy.fired(), vec![8], "every throttle was injected");
    let status = case.fixture.status().await;
    assert_eq!(status["phase"], "succeeded", "{status}");
    let after = snapshot(&case.fixture).await;
    assert_eq!(after.0.len(), 4, "{after:?}");
    assert_instances_gone(&case.fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_controller_leaves_the_dead_man_to_end_the_instance() {
    let case = Case::big("f_ctldies_", 40).await;
    // a one-minute lifetime, and a simulated minute of 15 seconds for this
    // instance only: long enough for a loaded machine to boot the agent
    // and send the first part before the dead-man fires (3 seconds lost
    // that race), short against the 40 s or more that at least eight
    // parts delayed 5 s each would take to finish the backup
    let mut run = case
        .start_held(5, |config| {
            config.instance.max_lifetime = Duration::from_secs(60);
            config.instance.tags.insert(
                "backup-cloud-sim:minute-seconds".to_owned(),
                "15".to_owned(),
            );
        })
        .await;
    run.kill().unwrap();
    run.wait().unwrap();
    let fixture = &case.fixture;
    eventually(
        "the dead-man to terminate the instance",
        Duration::from_secs(60),
        || async {
            let states = fixture.instance_states().await;
            (!states.is_empty()
                && states
                    .iter()
                    .all(|s| s == "terminated" || s == "shutting-down"))
            .then_some(())
        },
    )
    .await;
    case.proxy.clear_rules();
    let keys = fixture.keys(&case.fixture.backup_prefix()).await;
    assert!(
        keys.iter().filter(|k| k.ends_with("manifest.json")).count() == 1,
        "only the earlier backup has a manifest: {keys:?}"
    );
    let earlier_keys: Vec<&String> = case.earlier.0.iter().map(|(k, _)| k).collect();
    assert!(earlier_keys.iter().all(|k| keys.contains(k)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_controller_s_orphan_is_reaped_and_its_upload_aborted() {
    let case = Case::big("f_reaped_", 40).await;
    let mut run = case
        .start_held(1, |config| {
            config.status.heartbeat_timeout = Duration::from_secs(10);
        })
        .await;
    run.kill().unwrap();
    run.wait().unwrap();
    let fixture = &case.fixture;
    assert_eq!(
        fixture.incomplete_uploads().await,
        1,
        "the orphan's upload is open"
    );
    // the orphan hangs (stopped, not dead: nothing reports), so its
    // heartbeat goes stale while its instance runs on
    let agents = processes_with(&["agent", "--spec-bucket", &fixture.bucket]);
    assert_eq!(agents.len(), 1, "{agents:?}");
    kill("STOP", &agents[0].to_string());
    // only instances of this configuration's jobs are judged by their
    // heartbeat: other tests' instances run on
    let report = fixture.reap_once_stale().await;
    let rows = report["reaped"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert!(
        rows[0]["reason"].as_str().unwrap().contains("no heartbeat"),
        "{report}"
    );
    case.proxy.clear_rules();
    assert_instances_gone(fixture).await;
    let status = fixture.status().await;
    assert_eq!(status["phase"], "failed", "{status}");
    assert!(
        status["message"].as_str().unwrap().starts_with("reaped:"),
        "{status}"
    );
    assert_eq!(
        fixture.incomplete_uploads().await,
        0,
        "reap aborted the orphan's upload"
    );
    assert_eq!(
        snapshot(fixture).await,
        case.earlier,
        "no new manifest or object, and the earlier backup is untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_upload_with_live_heartbeats_times_out_as_a_stall() {
    let case = Case::big("f_stall_", 40).await;
    case.configure(|config| {
        config.status.stall_timeout = Some(Duration::from_secs(60));
        config.upload.concurrency = 1;
    });
    // the second part never gets an answer; the agent's heartbeats do
    case.proxy.add_rule(json!({
        "method": "PUT", "query_contains": "partNumber=", "skip": 1, "action": "delay", "seconds": 3600, "count": -1
    }));
    let output = case.fixture.run_job();
    case.proxy.clear_rules();
    case.assert_failed_cleanly(&output, 5, "no progress").await;
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("stood still although the agent kept reporting"),
        "{}",
        show(&output)
    );
}
