//! The dump tool matched to the server (issue 13): against a real
//! PostgreSQL of a newer major version than this machine's `pg_dump`,
//! which would refuse it midway, the backup fails before anything is
//! dumped, naming both versions and the client to install.

use std::process::Command;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_server_newer_than_pg_dump_fails_before_the_dump_naming_both_and_the_fix() {
    require_services();
    require_service("PostgreSQL (newer)", pg_newer_port());
    let client = String::from_utf8(
        Command::new("pg_dump")
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let client_major = client
        .split_whitespace()
        .nth(2)
        .and_then(|version| version.split('.').next())
        .unwrap()
        .to_owned();
    let server = psql_at(pg_newer_port(), "postgres", "SHOW server_version");
    let server_major = server.trim().split('.').next().unwrap().to_owned();
    assert!(
        server_major.parse::<u32>().unwrap() > client_major.parse::<u32>().unwrap(),
        "the newer cluster ({server}) must be newer than pg_dump ({client})"
    );

    let holder = KeyHolder::generate("holder");
    let database = unique("cm_newer_");
    psql_at(
        pg_newer_port(),
        "postgres",
        &format!("CREATE DATABASE {database}"),
    );
    psql_at(
        pg_newer_port(),
        &database,
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1)",
    );
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.only_job().port = pg_newer_port();
    fixture.write(&config);

    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(4), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        format!("pg_dump {client_major}."),
        format!("cannot dump PostgreSQL {server_major}."),
        format!("postgresql-client-{server_major} from the PostgreSQL project's apt repository"),
        format!("postgresql{server_major} on Amazon Linux 2023"),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} in: {stderr}");
    }
    let (status, keys) = fixture.assert_failed_without_manifest().await;
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|message| message.contains("which is newer")),
        "the job's status says why: {status}"
    );
    assert!(
        keys.iter().all(|key| !key.contains("/data/")),
        "nothing was dumped: {keys:?}"
    );
    psql_at(
        pg_newer_port(),
        "postgres",
        &format!("DROP DATABASE {database}"),
    );
}
