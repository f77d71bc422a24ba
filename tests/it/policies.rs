//! The IAM documents in `policies/`, measured against the requests the
//! code really makes.
//!
//! Least privilege rots in two directions: someone adds an AWS call and
//! the policy no longer lets it run, or someone removes one and the policy
//! keeps granting it. A model of which calls the code makes rots too (it
//! once missed the leases, the spot request and the KMS condition), so
//! this test runs the real flows — a spot backup under a customer-managed
//! KMS key with retention, one that fails mid-upload, verify/restore/drill,
//! a detached launch ended by `terminate`, `plan`, `status`, `list`,
//! `reap`, backups from temporary RDS and Aurora databases — as the
//! actors, under the AWS gate's enforcement (`localstack/README.md`), and
//! reads the gate's log: every request was allowed, and every action each
//! policy statement grants was needed by some request it allowed. The
//! shape checks below keep what a log cannot
//! show: the conditions that confine each grant.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::config::Notify;
use crate::common::faultproxy::FaultProxy;
use crate::common::rds::Production;
use crate::common::*;
use backup_cloud::schema::{Retention, RetentionMode};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---- a small IAM evaluator ------------------------------------------------

fn policy(file: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// IAM wildcard match: `*` any run, `?` any one character.
fn glob(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn statements(document: &Value) -> Vec<&Value> {
    match &document["Statement"] {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    }
}

/// The statements with `effect` that apply to `action` on `resource`
/// (conditions aside).
fn applying<'a>(document: &'a Value, effect: &str, action: &str, resource: &str) -> Vec<&'a Value> {
    statements(document)
        .into_iter()
        .filter(|s| s["Effect"] == effect)
        .filter(|s| strings(&s["Action"]).iter().any(|a| glob(a, action, true)))
        .filter(|s| {
            strings(&s["Resource"])
                .iter()
                .any(|r| glob(r, resource, false))
        })
        .collect()
}

/// The Allow statements granting `action` on `resource` (conditions aside).
fn granting<'a>(document: &'a Value, action: &str, resource: &str) -> Vec<&'a Value> {
    applying(document, "Allow", action, resource)
}

// ---- the resources the code touches ------------------------------------------

const BUCKET: &str = "arn:aws:s3:::BUCKET";

fn object(key: &str) -> String {
    format!("{BUCKET}/PREFIX/{key}")
}

/// The value of a condition operator/key pair in a statement.
fn condition<'a>(statement: &'a Value, operator: &str, key: &str) -> Option<&'a Value> {
    statement["Condition"]
        .get(operator)
        .and_then(|c| c.get(key))
}

#[test]
fn the_controller_launches_tags_and_terminates_only_managed_instances() {
    let document = policy("policies/controller.json");
    let instance = "arn:aws:ec2:us-east-1:ACCOUNT:instance/i-0123abcd";
    for statement in granting(&document, "ec2:RunInstances", instance) {
        assert_eq!(
            condition(
                statement,
                "StringEquals",
                "aws:RequestTag/backup-cloud:managed"
            ),
            Some(&Value::from("true")),
            "RunInstances on instances must require the managed tag: {statement}"
        );
    }
    // CreateTags without this condition would let the controller tag any
    // instance as managed and then terminate it.
    for statement in granting(&document, "ec2:CreateTags", instance) {
        assert_eq!(
            condition(statement, "StringEquals", "ec2:CreateAction"),
            Some(&Value::from("RunInstances")),
            "CreateTags only at launch: {statement}"
        );
    }
    for statement in granting(&document, "ec2:TerminateInstances", instance) {
        assert_eq!(
            condition(
                statement,
                "StringEquals",
                "aws:ResourceTag/backup-cloud:managed"
            ),
            Some(&Value::from("true")),
            "{statement}"
        );
    }
    for statement in granting(
        &document,
        "iam:PassRole",
        "arn:aws:iam::ACCOUNT:role/backup-cloud-agent",
    ) {
        assert_eq!(
            condition(statement, "StringEquals", "iam:PassedToService"),
            Some(&Value::from("ec2.amazonaws.com")),
            "{statement}"
        );
    }
}

#[test]
fn the_controller_may_modify_or_delete_only_its_tagged_temporary_databases() {
    let document = policy("policies/controller.json");
    let production = "arn:aws:rds:us-east-1:ACCOUNT:db:orders-prod";
    let temporary =
        "arn:aws:rds:us-east-1:ACCOUNT:db:backup-cloud-orders-20261201t031000z-0a1b2c3d";
    for action in [
        "rds:ModifyDBInstance",
        "rds:DeleteDBInstance",
        "rds:ModifyDBCluster",
        "rds:DeleteDBCluster",
        "rds:RebootDBInstance",
        "rds:StopDBInstance",
        "rds:PromoteReadReplica",
    ] {
        let cluster = production.replace(":db:", ":cluster:");
        assert!(
            granting(&document, action, production).is_empty()
                && granting(&document, action, &cluster).is_empty(),
            "{action} on a database not named as ours: never"
        );
        for statement in granting(&document, action, temporary) {
            assert_eq!(
                condition(
                    statement,
                    "StringEquals",
                    "aws:ResourceTag/backup-cloud:managed"
                ),
                Some(&Value::from("true")),
                "{action} only on a database tagged as ours: {statement}"
            );
        }
    }
    // Every grant that can create a database from a snapshot, or tag one,
    // asks for the managed tag on it. A point-in-time restore authorizes the
    // production database and the new one as the same resource type, and
    // only the new one carries the request's tags: its grant cannot ask for
    // them, and what it creates untagged the controller can neither modify
    // nor delete.
    for action in [
        "rds:RestoreDBInstanceFromDBSnapshot",
        "rds:CreateDBInstance",
        "rds:AddTagsToResource",
    ] {
        for resource in [production, temporary] {
            for statement in granting(&document, action, resource) {
                assert_eq!(
                    condition(
                        statement,
                        "StringEquals",
                        "aws:RequestTag/backup-cloud:managed"
                    ),
                    Some(&Value::from("true")),
                    "{action} on {resource}: {statement}"
                );
            }
        }
    }
}

#[test]
fn only_ec2_may_assume_the_agent_role() {
    let document = policy("policies/ec2-trust.json");
    let all = statements(&document);
    assert_eq!(all.len(), 1, "{document}");
    assert_eq!(all[0]["Effect"], "Allow");
    assert_eq!(strings(&all[0]["Action"]), ["sts:AssumeRole"]);
    assert_eq!(
        all[0]["Principal"],
        serde_json::json!({ "Service": "ec2.amazonaws.com" })
    );
}

/// The Deny statements of the bucket policy that apply to `action` on `resource`.
fn denying<'a>(document: &'a Value, action: &str, resource: &str) -> Vec<&'a Value> {
    applying(document, "Deny", action, resource)
}

#[test]
fn the_bucket_policy_requires_tls_and_protects_backups() {
    let document = policy("policies/bucket.json");
    let backup = object("backup/orders/20261127T210000Z/pg_dump.custom.gpg");
    let tls: Vec<_> = denying(&document, "s3:GetObject", &backup)
        .into_iter()
        .filter(|s| condition(s, "Bool", "aws:SecureTransport") == Some(&Value::from("false")))
        .collect();
    assert_eq!(tls.len(), 1, "one statement refuses plain HTTP: {document}");
    assert!(
        strings(&tls[0]["Action"]) == ["s3:*"]
            && !denying(&document, "s3:ListBucket", BUCKET).is_empty(),
        "TLS is required for every request, on the bucket and its objects: {}",
        tls[0]
    );
    for action in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutLifecycleConfiguration",
    ] {
        let resource =
            if action.starts_with("s3:PutBucket") || action == "s3:PutLifecycleConfiguration" {
                BUCKET.to_owned()
            } else {
                backup.clone()
            };
        let deny = denying(&document, action, &resource);
        assert!(
            !deny.is_empty(),
            "bucket policy must deny {action} on {resource}"
        );
        // the writers (the agent role) are never exempt
        for statement in deny {
            let exempt = strings(
                condition(statement, "ArnNotLike", "aws:PrincipalArn").unwrap_or(&Value::Null),
            );
            assert!(
                exempt.iter().all(|arn| !glob(
                    arn,
                    "arn:aws:iam::ACCOUNT:role/backup-cloud-agent",
                    false
                )),
                "the agent role must not be exempt from denying {action}: {statement}"
            );
        }
    }
    let lock = policy("policies/object-lock.json");
    assert_eq!(lock["ObjectLockEnabled"], "Enabled");
    assert_eq!(lock["Rule"]["DefaultRetention"]["Mode"], "COMPLIANCE");
}

#[test]
fn the_glob_matcher_behaves_like_iam() {
    assert!(glob(
        "arn:aws:s3:::B/P/backup/*",
        "arn:aws:s3:::B/P/backup/x/y",
        false
    ));
    assert!(!glob(
        "arn:aws:s3:::B/P/backup/*",
        "arn:aws:s3:::B/P/jobs/x",
        false
    ));
    assert!(glob("s3:Get*", "s3:getobject", true));
    assert!(glob("a?c", "abc", false) && !glob("a?c", "ac", false));
}

#[test]
fn the_policies_use_only_the_documented_placeholders() {
    // Filled in by whoever installs them, and by the tests' actors.
    const PLACEHOLDERS: [&str; 5] = [
        "BUCKET",
        "PREFIX",
        "ACCOUNT",
        "KMS_KEY_ID",
        "BUCKET_KMS_KEY_ID",
    ];
    fn texts(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.push(k.clone());
                texts(v, out)
            }),
            _ => {}
        }
    }
    for file in ["controller", "instance", "restore", "bucket"] {
        let mut found = Vec::new();
        texts(&policy(&format!("policies/{file}.json")), &mut found);
        let words: BTreeSet<&str> = found
            .iter()
            .flat_map(|t| t.split(|c: char| !(c.is_ascii_uppercase() || c == '_')))
            .filter(|w| w.len() >= 4)
            .collect();
        for word in &words {
            assert!(PLACEHOLDERS.contains(word), "policies/{file}.json: {word}");
        }
        for needed in ["BUCKET", "PREFIX"] {
            assert!(
                words.contains(needed),
                "policies/{file}.json lacks {needed}"
            );
        }
    }
}

/// Whether `statement`'s string conditions hold for a request's condition
/// keys: `StringEquals`/`StringLike` (and their `IfExists`) on the keys
/// the gate logged; other operators (`Bool`, `Null`, ...) are taken to
/// hold (the gate already evaluated the request; this only tells apart
/// statements granting the same action on the same resource).
fn conditions_hold(statement: &Value, context: &Value) -> bool {
    let Some(conditions) = statement["Condition"].as_object() else {
        return true;
    };
    conditions.iter().all(|(operator, keys)| {
        let base = operator.trim_end_matches("IfExists");
        if base != "StringEquals" && base != "StringLike" {
            return true;
        }
        keys.as_object().unwrap().iter().all(|(key, wanted)| {
            match context.get(key).and_then(Value::as_str) {
                None => operator.ends_with("IfExists"),
                Some(value) => strings(wanted).iter().any(|w| {
                    if base == "StringLike" {
                        glob(w, value, false)
                    } else {
                        w == value
                    }
                }),
            }
        })
    })
}

/// The inline policy an actor is held to, as the gate's actors made it
/// (placeholders filled), read back from IAM with the admin key.
fn installed_policy(kind: &str, name: &str, policy: &str) -> Value {
    let output = run_ok(
        std::process::Command::new("aws")
            .args(["--endpoint-url", &endpoint(), "--region", REGION, "iam"])
            .args([
                kind,
                if kind == "get-user-policy" {
                    "--user-name"
                } else {
                    "--role-name"
                },
                name,
                "--policy-name",
                policy,
                "--query",
                "PolicyDocument",
                "--output",
                "json",
            ])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
    );
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    // the CLI may hand the document back URL-encoded or as text
    match document {
        Value::String(text) => serde_json::from_str(&text).unwrap(),
        document => document,
    }
}

/// Runs `args` as the fixture's actor for them and requires `exit`.
fn expect(fixture: &Fixture, args: &[&str], gnupg_home: &Path, exit: i32) {
    let output = fixture
        .command(args)
        .env("GNUPGHOME", gnupg_home)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit),
        "{args:?}: {}",
        show(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_of_the_real_flows_was_allowed_and_every_grant_was_needed() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("pol_");
    create_sample_database(&database, 2_000);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;

    // The test's own setup, as the admin: a customer-managed key for the
    // password and the bucket's default encryption, and a bucket with
    // Object Lock for `storage.retention`.
    let locked = unique("bc-pol-");
    fixture.create_locked_bucket(&locked, &holder).await;
    let key_id = fixture.use_customer_managed_key(&locked).await;
    let mut fixture = Fixture {
        bucket: locked,
        ..fixture
    };
    fixture.renew_actors(Some(&key_id));
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.only_job().spot = Some(true);
    config.storage.retention = Some(Retention {
        mode: RetentionMode::Compliance,
        days: 1,
    });
    // failed jobs and check's problems are announced on a topic
    let topic = fixture
        .aws
        .sns
        .create_topic()
        .name(unique("backup-cloud-alerts-"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    config.notify = Some(Notify {
        sns_topic_arn: topic,
    });
    fixture.write(&config);
    let _drills = DRILLS.lock().await;
    let marker = gate::log_marker(&endpoint());
    let home = holder.home.path();
    let job = fixture.job.clone();

    // A spot backup, then everything the restore side does with it.
    expect(&fixture, &["run", "--job", &job], home, 0);
    let manifest = fixture.status().await["manifest_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let address = format!("s3://{}/{manifest}", fixture.bucket);
    expect(&fixture, &["verify", &address], home, 0);
    let target = unique("pol_target_");
    psql("postgres", &format!("CREATE DATABASE {target}"));
    let server = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}",
        pg_port()
    );
    expect(
        &fixture,
        &["restore", &address, "--to", &format!("{server}/{target}")],
        home,
        0,
    );
    expect(
        &fixture,
        &["drill", &address, "--to", &format!("{server}/postgres")],
        home,
        0,
    );
    // The lifecycle: the catalog, checks, a scheduler's drill, and a
    // prune that removes an abandoned backup with its open upload.
    expect(&fixture, &["backups"], home, 0);
    expect(&fixture, &["verify", "--latest", "--job", &job], home, 0);
    expect(&fixture, &["check"], home, 0);
    let abandoned = format!(
        "{}/backup/{job}/20200101T000000Z/data/0001.dat.gpg",
        fixture.prefix
    );
    fixture
        .aws
        .s3
        .put_object()
        .bucket(&fixture.bucket)
        .key(&abandoned)
        .body(b"partial".to_vec().into())
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
        .send()
        .await
        .unwrap();
    fixture
        .aws
        .s3
        .create_multipart_upload()
        .bucket(&fixture.bucket)
        .key(&abandoned)
        .send()
        .await
        .unwrap();
    expect(&fixture, &["prune", "--yes"], home, 0);
    // check on a job never run: a problem, announced
    let mut unrun = config.clone();
    let never = unique("never-");
    unrun
        .jobs
        .insert(never.clone(), fixture.postgres_job(&database));
    fixture.write(&unrun);
    expect(&fixture, &["check", "--job", &never], home, 10);
    fixture.write(&config);
    assert!(fixture.keys(&abandoned).await.is_empty(), "pruned");
    // Backups from temporary RDS databases: a DB instance's snapshot and
    // point in time, an Aurora cluster's snapshot and clone; plan and reap.
    let instance = Production::instance(&fixture.aws, "postgres").await;
    instance.snapshot(&fixture.aws).await;
    let cluster = Production::cluster(&fixture.aws, "aurora-postgresql").await;
    cluster.snapshot(&fixture.aws).await;
    for (production, source) in [
        (&instance, "snapshot"),
        (&instance, "point-in-time"),
        (&cluster, "snapshot"),
        (&cluster, "point-in-time"),
    ] {
        let mut restored = config.clone();
        restored
            .jobs
            .insert(job.clone(), production.job(&fixture, &[("source", source)]));
        fixture.write(&restored);
        expect(&fixture, &["plan", "--job", &job], home, 0);
        expect(&fixture, &["run", "--job", &job], home, 0);
        expect(&fixture, &["reap"], home, 0);
    }
    fixture.write(&config);
    // The operator's commands.
    expect(&fixture, &["plan", "--job", &job], home, 0);
    expect(&fixture, &["status"], home, 0);
    expect(&fixture, &["list"], home, 0);
    expect(&fixture, &["reap"], home, 0);
    expect(&fixture, &["launch", "--job", &job], home, 0);
    // At once: the lease names the instance EC2 does not list yet.
    expect(&fixture, &["terminate", &job], home, 0);
    // A backup whose upload cannot complete: the agent aborts it.
    let proxy = FaultProxy::start(&endpoint());
    let fail_uploads = |method: &str| {
        proxy.add_rule(json!({
            "method": method,
            "query_contains": "uploadId",
            "action": "error",
            "status": 500,
            "code": "InternalError",
            "count": -1,
        }))
    };
    fail_uploads("POST");
    config
        .instance
        .tags
        .insert("backup-cloud-sim:endpoint".to_owned(), proxy.url());
    fixture.write(&config);
    expect(&fixture, &["run", "--job", &job], home, 4);
    // Once more, with the agent unable to abort it either: the controller
    // aborts the upload the failed agent left open.
    fail_uploads("DELETE");
    expect(&fixture, &["run", "--job", &job], home, 4);

    // What the gate decided, per actor, and which statement allowed it.
    let user = |arn: &str, policy: &str| {
        let name = arn.rsplit('/').next().unwrap();
        (
            arn.to_owned(),
            installed_policy("get-user-policy", name, policy),
        )
    };
    let role = &fixture.actors.instance_profile;
    let prune = &fixture.actors.prune_role;
    let actors = [
        (
            "controller",
            user(&fixture.actors.controller_arn, "controller"),
        ),
        ("restore", user(&fixture.actors.restore_arn, "restore")),
        (
            "instance",
            (
                role.clone(),
                installed_policy("get-role-policy", role, "instance"),
            ),
        ),
        (
            "prune",
            (
                prune.clone(),
                installed_policy("get-role-policy", prune, "prune"),
            ),
        ),
    ];
    let mut problems = Vec::new();
    let mut table = BTreeMap::new();
    for (name, (actor, document)) in &actors {
        let (entries, _) = gate::log(&endpoint(), marker, actor);
        assert!(!entries.is_empty(), "{name}: no request logged");
        let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for entry in &entries {
            let decision = entry["decision"].as_str().unwrap_or_default();
            let action = entry["action"].as_str().unwrap_or_default();
            let resource = entry["resource"].as_str().unwrap_or_default();
            if decision.starts_with("refused:") {
                continue; // refused by the service, not by IAM (a profile not known yet)
            }
            if decision != "allow" {
                problems.push(format!("{name}: {decision} {action} on {resource}"));
                continue;
            }
            let sids: Vec<String> = granting(document, action, resource)
                .into_iter()
                .filter(|s| conditions_hold(s, &entry["context"]))
                .map(|s| s["Sid"].as_str().unwrap_or("?").to_owned())
                .collect();
            for sid in &sids {
                used.entry(sid.clone())
                    .or_default()
                    .insert(action.to_owned());
            }
            table
                .entry((name.to_string(), action.to_owned(), sids.join(", ")))
                .or_insert(resource.to_owned());
        }
        for statement in statements(document) {
            if statement["Effect"] != "Allow" {
                continue;
            }
            let sid = statement["Sid"].as_str().unwrap_or("?");
            for action in strings(&statement["Action"]) {
                if !used.get(sid).is_some_and(|a| a.contains(&action)) {
                    problems.push(format!(
                        "{name}: {sid} grants {action}, which no request of the real flows needed"
                    ));
                }
            }
        }
    }
    for ((actor, action, sids), resource) in &table {
        println!("| {actor} | {action} | {resource} | {sids} |");
    }
    assert!(
        problems.is_empty(),
        "policy problems:\n  {}",
        problems.join("\n  ")
    );
}
