//! "Production" databases in the RDS world (`localstack/rds.py`): RDS DB
//! instances and Aurora DB clusters that are real PostgreSQL and MariaDB
//! servers, made as an operator's would be (with automated backups, so
//! point-in-time restores work), for the jobs that back them up from a
//! temporary copy.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use backup_cloud::aws::AwsClients;

use super::config::{Job, MysqlMode};
use super::*;

const MASTER_USER: &str = "prodadmin";

/// A production RDS DB instance or Aurora DB cluster.
pub struct Production {
    pub id: String,
    /// RDS's engine name: `postgres`, `mariadb`, `aurora-postgresql`, ...
    pub engine: &'static str,
    pub cluster: bool,
    pub port: u16,
    pub password: String,
    /// The application database in it, with a table `t` of rows 1..=3.
    pub database: String,
}

impl Production {
    /// An RDS DB instance of `engine` (`postgres` or `mariadb`).
    pub async fn instance(aws: &AwsClients, engine: &'static str) -> Production {
        let id = unique("prod-");
        let password = unique("Pw");
        aws.rds
            .create_db_instance()
            .db_instance_identifier(&id)
            .engine(engine)
            .db_instance_class("db.t4g.micro")
            .allocated_storage(20)
            .master_username(MASTER_USER)
            .master_user_password(&password)
            .backup_retention_period(1)
            .send()
            .await
            .unwrap();
        let port = instance_port(aws, &id).await;
        Production::seeded(id, engine, false, port, password)
    }

    /// An Aurora DB cluster of `engine` (`aurora-postgresql` or
    /// `aurora-mysql`) with its writer instance.
    pub async fn cluster(aws: &AwsClients, engine: &'static str) -> Production {
        let id = unique("prod-");
        let password = unique("Pw");
        aws.rds
            .create_db_cluster()
            .db_cluster_identifier(&id)
            .engine(engine)
            .master_username(MASTER_USER)
            .master_user_password(&password)
            .backup_retention_period(1)
            .send()
            .await
            .unwrap();
        aws.rds
            .create_db_instance()
            .db_instance_identifier(format!("{id}-writer"))
            .db_cluster_identifier(&id)
            .engine(engine)
            .db_instance_class("db.r6g.large")
            .send()
            .await
            .unwrap();
        instance_port(aws, &format!("{id}-writer")).await;
        let port = eventually("the production cluster", Duration::from_secs(120), || {
            let rds = aws.rds.clone();
            let id = id.clone();
            async move {
                let out = rds
                    .describe_db_clusters()
                    .db_cluster_identifier(&id)
                    .send()
                    .await
                    .ok()?;
                let cluster = out.db_clusters().first()?;
                (cluster.status() == Some("available"))
                    .then(|| cluster.port())
                    .flatten()
            }
        })
        .await;
        Production::seeded(id, engine, true, u16::try_from(port).unwrap(), password)
    }

    fn seeded(
        id: String,
        engine: &'static str,
        cluster: bool,
        port: u16,
        password: String,
    ) -> Production {
        let production = Production {
            id,
            engine,
            cluster,
            port,
            password,
            database: unique("orders_"),
        };
        production.sql(None, &format!("CREATE DATABASE {}", production.database));
        production.sql(
            Some(&production.database),
            "CREATE TABLE t (id integer PRIMARY KEY, note varchar(40))",
        );
        production.sql(
            Some(&production.database),
            "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')",
        );
        production
    }

    fn postgres(&self) -> bool {
        self.engine.contains("postgres")
    }

    /// Runs `sql` on the production server as its master user.
    pub fn sql(&self, database: Option<&str>, sql: &str) -> String {
        let mut command = if self.postgres() {
            let mut command = Command::new("psql");
            command
                .arg(format!(
                    "host=127.0.0.1 port={} user={MASTER_USER} dbname={}",
                    self.port,
                    database.unwrap_or("postgres")
                ))
                .env("PGPASSWORD", &self.password)
                .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]);
            command
        } else {
            let mut command = Command::new("mariadb");
            command
                .args(["--protocol=tcp", "-h", "127.0.0.1", "-N", "-B"])
                .arg(format!("-P{}", self.port))
                .arg(format!("-u{MASTER_USER}"))
                .env("MYSQL_PWD", &self.password)
                .args(database)
                .args(["-e", sql]);
            command
        };
        String::from_utf8(run_ok(&mut command).stdout).unwrap()
    }

    /// Takes a DB snapshot (a DB cluster snapshot for a cluster) and waits
    /// until it is available; returns its identifier.
    pub async fn snapshot(&self, aws: &AwsClients) -> String {
        let snapshot = unique("snap-");
        if self.cluster {
            aws.rds
                .create_db_cluster_snapshot()
                .db_cluster_identifier(&self.id)
                .db_cluster_snapshot_identifier(&snapshot)
                .send()
                .await
                .unwrap();
        } else {
            aws.rds
                .create_db_snapshot()
                .db_instance_identifier(&self.id)
                .db_snapshot_identifier(&snapshot)
                .send()
                .await
                .unwrap();
        }
        eventually("the snapshot", Duration::from_secs(120), || {
            let rds = aws.rds.clone();
            let snapshot = snapshot.clone();
            let cluster = self.cluster;
            async move {
                let status = if cluster {
                    let out = rds
                        .describe_db_cluster_snapshots()
                        .db_cluster_snapshot_identifier(&snapshot)
                        .send()
                        .await
                        .ok()?;
                    out.db_cluster_snapshots().first()?.status()?.to_owned()
                } else {
                    let out = rds
                        .describe_db_snapshots()
                        .db_snapshot_identifier(&snapshot)
                        .send()
                        .await
                        .ok()?;
                    out.db_snapshots().first()?.status()?.to_owned()
                };
                (status == "available").then_some(())
            }
        })
        .await;
        snapshot
    }

    /// Client connections the production server accepted so far.
    pub fn connections(&self) -> u64 {
        rds_world(&format!("connections?db={}", self.id), "GET")["connections"]
            .as_u64()
            .unwrap()
    }

    /// A job backing this database up from a temporary copy, with `keys`
    /// (`source` and the rest) as written.
    pub fn job(&self, fixture: &Fixture, keys: &[(&str, &str)]) -> Job {
        let mut job = if self.postgres() {
            fixture.postgres_job(&self.database)
        } else {
            fixture.mysql_job(MysqlMode::Mysqldump, &[&self.database])
        };
        job.host.clear();
        job.port = 0;
        job.user.clear();
        job.password_parameter.clear();
        let identifier = if self.cluster {
            "db_cluster_identifier"
        } else {
            "db_instance_identifier"
        };
        job.rds = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(identifier.to_owned(), self.id.clone())])
            .collect::<BTreeMap<_, _>>();
        job
    }
}

/// Waits until DB instance `id` is available; its endpoint's port.
async fn instance_port(aws: &AwsClients, id: &str) -> u16 {
    let port = eventually("the DB instance", Duration::from_secs(120), || {
        let rds = aws.rds.clone();
        let id = id.to_owned();
        async move {
            let out = rds
                .describe_db_instances()
                .db_instance_identifier(&id)
                .send()
                .await
                .ok()?;
            let db = out.db_instances().first()?;
            (db.db_instance_status() == Some("available"))
                .then(|| db.endpoint()?.port())
                .flatten()
        }
    })
    .await;
    u16::try_from(port).unwrap()
}

/// The RDS world's control API: `METHOD /__rds/PATH`, through the gate.
pub fn rds_world(path: &str, method: &str) -> serde_json::Value {
    let output = run_ok(Command::new("curl").args([
        "-sS",
        "--fail",
        "-X",
        method,
        &format!("{}/__rds/{path}", endpoint()),
    ]));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The temporary databases RDS still lists for the fixture's job, and the
/// world's servers still running for them.
pub async fn temporaries(fixture: &Fixture) -> Vec<String> {
    let out = fixture
        .aws
        .rds
        .describe_db_instances()
        .send()
        .await
        .unwrap();
    let mut left: Vec<String> = out
        .db_instances()
        .iter()
        .filter(|db| {
            db.tag_list().iter().any(|t| {
                t.key() == Some("backup-cloud:job") && t.value() == Some(fixture.job.as_str())
            })
        })
        .map(|db| db.db_instance_identifier().unwrap().to_owned())
        .collect();
    let servers = rds_world("servers", "GET");
    for server in servers["servers"].as_array().unwrap() {
        let id = server["id"].as_str().unwrap();
        if id.starts_with("backup-cloud-") && id.contains(&fixture.job) && server["running"] == true
        {
            left.push(format!("{id} (its server still running)"));
        }
    }
    left
}

pub async fn assert_nothing_left(fixture: &Fixture) {
    eventually(
        "no temporary database left",
        Duration::from_secs(30),
        || async { temporaries(fixture).await.is_empty().then_some(()) },
    )
    .await;
    let parameter = fixture
        .aws
        .ssm
        .get_parameter()
        .name(temporary_password_parameter(fixture))
        .send()
        .await;
    assert!(
        parameter.is_err(),
        "the temporary password parameter outlived its job"
    );
}

/// The temporary database's password parameter of the fixture's job.
pub fn temporary_password_parameter(fixture: &Fixture) -> String {
    format!(
        "{}/{}/temporary-database-password",
        fixture.status_prefix, fixture.job
    )
}

/// The ids in table `t` (`1,2,3`) of the PostgreSQL backup at `address`,
/// restored by the key holder into a new database of the test server.
pub fn restored_rows(fixture: &Fixture, holder: &KeyHolder, address: &str) -> String {
    let target = unique("rds_target_");
    psql("postgres", &format!("CREATE DATABASE {target}"));
    let url = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/{target}",
        pg_port()
    );
    let output = restore_side(
        fixture,
        &["restore", address, "--to", &url],
        holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    psql(
        &target,
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM t",
    )
    .trim()
    .to_owned()
}
