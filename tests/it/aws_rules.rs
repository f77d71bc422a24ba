//! End to end, the rules AWS holds a controller to and LocalStack alone
//! does not (issue 12), each enforced by the AWS gate in front of
//! LocalStack (`localstack/README.md`): an instance EC2 does not list for
//! a while after RunInstances, a RunInstances whose response is lost and
//! retried, presigned URLs that expire, SSM's account-wide `PutParameter`
//! throttle, and credentials that expire. Every run here uses the test's
//! own IAM actors (see `common::Fixture`).

use std::process::Stdio;
use std::time::Duration;

use crate::common::config::ConfigFile;
use crate::common::faultproxy::FaultProxy;
use crate::common::*;
use serde_json::json;

fn json_lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The fixture's config with `count` jobs like its own on `database`
/// (the others named `<fixture job>-<i>`).
fn with_jobs(fixture: &Fixture, database: &str, count: usize) -> ConfigFile {
    let mut config = fixture.config(fixture.postgres_job(database));
    for i in 1..count {
        config.jobs.insert(
            format!("{}-{i}", fixture.job),
            fixture.postgres_job(database),
        );
    }
    config
}

/// Asserts that `run --all` succeeded for every one of `jobs` jobs.
fn assert_all_succeeded(output: &std::process::Output, jobs: usize) {
    assert_eq!(output.status.code(), Some(0), "{}", show(output));
    let events = json_lines(output);
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary", "{}", show(output));
    let results = summary["jobs"].as_array().unwrap();
    assert_eq!(results.len(), jobs);
    for result in results {
        assert_eq!(result["outcome"], "succeeded", "{result}");
        assert!(result["manifest"].is_string(), "{result}");
    }
}

/// EC2 answers `InvalidInstanceID.NotFound` for an instance it launched
/// moments ago (the gate: for `consistency_seconds` after RunInstances).
/// The controller's first look at the instance comes right after the
/// launch: reading NotFound as "gone" fails every job.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_ec2_does_not_list_yet_is_pending_not_gone() {
    let (_holder, _database, fixture) = sample_fixture("rules_nf_").await;
    let output = fixture.backup_cloud(&["run", "--job", &fixture.job, "--output", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(fixture.status().await["phase"], "succeeded");
    assert_instances_gone(&fixture).await;
}

/// The RunInstances call goes through, then the connection drops before
/// the answer, four times: more than the SDK's three attempts. Each ask
/// with the same `ClientToken` gets the first launch back from EC2; one
/// with another token starts a second instance, and giving up after the
/// SDK's attempts reports a failed launch (exit 3) while the instance
/// runs on, watched by nobody.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_instances_whose_answers_were_lost_starts_one_instance_and_the_job() {
    let (_holder, database, fixture) = sample_fixture("rules_token_").await;
    // The answer to lose is a launch's, not the refusal of an instance
    // profile EC2 does not know yet: wait until it does.
    let settings = gate::call(&endpoint(), "GET", "settings", "");
    let delay = settings["profile_delay_seconds"].as_f64().unwrap();
    tokio::time::sleep(Duration::from_secs_f64(delay + 1.0)).await;
    let proxy = FaultProxy::start(&endpoint());
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.aws.endpoint_url = proxy.url();
    fixture.write(&config);
    proxy.add_rule(json!({
        "body_contains": "Action=RunInstances",
        "action": "drop_response",
        "count": 4,
    }));

    let output = fixture.backup_cloud(&["run", "--job", &fixture.job, "--output", "json"]);
    assert_eq!(proxy.fired()[0], 4, "four answers were lost");
    let instances = fixture.instances().await;
    let ids: Vec<_> = instances.iter().filter_map(|i| i.instance_id()).collect();
    // A second instance would be an orphan nobody watches: end it first.
    for id in &ids[1.min(ids.len())..] {
        let _ = fixture
            .aws
            .ec2
            .terminate_instances()
            .instance_ids(*id)
            .send()
            .await;
    }
    assert_eq!(ids.len(), 1, "one job, one instance: {ids:?}");
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
}

/// `run --all` with two jobs one at a time: the second launches after the
/// first has run for longer than the boot window. Its agent must still
/// download the binary, so its URL is signed at its own launch, valid for
/// its own boot window (one URL signed for the first launch has expired
/// by then: the gate answers 403 "Request has expired", as S3 does).
#[tokio::test(flavor = "multi_thread")]
async fn a_queued_job_gets_an_agent_url_signed_for_its_own_launch() {
    let (_holder, database, fixture) = sample_fixture("rules_url_").await;
    let proxy = FaultProxy::start(&endpoint());
    let mut config = with_jobs(&fixture, &database, 2);
    config.status.boot_timeout = Duration::from_secs(30);
    config
        .instance
        .tags
        .insert("backup-cloud-sim:endpoint".to_owned(), proxy.url());
    fixture.write(&config);
    // Whichever job runs first writes slowly: its first three writes under
    // the backup prefix (it makes at least two: the dump and the manifest)
    // take 18 s each, well past the 30 s boot window in all.
    proxy.add_rule(json!({
        "method": "PUT",
        "path_contains": "/backup/",
        "action": "delay",
        "seconds": 18,
        "count": 3,
    }));

    let output =
        fixture.backup_cloud(&["run", "--all", "--max-concurrent", "1", "--output", "json"]);
    assert_all_succeeded(&output, 2);
    assert!(proxy.fired()[0] >= 2, "the first job was slowed down");
}

/// Ten jobs at once against SSM's account-wide `PutParameter` rate (the
/// gate: 3 per second, a burst of 3, `ThrottlingException` beyond it):
/// the controller's and ten agents' status writes, heartbeats included,
/// must all get through, or be retried until they do.
#[tokio::test(flavor = "multi_thread")]
async fn ten_jobs_at_once_all_succeed_under_the_ssm_throttle() {
    let (_holder, database, fixture) = sample_fixture("rules_ten_").await;
    fixture.write(&with_jobs(&fixture, &database, 10));
    let output = fixture
        .command(&["run", "--all", "--max-concurrent", "10", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_all_succeeded(&output, 10);
}

/// `plan` with credentials that expire before the boot window ends (an
/// SSO or role session about to run out, here from a `credential_process`
/// that says so): the agent's URL would die with them, and `plan` says so.
#[tokio::test(flavor = "multi_thread")]
async fn plan_says_when_the_credentials_expire_before_the_boot_window_ends() {
    let (_holder, _database, fixture) = sample_fixture("rules_creds_").await;
    let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let keys = &fixture.actors.controller;
    let process = fixture.dir.path().join("credentials.json");
    std::fs::write(
        &process,
        json!({
            "Version": 1,
            "AccessKeyId": keys.access_key_id,
            "SecretAccessKey": keys.secret_access_key,
            "Expiration": expires,
        })
        .to_string(),
    )
    .unwrap();
    let aws_config = fixture.dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[profile short]\ncredential_process = cat {}\n",
            process.display()
        ),
    )
    .unwrap();
    let plan = |profile: Option<&str>| {
        let mut command = fixture.command(&["plan", "--job", &fixture.job]);
        if let Some(profile) = profile {
            command
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env("AWS_CONFIG_FILE", &aws_config)
                .env("AWS_PROFILE", profile);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", show(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let short = plan(Some("short"));
    let line = short
        .lines()
        .find(|l| l.starts_with("credentials:"))
        .unwrap_or_else(|| panic!("no credentials warning:\n{short}"));
    assert!(line.contains("before the boot window (2m) ends"), "{line}");
    // Long-term keys do not expire: nothing to say.
    let long = plan(None);
    assert!(!long.contains("credentials:"), "{long}");
}

/// A bucket whose default encryption is SSE-KMS under a customer-managed
/// key: S3 calls KMS on behalf of whoever writes or reads, with that
/// caller's permissions (`kms:GenerateDataKey` to write, `kms:Decrypt` to
/// read and to finish a multipart upload). The agent writes the backup
/// and the restore side restores it, each allowed by its policy's
/// `BucketKeyThroughS3` statement and nothing else. The password
/// SecureString is under the same key: the agent decrypts it through SSM
/// (`DecryptDatabasePassword`, whose `kms:ViaService` condition must match
/// `ssm.REGION.amazonaws.com`).
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_encrypted_with_a_customer_managed_key_backs_up_and_restores() {
    use aws_sdk_s3::types::ServerSideEncryption;
    let (holder, database, mut fixture) = sample_fixture("rules_kms_").await;
    let key_id = fixture.use_customer_managed_key(&fixture.bucket).await;
    fixture.renew_actors(Some(&key_id));
    fixture.write(&fixture.config(fixture.postgres_job(&database)));
    let marker = gate::log_marker(&endpoint());

    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let manifest_key = fixture.status().await["manifest_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = fixture
        .aws
        .s3
        .head_object()
        .bucket(&fixture.bucket)
        .key(&manifest_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stored.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert!(
        stored.ssekms_key_id().is_some_and(|k| k.contains(&key_id)),
        "{stored:?}"
    );

    let target = unique("rules_kms_target_");
    psql("postgres", &format!("CREATE DATABASE {target}"));
    let address = format!("s3://{}/{manifest_key}", fixture.bucket);
    let url = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/{target}",
        pg_port()
    );
    let output = fixture
        .command(&["restore", &address, "--to", &url])
        .env("GNUPGHOME", holder.home.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(table_digests(&target), table_digests(&database));

    // KMS was in the path, for each actor, through each service, and allowed.
    let kms_calls = |actor: &str| {
        let (entries, _) = gate::log(&endpoint(), marker, actor);
        entries
            .into_iter()
            .filter(|e| e["action"].as_str().is_some_and(|a| a.starts_with("kms:")))
            .map(|e| {
                assert_eq!(e["decision"], "allow", "{e}");
                let service = e["context"]["kms:ViaService"].as_str().unwrap_or("?");
                format!("{} via {service}", e["action"].as_str().unwrap())
            })
            .collect::<std::collections::BTreeSet<_>>()
    };
    let agent = kms_calls(&fixture.actors.instance_profile);
    for call in [
        "kms:GenerateDataKey via s3.us-east-1.amazonaws.com",
        "kms:Decrypt via ssm.us-east-1.amazonaws.com",
    ] {
        assert!(agent.contains(call), "{call}: {agent:?}");
    }
    let restore = kms_calls(&fixture.actors.restore_arn);
    assert!(
        restore.contains("kms:Decrypt via s3.us-east-1.amazonaws.com"),
        "{restore:?}"
    );
}

/// `launch`, then `terminate` at once: EC2 does not list the new instance
/// by its tags yet (the gate: for `consistency_seconds` after
/// RunInstances), so a `terminate` that only looks by tags finds nothing
/// and the instance runs on. The lease records the instance's id, which
/// EC2 can be asked about (NotFound within the window is looked at again).
#[tokio::test(flavor = "multi_thread")]
async fn terminate_right_after_launch_ends_the_instance_ec2_does_not_list_yet() {
    let (_holder, _database, fixture) = sample_fixture("rules_term_").await;
    let launch = fixture.backup_cloud(&["launch", "--job", &fixture.job]);
    assert_eq!(launch.status.code(), Some(0), "{}", show(&launch));
    let terminate = fixture.backup_cloud(&["terminate", &fixture.job, "--output", "json"]);
    assert_eq!(terminate.status.code(), Some(0), "{}", show(&terminate));
    let ended = &json_lines(&terminate)[0]["terminated"];
    assert_eq!(
        ended.as_array().map(Vec::len),
        Some(1),
        "{}",
        show(&terminate)
    );
    eventually(
        "EC2 to list the instance",
        Duration::from_secs(30),
        || async { (!fixture.instances().await.is_empty()).then_some(()) },
    )
    .await;
    assert_instances_gone(&fixture).await;
    assert_eq!(fixture.status().await["phase"], "failed");
}
