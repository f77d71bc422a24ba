//! Backups from a temporary RDS database (`source = "snapshot"` and
//! `"point-in-time"`), end to end against the RDS world
//! (`localstack/rds.py`): moto's RDS API in front of real PostgreSQL and
//! MariaDB servers, under the AWS gate's IAM, with the controller running
//! as its least-privileged user. Each test makes a "production" DB
//! instance (a real server), writes to it, snapshots it, writes a row
//! afterwards, backs up from the snapshot (or a point in time), restores
//! the backup with the engine's own tools into the test servers, and
//! finds the data as of that moment: the late row absent. Production
//! sees no connection from the agent, and the temporary database never
//! outlives its job: success, a failed dump, Ctrl-C, and `reap` after the
//! controller was killed.

use std::process::Command;
use std::time::Duration;

use crate::common::rds::{assert_nothing_left, rds_world, restored_rows, temporaries, Production};
use crate::common::*;

/// The manifest's `source` and the backup's address, after a run that
/// must succeed.
async fn backed_up(fixture: &Fixture) -> (serde_json::Value, String) {
    let (manifest, address) = back_up(fixture).await;
    (manifest["source"].clone(), address)
}

/// Restores the MySQL-family backup at `address` into the test MariaDB
/// with `backup-cloud restore`, and returns the ids of the restored
/// `database`'s table `t` (`1,2,3`), dropping it afterwards.
fn restored_mysql_rows(
    fixture: &Fixture,
    holder: &KeyHolder,
    address: &str,
    database: &str,
) -> String {
    let output = restore_side(
        fixture,
        &["restore", address, "--to", &mysql_root_url()],
        holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let rows = mariadb(&format!(
        "SELECT GROUP_CONCAT(id ORDER BY id) FROM {database}.t"
    ));
    drop_mysql_databases(&[database]);
    rows.lines().last().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_snapshot_backup_holds_the_data_as_of_the_snapshot_and_spares_production() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let production = Production::instance(&fixture.aws, "postgres").await;
    let snapshot = production.snapshot(&fixture.aws).await;
    production.sql(
        Some(&production.database),
        "INSERT INTO t VALUES (4, 'after the snapshot')",
    );
    fixture.write(&fixture.config(production.job(&fixture, &[("source", "snapshot")])));

    // plan says what it would restore, and makes nothing
    let plan = fixture.backup_cloud(&["plan", "--job", &fixture.job]);
    assert_eq!(plan.status.code(), Some(0), "{}", show(&plan));
    let said = String::from_utf8_lossy(&plan.stdout);
    assert!(said.contains(&format!("snapshot {snapshot}")), "{said}");
    assert!(temporaries(&fixture).await.is_empty());

    let before = production.connections();
    let (source, address) = backed_up(&fixture).await;
    assert_eq!(
        production.connections(),
        before,
        "the agent connected to production"
    );
    assert_eq!(source["kind"], "snapshot", "{source}");
    assert!(
        source["snapshot_arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":snapshot:{snapshot}")),
        "{source}"
    );
    assert_nothing_left(&fixture).await;

    // restored with pg_restore into the test server: rows 1-3, not 4
    assert_eq!(restored_rows(&fixture, &holder, &address), "1,2,3");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mariadb_point_in_time_backup_holds_the_data_as_of_that_time() {
    require_services();
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let production = Production::instance(&fixture.aws, "mariadb").await;
    let taken = rds_world(&format!("restore-points?db={}", production.id), "POST");
    let at = taken["taken_at"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    production.sql(
        Some(&production.database),
        "INSERT INTO t VALUES (4, 'after the time')",
    );
    let job = production.job(
        &fixture,
        &[("source", "point-in-time"), ("restore_time", at.as_str())],
    );
    fixture.write(&fixture.config(job));

    let before = production.connections();
    let (source, address) = backed_up(&fixture).await;
    assert_eq!(
        production.connections(),
        before,
        "the agent connected to production"
    );
    assert_eq!(source["kind"], "point-in-time", "{source}");
    assert_eq!(
        source["source_database"],
        production.id.as_str(),
        "{source}"
    );
    assert_nothing_left(&fixture).await;

    assert_eq!(
        restored_mysql_rows(&fixture, &holder, &address, &production.database),
        "1,2,3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mariadb_snapshot_backup_holds_the_data_as_of_the_snapshot() {
    require_services();
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let production = Production::instance(&fixture.aws, "mariadb").await;
    let snapshot = production.snapshot(&fixture.aws).await;
    production.sql(
        Some(&production.database),
        "INSERT INTO t VALUES (4, 'after the snapshot')",
    );
    fixture.write(&fixture.config(production.job(&fixture, &[("source", "snapshot")])));

    let before = production.connections();
    let (source, address) = backed_up(&fixture).await;
    assert_eq!(
        production.connections(),
        before,
        "the agent connected to production"
    );
    assert_eq!(source["kind"], "snapshot", "{source}");
    assert!(
        source["snapshot_arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":snapshot:{snapshot}")),
        "{source}"
    );
    assert_nothing_left(&fixture).await;

    assert_eq!(
        restored_mysql_rows(&fixture, &holder, &address, &production.database),
        "1,2,3"
    );
}

/// Aurora: a DB cluster restored from a cluster snapshot (PostgreSQL),
/// and one cloned copy-on-write at the latest restorable time (MySQL),
/// each with one DB instance in it, each deleted after its job.
#[tokio::test(flavor = "multi_thread")]
async fn aurora_clusters_back_up_from_a_snapshot_and_from_a_clone() {
    require_services();
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;

    let postgres = Production::cluster(&fixture.aws, "aurora-postgresql").await;
    postgres.snapshot(&fixture.aws).await;
    postgres.sql(
        Some(&postgres.database),
        "INSERT INTO t VALUES (4, 'after the snapshot')",
    );
    fixture.write(&fixture.config(postgres.job(&fixture, &[("source", "snapshot")])));
    let (source, address) = backed_up(&fixture).await;
    assert_eq!(source["kind"], "snapshot", "{source}");
    assert!(
        source["snapshot_arn"]
            .as_str()
            .unwrap()
            .contains(":cluster-snapshot:"),
        "{source}"
    );
    assert_nothing_left(&fixture).await;
    assert_eq!(restored_rows(&fixture, &holder, &address), "1,2,3");

    let mysql = Production::cluster(&fixture.aws, "aurora-mysql").await;
    mysql.sql(
        Some(&mysql.database),
        "INSERT INTO t VALUES (4, 'before the clone')",
    );
    fixture.write(&fixture.config(mysql.job(&fixture, &[("source", "point-in-time")])));
    let before = mysql.connections();
    let (source, address) = backed_up(&fixture).await;
    assert_eq!(
        mysql.connections(),
        before,
        "the agent connected to production"
    );
    assert_eq!(source["kind"], "point-in-time", "{source}");
    assert_nothing_left(&fixture).await;
    assert_eq!(
        restored_mysql_rows(&fixture, &holder, &address, &mysql.database),
        "1,2,3,4"
    );
}

/// A dump that fails (the job names a database the snapshot does not
/// hold) fails the job, and its temporary database goes with it.
#[tokio::test(flavor = "multi_thread")]
async fn the_temporary_database_goes_when_the_dump_fails() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let production = Production::instance(&fixture.aws, "postgres").await;
    production.snapshot(&fixture.aws).await;
    let mut job = production.job(&fixture, &[("source", "snapshot")]);
    job.database = Some("no_such_database".to_owned());
    fixture.write(&fixture.config(job));
    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(4), "{}", show(&output));
    fixture.assert_failed_without_manifest().await;
    assert_nothing_left(&fixture).await;
}

/// Ctrl-C while the temporary database is being restored: nothing is
/// launched, the database is deleted, the run exits 130.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_the_restore_deletes_the_temporary_database() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let production = Production::instance(&fixture.aws, "postgres").await;
    production.snapshot(&fixture.aws).await;
    fixture.write(&fixture.config(production.job(&fixture, &[("source", "snapshot")])));
    let run = Streaming::spawn(&mut fixture.command(&["run", "--job", &fixture.job]));
    restore_begun(&fixture).await;
    signal(&run, "INT");
    let output = run.wait_with_output();
    assert_eq!(output.status.code(), Some(130), "{}", show(&output));
    // interrupted before or just after the launch: no instance left running
    for state in fixture.instance_states().await {
        assert!(
            ["shutting-down", "terminated"].contains(&state.as_str()),
            "an instance is {state}"
        );
    }
    assert_nothing_left(&fixture).await;
}

/// A controller killed while its job runs leaves the temporary database
/// behind; `reap` deletes it once the job is over.
#[tokio::test(flavor = "multi_thread")]
async fn reap_deletes_the_temporary_database_of_a_killed_controller() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "unused", "unused").await;
    let production = Production::instance(&fixture.aws, "postgres").await;
    production.snapshot(&fixture.aws).await;
    let mut config = fixture.config(production.job(&fixture, &[("source", "snapshot")]));
    config.status.heartbeat_timeout = Duration::from_secs(10);
    config.status.boot_timeout = Duration::from_secs(20);
    fixture.write(&config);
    let run = Streaming::spawn(&mut fixture.command(&["run", "--job", &fixture.job]));
    restore_begun(&fixture).await;
    signal(&run, "KILL");
    let _ = run.wait_with_output();
    let report = fixture.reap_once_stale().await;
    let reaped = report["reaped"].to_string();
    assert!(reaped.contains("temporary database"), "{reaped}");
    assert_nothing_left(&fixture).await;
}

/// Waits until RDS lists the fixture's job's temporary database.
async fn restore_begun(fixture: &Fixture) {
    eventually("the restore to begin", Duration::from_secs(60), || async {
        (!temporaries(fixture).await.is_empty()).then_some(())
    })
    .await;
}

fn signal(run: &Streaming, name: &str) {
    run_ok(
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(run.id().to_string()),
    );
}
