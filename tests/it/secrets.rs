//! The database password never leaves the SecureString and the agent's
//! private password file: a full backup (and a failing one) with a
//! recognisable password, then a search for it — plain, base64 and hex —
//! in everything an operator, a log shipper or an attacker with read
//! access could see: the user-data, the job spec, the tags, the status
//! parameter, the manifest, the instance's console log, and the
//! controller's output at `RUST_LOG=trace`. The same for the master
//! password the controller makes for a temporary RDS database.

use std::process::Output;
use std::time::Duration;

use base64::Engine as _;

use crate::common::config::Job;
use crate::common::rds::{
    assert_nothing_left, restored_rows, temporary_password_parameter, Production,
};
use crate::common::*;

/// Fails naming `place` if `text` holds the password in any encoding.
fn assert_clean(place: &str, text: &[u8], password: &str) {
    let text = String::from_utf8_lossy(text);
    for form in [
        password.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(password),
        hex::encode(password),
    ] {
        assert!(
            !text.contains(&form),
            "the password leaked into {place} (as {form:?})"
        );
    }
}

fn run_traced(fixture: &Fixture) -> Output {
    fixture
        .command(&["run", "--job", &fixture.job])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap()
}

/// Everything EC2 shows about the job's instances: user-data and tags.
async fn instance_surfaces(fixture: &Fixture) -> Vec<(String, Vec<u8>)> {
    let mut surfaces = Vec::new();
    for instance in fixture.instances().await {
        let id = instance.instance_id().unwrap().to_owned();
        surfaces.push((
            format!("the tags of {id}"),
            format!("{:?}", instance.tags()).into_bytes(),
        ));
        let attribute = fixture
            .aws
            .ec2
            .describe_instance_attribute()
            .instance_id(&id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let encoded = attribute
            .user_data()
            .and_then(|u| u.value())
            .unwrap()
            .to_owned();
        let user_data = base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap();
        assert!(
            user_data.starts_with(b"#!/bin/bash"),
            "user-data of {id} was read"
        );
        surfaces.push((format!("the user-data of {id}"), user_data));
        let sim_dir = std::env::var("BACKUP_CLOUD_TEST_SIM_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.state/sim").to_owned());
        let console = std::fs::read(format!("{sim_dir}/{id}/console.log"))
            .unwrap_or_else(|e| panic!("console log of {id}: {e}"));
        assert!(!console.is_empty(), "the console log of {id} is empty");
        surfaces.push((format!("the console log of {id}"), console));
    }
    assert!(!surfaces.is_empty(), "no instance found");
    surfaces
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_appears_nowhere() {
    require_services();
    let password = format!("S3cr3t-Canary-{}", unique(""));
    let role = unique("canary_role_");
    psql(
        "postgres",
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT pg_read_all_data TO {role};"
        ),
    );
    let database = unique("secrets_");
    create_sample_database(&database, 2_000);
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, &database, &password).await;
    let as_role = |database: &str| {
        fixture.config(Job {
            user: role.clone(),
            ..fixture.postgres_job(database)
        })
    };
    fixture.write(&as_role(&database));

    let output = run_traced(&fixture);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TRACE"),
        "the controller logged at trace level"
    );

    let mut surfaces: Vec<(String, Vec<u8>)> = vec![
        ("the controller's stdout".into(), output.stdout.clone()),
        ("the controller's stderr".into(), output.stderr.clone()),
        (
            "the status parameter".into(),
            fixture.status().await.to_string().into_bytes(),
        ),
    ];
    let status = fixture.status().await;
    let manifest_key = status["manifest_key"].as_str().unwrap();
    surfaces.push(("the manifest".into(), fixture.get(manifest_key).await));
    let specs = fixture
        .keys(&format!("{}/jobs/{}/", fixture.prefix, fixture.job))
        .await;
    assert!(!specs.is_empty(), "the job spec was found");
    for key in specs {
        surfaces.push((format!("the job spec {key}"), fixture.get(&key).await));
    }
    surfaces.extend(instance_surfaces(&fixture).await);

    // and a failing run: a database that does not exist
    fixture.write(&as_role(&format!("{database}_missing")));
    let failed = run_traced(&fixture);
    assert_eq!(failed.status.code(), Some(4), "{}", show(&failed));
    surfaces.push(("a failed run's stderr".into(), failed.stderr.clone()));
    surfaces.push((
        "a failed run's status".into(),
        fixture.status().await.to_string().into_bytes(),
    ));
    surfaces.extend(instance_surfaces(&fixture).await);

    // the search itself must be able to find it
    let probe = format!("x{password}x");
    assert!(
        std::panic::catch_unwind(|| assert_clean("a probe", probe.as_bytes(), &password)).is_err()
    );
    for (place, text) in &surfaces {
        assert_clean(place, text, &password);
    }
}

/// The latest restorable time, for PostgreSQL: everything written before
/// the backup is there. The password made for the temporary database,
/// caught while the job runs, appears nowhere an operator or attacker
/// could look: controller output at trace level, job spec, status,
/// manifest, user-data and tags.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_point_in_time_backup_of_the_latest_time_never_shows_its_password() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let production = Production::instance(&fixture.aws, "postgres").await;
    production.sql(
        Some(&production.database),
        "INSERT INTO t VALUES (4, 'before the backup')",
    );
    fixture.write(&fixture.config(production.job(&fixture, &[("source", "point-in-time")])));

    let run = Streaming::spawn(
        fixture
            .command(&["run", "--job", &fixture.job])
            .env("RUST_LOG", "trace"),
    );
    let parameter = temporary_password_parameter(&fixture);
    let password = eventually("the temporary password", Duration::from_secs(180), || {
        let ssm = fixture.aws.ssm.clone();
        let parameter = parameter.clone();
        async move {
            let out = ssm
                .get_parameter()
                .name(parameter)
                .with_decryption(true)
                .send()
                .await
                .ok()?;
            out.parameter()?.value().map(str::to_owned)
        }
    })
    .await;
    let output = run.wait_with_output();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_ne!(password, production.password);

    let status = fixture.status().await;
    let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
    let manifest = fixture.get(&manifest_key).await;
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(parsed["source"]["kind"], "point-in-time", "{parsed}");
    let mut surfaces: Vec<(String, Vec<u8>)> = vec![
        ("the controller's stdout".into(), output.stdout.clone()),
        ("the controller's stderr".into(), output.stderr.clone()),
        ("the status".into(), status.to_string().into_bytes()),
        ("the manifest".into(), manifest),
    ];
    for key in fixture.keys(&format!("{}/jobs/", fixture.prefix)).await {
        surfaces.push((key.clone(), fixture.get(&key).await));
    }
    surfaces.extend(instance_surfaces(&fixture).await);
    for (place, text) in &surfaces {
        assert_clean(place, text, &password);
    }
    assert_nothing_left(&fixture).await;

    let address = format!("s3://{}/{manifest_key}", fixture.bucket);
    assert_eq!(restored_rows(&fixture, &holder, &address), "1,2,3,4");
}
