//! The backup lifecycle against LocalStack's S3 under the AWS gate:
//! `backups` (the catalog), `prune` (retention, Object Lock, incomplete
//! backups and their uploads, least privilege), check records, `verify`/
//! `drill --latest`/`--random`, and `check` with each of its exit codes
//! and its Prometheus output read by the Prometheus client's own parser.
//!
//! A year of backups is made cheaply: one real backup, copied by the
//! test (as the admin) under 400 earlier timestamps of the bucket layout,
//! each copy a whole backup whose manifest names its own objects.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use backup_cloud::layout;
use futures_util::{stream, StreamExt};
use serde_json::Value;
use time::OffsetDateTime;

use crate::common::config::{Checks, Notify, RetentionRules};
use crate::common::*;

const DAY: time::Duration = time::Duration::DAY;

/// A keep rule as the test states it: how many periods, and the period a
/// time falls in.
type PeriodRule = (usize, fn(OffsetDateTime) -> String);

/// The prefix of the backup whose manifest is `manifest_key`.
fn prefix_of(manifest_key: &str) -> String {
    manifest_key
        .strip_suffix(layout::MANIFEST_NAME)
        .unwrap()
        .to_owned()
}

/// As the admin: copies the backup at `from` to timestamp `at` of the same
/// job, objects and a manifest naming the copies; returns its prefix.
async fn copy_backup(fixture: &Fixture, from: &str, at: OffsetDateTime) -> String {
    let parsed = layout::parse_backup(from).unwrap();
    let to = layout::backup(&parsed.prefix, &parsed.job, &layout::timestamp(at));
    let manifest = String::from_utf8(fixture.get(&layout::manifest(from)).await).unwrap();
    for key in fixture.keys(from).await {
        if key.ends_with(layout::MANIFEST_NAME) || key.contains("/checks/") {
            continue;
        }
        let target = key.replacen(from, &to, 1);
        fixture
            .aws
            .s3
            .copy_object()
            .bucket(&fixture.bucket)
            .copy_source(format!("{}/{key}", fixture.bucket))
            .key(&target)
            .send()
            .await
            .unwrap();
    }
    put(fixture, &layout::manifest(&to), manifest.replace(from, &to)).await;
    to
}

async fn put(fixture: &Fixture, key: &str, body: String) {
    fixture
        .aws
        .s3
        .put_object()
        .bucket(&fixture.bucket)
        .key(key)
        .body(body.into_bytes().into())
        .send()
        .await
        .unwrap();
}

/// The timestamps of the job's backup folders, and which have a manifest.
async fn folders(fixture: &Fixture) -> (BTreeSet<String>, BTreeSet<String>) {
    let root = layout::backups(&fixture.prefix, &fixture.job);
    let keys = fixture.keys(&root).await;
    let stamp = |key: &str| key[root.len()..].split('/').next().unwrap().to_owned();
    let all = keys.iter().map(|k| stamp(k)).collect();
    let complete = keys
        .iter()
        .filter(|k| k.ends_with(layout::MANIFEST_NAME))
        .map(|k| stamp(k))
        .collect();
    (all, complete)
}

/// The rules' expected survivors, computed another way than the
/// product does: per rule, a set of the periods already taken.
fn expected_kept(times: &[OffsetDateTime], rules: &[PeriodRule]) -> BTreeSet<String> {
    let mut newest_first = times.to_vec();
    newest_first.sort_by(|a, b| b.cmp(a));
    let mut kept = BTreeSet::new();
    for (count, period) in rules {
        let mut taken = BTreeSet::new();
        for at in &newest_first {
            if taken.len() == *count {
                break;
            }
            if taken.insert(period(*at)) {
                kept.insert(layout::timestamp(*at));
            }
        }
    }
    kept
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn open_uploads(fixture: &Fixture, prefix: &str) -> usize {
    fixture
        .aws
        .s3
        .list_multipart_uploads()
        .bucket(&fixture.bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

/// As the admin: an incomplete backup at `at` (one object, no manifest)
/// with an open multipart upload; returns its prefix.
async fn incomplete_backup(fixture: &Fixture, at: OffsetDateTime) -> String {
    let prefix = layout::backup(&fixture.prefix, &fixture.job, &layout::timestamp(at));
    put(
        fixture,
        &format!("{prefix}data/0001.dat.gpg"),
        "partial".into(),
    )
    .await;
    fixture
        .aws
        .s3
        .create_multipart_upload()
        .bucket(&fixture.bucket)
        .key(format!("{prefix}data/0002.dat.gpg"))
        .send()
        .await
        .unwrap();
    prefix
}

#[tokio::test(flavor = "multi_thread")]
async fn a_year_of_backups_is_pruned_to_exactly_what_the_rules_keep() {
    let (_holder, _database, fixture) = sample_fixture("life_").await;
    let mut config = fixture.config(fixture.postgres_job(&_database));
    config.retention = Some(RetentionRules {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(12),
        keep_yearly: Some(2),
        incomplete_grace: Some("2d".into()),
        ..RetentionRules::default()
    });
    fixture.write(&config);
    let (_, address) = back_up(&fixture).await;
    let real = prefix_of(
        address
            .strip_prefix(&format!("s3://{}/", fixture.bucket))
            .unwrap(),
    );
    let real_at = layout::parse_timestamp(&layout::parse_backup(&real).unwrap().timestamp).unwrap();

    // 400 nightly backups before it, at 01:30 UTC
    let now = OffsetDateTime::now_utc();
    let midnight = now.replace_time(time::Time::MIDNIGHT);
    let nightly: Vec<OffsetDateTime> = (1..=400)
        .map(|d| midnight - DAY * d + time::Duration::minutes(90))
        .collect();
    stream::iter(&nightly)
        .for_each_concurrent(24, |at| async {
            copy_backup(&fixture, &real, *at).await;
        })
        .await;
    let stale = incomplete_backup(&fixture, now - DAY * 3_i32).await;
    let fresh = incomplete_backup(&fixture, now - time::Duration::hours(1)).await;
    // a streamed dump abandoned before its upload completed: no object at
    // all, only an open multipart upload, which a listing does not show
    let upload_only = layout::backup(
        &fixture.prefix,
        &fixture.job,
        &layout::timestamp(now - DAY * 4_i32),
    );
    fixture
        .aws
        .s3
        .create_multipart_upload()
        .bucket(&fixture.bucket)
        .key(format!("{upload_only}pg_dump.custom.zst.gpg"))
        .send()
        .await
        .unwrap();
    let (before, complete_before) = folders(&fixture).await;
    assert_eq!((before.len(), complete_before.len()), (403, 401));

    let mut times = nightly.clone();
    times.push(real_at);
    let periods: [PeriodRule; 4] = [
        (7, |t| t.date().to_string()),
        (4, |t| {
            let (year, week, _) = t.date().to_iso_week_date();
            format!("{year}-W{week}")
        }),
        (12, |t| format!("{}-{}", t.year(), t.month())),
        (2, |t| t.year().to_string()),
    ];
    let expected = expected_kept(&times, &periods);
    // 7 days, 2 more weeks, 10 more months, 1 more year (or one less of
    // each when a period boundary falls among the days kept already)
    assert!((17..=21).contains(&expected.len()), "{expected:?}");

    // the plan alone removes nothing
    let plan = fixture.backup_cloud(&["prune"]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let removals = complete_before.len() - expected.len() + 2;
    assert!(
        stdout(&plan).contains(&format!("{removals} backup(s) would be removed")),
        "{}",
        show(&plan)
    );
    assert!(stdout(&plan).contains("keep_monthly ("), "{}", show(&plan));
    assert_eq!(folders(&fixture).await.0, before);

    // the controller's credentials cannot prune, and nothing is lost trying
    let refused = output_within(
        &mut fixture.command_as(
            std::path::Path::new(env!("CARGO_BIN_EXE_backup-cloud")),
            &["prune", "--yes"],
            &fixture.actors.controller,
            None,
        ),
        COMMAND_LIMIT,
    );
    assert_ne!(refused.status.code(), Some(0), "{}", show(&refused));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("policies/prune.json"), "{said}");
    assert_eq!(folders(&fixture).await.1, complete_before);

    let pruned = fixture.backup_cloud(&["prune", "--yes"]);
    assert_eq!(pruned.status.code(), Some(0), "{}", show(&pruned));
    let (after, complete_after) = folders(&fixture).await;
    assert_eq!(complete_after, expected, "{}", show(&pruned));
    let fresh_stamp = layout::parse_backup(&fresh).unwrap().timestamp;
    let stale_stamp = layout::parse_backup(&stale).unwrap().timestamp;
    assert!(after.contains(&fresh_stamp), "within the grace: kept");
    assert!(!after.contains(&stale_stamp), "past the grace: removed");
    assert_eq!(
        open_uploads(&fixture, &stale).await,
        0,
        "its upload aborted"
    );
    assert_eq!(
        open_uploads(&fixture, &fresh).await,
        1,
        "the fresh one's left"
    );
    assert_eq!(
        open_uploads(&fixture, &upload_only).await,
        0,
        "found and aborted"
    );

    // the catalog lists what is left, newest first, one JSON object each
    let listed = fixture.backup_cloud(&["backups", "--output", "json"]);
    assert_eq!(listed.status.code(), Some(0), "{}", show(&listed));
    let entries: Vec<Value> = stdout(&listed)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), expected.len() + 1);
    let stamps: Vec<&str> = entries
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] > w[1]),
        "newest first: {stamps:?}"
    );
    let of = |stamp: &str| entries.iter().find(|e| e["timestamp"] == stamp).unwrap();
    assert_eq!(of(&fresh_stamp)["state"], "incomplete");
    let newest = of(&layout::timestamp(real_at));
    assert_eq!(newest["state"], "complete");
    assert_eq!(newest["format"], "pg_dump-custom");
    assert!(newest["size_bytes"].as_u64().unwrap() > 1000, "{newest}");
    assert_eq!(newest["recipients"].as_array().unwrap().len(), 1);
    assert_eq!(newest["last_verify"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn object_lock_holds_a_backup_until_its_date_and_a_later_prune_removes_every_version() {
    use aws_sdk_s3::types::ObjectLockMode;
    use backup_cloud::schema::{Retention, RetentionMode};
    let (holder, database, fixture) = sample_fixture("lifelock_").await;
    let fixture = fixture.on_locked_bucket("bc-lifelock-", &holder).await;
    let mut config = fixture.config(fixture.postgres_job(&database));
    // the lock asked for is 30 days; max_age (3 days) shortens it
    config.storage.retention = Some(Retention {
        mode: RetentionMode::Compliance,
        days: 30,
    });
    config.retention = Some(RetentionRules {
        keep_last: Some(1),
        max_age: Some("3d".into()),
        ..RetentionRules::default()
    });
    fixture.write(&config);
    let started = OffsetDateTime::now_utc();
    let (_, address) = back_up(&fixture).await;
    let real = prefix_of(
        address
            .strip_prefix(&format!("s3://{}/", fixture.bucket))
            .unwrap(),
    );
    let manifest_key = layout::manifest(&real);
    let until = fixture
        .aws
        .s3
        .get_object_retention()
        .bucket(&fixture.bucket)
        .key(&manifest_key)
        .send()
        .await
        .unwrap()
        .retention()
        .unwrap()
        .retain_until_date()
        .unwrap()
        .secs();
    let three_days: i64 = (started + DAY * 3_i32).unix_timestamp();
    assert!(
        (three_days - 5..=three_days + 600).contains(&until),
        "locked until {until}, not max_age's {three_days}"
    );

    // an older backup locked for 20 more seconds, in two versions
    let older = copy_backup(&fixture, &real, started - DAY).await;
    let older_manifest = layout::manifest(&older);
    let manifest_text = String::from_utf8(fixture.get(&older_manifest).await).unwrap();
    put(&fixture, &older_manifest, manifest_text).await;
    let lock_until = OffsetDateTime::now_utc() + time::Duration::seconds(20);
    for key in fixture.keys(&older).await {
        let versions = fixture
            .aws
            .s3
            .list_object_versions()
            .bucket(&fixture.bucket)
            .prefix(&key)
            .send()
            .await
            .unwrap();
        for version in versions.versions() {
            fixture
                .aws
                .s3
                .put_object_retention()
                .bucket(&fixture.bucket)
                .key(&key)
                .version_id(version.version_id().unwrap())
                .retention(
                    aws_sdk_s3::types::ObjectLockRetention::builder()
                        .mode(ObjectLockMode::Compliance.as_str().into())
                        .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                            lock_until.unix_timestamp(),
                        ))
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
    }

    let first = fixture.backup_cloud(&["prune", "--yes"]);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    let said = stdout(&first);
    assert!(said.contains("retained until"), "{said}");
    assert!(said.contains("a later prune removes it"), "{said}");
    assert!(!fixture.keys(&older).await.is_empty());

    tokio::time::sleep(Duration::from_secs(22)).await;
    let second = fixture.backup_cloud(&["prune", "--yes"]);
    assert_eq!(second.status.code(), Some(0), "{}", show(&second));
    assert!(stdout(&second).contains("removed ("), "{}", show(&second));
    let left = fixture
        .aws
        .s3
        .list_object_versions()
        .bucket(&fixture.bucket)
        .prefix(&older)
        .send()
        .await
        .unwrap();
    assert!(
        left.versions().is_empty() && left.delete_markers().is_empty(),
        "every version and marker gone, not hidden behind delete markers: {left:?}"
    );
    // the newest stays: kept by keep_last, and locked anyway
    assert!(fixture.keys(&real).await.contains(&manifest_key));
    let listed = fixture.backup_cloud(&["backups"]);
    assert_eq!(listed.status.code(), Some(0), "{}", show(&listed));
    assert!(
        stdout(&listed).contains(&(started + DAY * 3_i32).date().to_string()),
        "the catalog shows the lock's date: {}",
        show(&listed)
    );
}

/// `check` as the restore side, with `args` after it: its exit code, its
/// stdout, and all it said (for messages).
fn check(fixture: &Fixture, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let output = fixture.backup_cloud(&all);
    (output.status.code(), stdout(&output), show(&output))
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_what_is_missing_with_its_documented_codes() {
    let (holder, database, fixture) = sample_fixture("lifecheck_").await;
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.checks = Some(Checks {
        max_age_alert: Some("26h".into()),
        ..Checks::default()
    });
    fixture.write(&config);
    let job = fixture.job.clone();

    let (code, said, _) = check(&fixture, &[]);
    assert_eq!(code, Some(10), "no backup yet: {said}");
    assert!(said.contains("has no complete backup"), "{said}");

    let (_, address) = back_up(&fixture).await;
    let (code, said, _) = check(&fixture, &[]);
    assert_eq!(code, Some(11), "{said}");
    assert!(said.contains("never passed a verify"), "{said}");
    assert!(said.contains("never passed a drill"), "{said}");

    let home = holder.home.path();
    let verified = restore_side(&fixture, &["verify", "--latest", "--job", &job], home);
    assert_eq!(verified.status.code(), Some(0), "{}", show(&verified));
    let server = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
        pg_port()
    );
    {
        let _drills = DRILLS.lock().await;
        let drilled = restore_side(
            &fixture,
            &[
                "drill", "--random", "--within", "7d", "--job", &job, "--to", &server,
            ],
            home,
        );
        assert_eq!(drilled.status.code(), Some(0), "{}", show(&drilled));
    }
    let (code, said, all) = check(&fixture, &[]);
    assert_eq!(code, Some(0), "all good: {all}");
    assert!(said.contains("backed up and proven"), "{said}");
    // the records lie beside the backup, and verify does not mind them
    let prefix = prefix_of(
        address
            .strip_prefix(&format!("s3://{}/", fixture.bucket))
            .unwrap(),
    );
    // an export of the latest is recorded too, and the catalog shows it
    let media = tempfile::tempdir().unwrap();
    let exported = restore_side(
        &fixture,
        &[
            "export",
            "--latest",
            "--job",
            &job,
            "--to",
            media.path().to_str().unwrap(),
        ],
        home,
    );
    assert_eq!(exported.status.code(), Some(0), "{}", show(&exported));
    let listed = fixture.backup_cloud(&["backups", "--output", "json"]);
    let entry: Value = serde_json::from_str(stdout(&listed).lines().next().unwrap()).unwrap();
    for kind in ["last_verify", "last_drill", "last_export"] {
        assert_eq!(entry[kind]["result"], "passed", "{kind}: {entry}");
    }
    let records = fixture.keys(&layout::checks(&prefix)).await;
    assert_eq!(records.len(), 3, "{records:?}");
    let record: Value = serde_json::from_slice(&fixture.get(&records[0]).await).unwrap();
    assert_eq!(record["result"], "passed");
    assert!(
        record["ran_by"]
            .as_str()
            .unwrap()
            .contains("backup-cloud-restore-"),
        "{record}"
    );
    let again = restore_side(&fixture, &["verify", &address], home);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));

    // Prometheus's own parser reads the gauges
    let (code, metrics, all) = check(&fixture, &["--output", "prometheus"]);
    assert_eq!(code, Some(0), "{all}");
    let parsed = parse_prometheus(&metrics);
    let sample = |name: &str| -> f64 {
        let start = format!("{name} {{'job': '{job}'}} ");
        let line = parsed.lines().find(|l| l.starts_with(&start));
        line.unwrap_or_else(|| panic!("no {name}: {parsed}"))[start.len()..]
            .parse()
            .unwrap()
    };
    assert_eq!(sample("backup_cloud_last_verify_success"), 1.0, "{parsed}");
    assert_eq!(sample("backup_cloud_last_drill_success"), 1.0, "{parsed}");
    assert_eq!(sample("backup_cloud_check_problems"), 0.0, "{parsed}");
    assert_eq!(sample("backup_cloud_complete_backups"), 1.0, "{parsed}");

    // a newest record that does not read proves nothing: it is a failure,
    // not a gap an older passing record fills
    use backup_cloud::schema::CheckKind;
    let soon = OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let garbage = layout::check_record(&prefix, soon, CheckKind::Verify);
    put(&fixture, &garbage, "{ cut short".into()).await;
    let (code, said, all) = check(&fixture, &[]);
    assert_eq!(code, Some(12), "{all}");
    assert!(said.contains("the newest verify of"), "{said}");
    fixture
        .aws
        .s3
        .delete_object()
        .bucket(&fixture.bucket)
        .key(&garbage)
        .send()
        .await
        .unwrap();
    // a passing drill record dated a year ahead (a wrong clock) counts
    // for nothing, so it cannot hide the failure below
    let drill_record = records.iter().find(|k| k.ends_with("-drill.json")).unwrap();
    let ahead = layout::check_record(
        &prefix,
        OffsetDateTime::now_utc() + DAY * 365_i32,
        CheckKind::Drill,
    );
    let body = String::from_utf8(fixture.get(drill_record).await).unwrap();
    put(&fixture, &ahead, body).await;

    // a drill that fails (an object altered under the backup) is named
    let dump = fixture
        .keys(&prefix)
        .await
        .into_iter()
        .find(|k| k.ends_with(".gpg"))
        .unwrap();
    put(&fixture, &dump, "not what was encrypted".into()).await;
    {
        let _drills = DRILLS.lock().await;
        let drilled = restore_side(
            &fixture,
            &["drill", "--latest", "--job", &job, "--to", &server],
            home,
        );
        assert_eq!(drilled.status.code(), Some(7), "{}", show(&drilled));
    }
    let (code, said, all) = check(&fixture, &["--output", "json"]);
    assert_eq!(code, Some(12), "{all}");
    let health: Value = serde_json::from_str(said.lines().next().unwrap()).unwrap();
    assert_eq!(health["last_drill"]["result"], "failed", "{health}");
    assert!(
        health["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["problem"] == "failed" && p["kind"] == "drill"),
        "{health}"
    );

    // a job whose newest backup is two days old
    let old_job = unique("old-");
    let mut two_jobs = config.clone();
    two_jobs
        .jobs
        .insert(old_job.clone(), fixture.postgres_job(&database));
    fixture.write(&two_jobs);
    let parsed = layout::parse_backup(&prefix).unwrap();
    let old_prefix = layout::backup(
        &parsed.prefix,
        &old_job,
        &layout::timestamp(OffsetDateTime::now_utc() - DAY * 2_i32),
    );
    for key in fixture.keys(&prefix).await {
        if key.contains("/checks/") {
            continue;
        }
        let body = fixture.get(&key).await;
        let body = if key.ends_with(layout::MANIFEST_NAME) {
            String::from_utf8(body)
                .unwrap()
                .replace(&prefix, &old_prefix)
                .into_bytes()
        } else {
            body
        };
        fixture
            .aws
            .s3
            .put_object()
            .bucket(&fixture.bucket)
            .key(key.replacen(&prefix, &old_prefix, 1))
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let (code, said, all) = check(&fixture, &["--job", &old_job]);
    assert_eq!(code, Some(10), "{all}");
    assert!(said.contains("older than max_age_alert (26h)"), "{said}");
}

/// `text` as the Prometheus Python client's parser reads it: one line per
/// sample, `name {labels} value`; panics if it does not parse.
fn parse_prometheus(text: &str) -> String {
    use std::io::Write;
    let venv = std::env::var("BACKUP_CLOUD_TEST_STATE_DIR").unwrap() + "/venv/bin/python";
    let mut child = std::process::Command::new(venv)
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n\
             for family in parse(sys.stdin.read()):\n    \
                 assert family.type == 'gauge', family\n    \
                 for s in family.samples: print(s.name, s.labels, s.value)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", show(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// `aws ARGS --output json` as the admin; its answer.
fn aws_cli(args: &[&str]) -> Value {
    let output = run_ok(
        std::process::Command::new("aws")
            .args(["--endpoint-url", &endpoint(), "--region", REGION])
            .args(args)
            .args(["--output", "json"])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// The (subject, message) of every notification the queue has received
/// within `limit`, waiting until there are `count`.
async fn notifications(queue_url: &str, count: usize, limit: Duration) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + limit;
    while seen.len() < count && std::time::Instant::now() < deadline {
        let answer = aws_cli(&[
            "sqs",
            "receive-message",
            "--queue-url",
            queue_url,
            "--max-number-of-messages",
            "10",
            "--wait-time-seconds",
            "2",
        ]);
        for message in answer["Messages"].as_array().into_iter().flatten() {
            let body: Value = serde_json::from_str(message["Body"].as_str().unwrap()).unwrap();
            seen.push((
                body["Subject"].as_str().unwrap_or_default().to_owned(),
                body["Message"].as_str().unwrap_or_default().to_owned(),
            ));
            aws_cli(&[
                "sqs",
                "delete-message",
                "--queue-url",
                queue_url,
                "--receipt-handle",
                message["ReceiptHandle"].as_str().unwrap(),
            ]);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_and_check_s_problems_are_announced_on_the_topic_without_secrets() {
    let (_holder, database, fixture) = sample_fixture("lifenotify_").await;
    // a wrong password the canary: it must appear in no message
    let canary = format!("canary-{}", unique("pw"));
    fixture.set_password(&canary, None).await;
    let topic = aws_cli(&[
        "sns",
        "create-topic",
        "--name",
        &unique("backup-cloud-alerts-"),
    ])["TopicArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let queue = aws_cli(&["sqs", "create-queue", "--queue-name", &unique("alerts-")])["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let queue_arn = aws_cli(&[
        "sqs",
        "get-queue-attributes",
        "--queue-url",
        &queue,
        "--attribute-names",
        "QueueArn",
    ])["Attributes"]["QueueArn"]
        .as_str()
        .unwrap()
        .to_owned();
    aws_cli(&[
        "sns",
        "subscribe",
        "--topic-arn",
        &topic,
        "--protocol",
        "sqs",
        "--notification-endpoint",
        &queue_arn,
    ]);
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.notify = Some(Notify {
        sns_topic_arn: topic.clone(),
    });
    fixture.write(&config);

    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(4), "{}", show(&output));
    let (code, _, all) = check(&fixture, &[]);
    assert_eq!(code, Some(10), "{all}");

    let received = notifications(&queue, 2, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 2, "{received:?}");
    let job = &fixture.job;
    let failed = received
        .iter()
        .find(|(subject, _)| subject == &format!("backup-cloud: job {job} failed"))
        .unwrap_or_else(|| panic!("{received:?}"));
    assert!(failed.1.contains("reason: "), "{failed:?}");
    assert!(failed.1.contains("(exit 4)"), "{failed:?}");
    let checked = received
        .iter()
        .find(|(subject, _)| subject.starts_with(&format!("backup-cloud check: job {job} has ")))
        .unwrap_or_else(|| panic!("{received:?}"));
    assert!(
        checked.1.contains("- has no complete backup"),
        "{checked:?}"
    );
    for (subject, message) in &received {
        assert!(
            !subject.contains(&canary) && !message.contains(&canary),
            "the password leaked: {subject} {message}"
        );
    }
}
