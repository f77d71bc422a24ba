//! Temporary databases: backing up RDS and Aurora without touching production.
//!
//! A job with `source = "snapshot"` or `"point-in-time"` is not dumped
//! from the production server. The controller restores the newest (or a
//! named) DB snapshot, or a point in time, into a temporary DB instance
//! (for Aurora: a DB cluster, cloned copy-on-write where it can, with one
//! DB instance in it), gives it a master password made for the job, points
//! the agent at it, and deletes it when the job ends, whatever the ending.
//! Production serves no extra reads and holds no long snapshot for the
//! dump; the backup is exactly as of a known moment.
//!
//! Facts relied on (Amazon RDS API Reference and User Guide):
//! - a restored DB instance keeps the source's master user name and
//!   password, and the snapshot's (or source's) KMS key: encryption is
//!   inherited, and `ModifyDBInstance`/`ModifyDBCluster` with
//!   `MasterUserPassword` and `ApplyImmediately` resets the password;
//! - a restore answers at once with status `creating`; the endpoint exists
//!   once the status is `available`, and a modification is refused
//!   (`InvalidDBInstanceState`) until then;
//! - `DeleteDBInstance` needs `SkipFinalSnapshot` (or a final snapshot's
//!   name); an Aurora cluster is deleted after its instances;
//! - RDS identifiers are 1–63 letters, digits and hyphens, start with a
//!   letter, never hold two hyphens in a row nor end with one.

use std::time::Duration;

use aws_sdk_rds::primitives::DateTime as AwsDateTime;
use aws_sdk_rds::types::{DbCluster, DbInstance, Tag};
use rand::distr::{Alphanumeric, SampleString};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::config::{RdsDatabase, RdsSource, RestoreFrom};
use crate::schema::{DataSource, Engine};

/// How often a restore in progress (or a deletion) is looked at.
pub const POLL: Duration = Duration::from_secs(5);

/// Length of the master password made for a temporary database: within
/// every engine's limits (MySQL and MariaDB take at most 41 characters).
const PASSWORD_CHARS: usize = 32;

/// A temporary database could not be planned, made ready or removed.
#[derive(Debug, thiserror::Error)]
pub enum TemporaryError {
    #[error("RDS {action} {identifier}: {message}")]
    Rds {
        action: &'static str,
        identifier: String,
        message: String,
    },
    #[error("{database} has no available snapshot to restore: take one (or wait for the automated backup), or use source = \"point-in-time\"")]
    NoSnapshot { database: String },
    #[error(
        "{what} is {engine}, but the job's engine is {job_engine}: set the job's engine to match"
    )]
    EngineMismatch {
        what: String,
        engine: String,
        job_engine: &'static str,
    },
    #[error("restore_time {wanted} is outside {database}'s restorable window ({window}): choose a time within it, or `latest`")]
    OutsideWindow {
        database: String,
        wanted: String,
        window: String,
    },
    #[error("temporary database {identifier} is {status}, not available: {hint}")]
    Unusable {
        identifier: String,
        status: String,
        hint: &'static str,
    },
    #[error("temporary database {identifier} was not {goal} within {waited}")]
    TimedOut {
        identifier: String,
        goal: &'static str,
        waited: String,
    },
    #[error("interrupted while restoring temporary database {identifier}")]
    Interrupted { identifier: String },
    #[error("the temporary database's password could not be stored in {parameter}: {message}")]
    Password { parameter: String, message: String },
}

/// What a job's temporary database is made from, decided before anything
/// is created (and shown by `plan`).
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    pub database: RdsDatabase,
    pub point: Point,
    /// Engine name as RDS has it (`postgres`, `mariadb`, `aurora-mysql`).
    pub engine: String,
    pub instance_class: String,
    pub db_subnet_group_name: Option<String>,
    pub vpc_security_group_ids: Vec<String>,
}

/// The moment a temporary database holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Snapshot {
        identifier: String,
        arn: String,
        created: OffsetDateTime,
    },
    /// `None` restores to the latest restorable time, recorded as
    /// `latest` (the time it was when resolved).
    Time {
        at: Option<OffsetDateTime>,
        latest: OffsetDateTime,
    },
}

impl Restore {
    /// What the backup will represent, for the job spec and manifest.
    pub fn data_source(&self, temporary: &str) -> DataSource {
        match &self.point {
            Point::Snapshot { arn, created, .. } => DataSource::Snapshot {
                snapshot_arn: arn.clone(),
                snapshot_time: *created,
                temporary_database: temporary.to_owned(),
            },
            Point::Time { at, latest } => DataSource::PointInTime {
                source_database: self.database.identifier().to_owned(),
                restore_time: at.unwrap_or(*latest),
                temporary_database: temporary.to_owned(),
            },
        }
    }

    /// The restore in words, e.g. `snapshot rds:orders-2026-12-01 (taken
    /// 2026-12-01T03:10:00Z)`.
    pub fn describe(&self) -> String {
        match &self.point {
            Point::Snapshot {
                identifier,
                created,
                ..
            } => format!("snapshot {identifier} (taken {})", rfc3339(*created)),
            Point::Time { at: Some(at), .. } => {
                format!("{} as of {}", self.database.identifier(), rfc3339(*at))
            }
            Point::Time { at: None, latest } => format!(
                "{} as of its latest restorable time (now {})",
                self.database.identifier(),
                rfc3339(*latest)
            ),
        }
    }
}

/// The temporary database's identifier for job `job_id`:
/// `backup-cloud-<job id>`, in RDS's alphabet, at most 63 characters,
/// ending in the job id's random suffix so two jobs never share one.
pub fn identifier(job_id: &str) -> String {
    let mut name = String::from("backup-cloud-");
    for c in job_id.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let name = name.trim_end_matches('-');
    if name.len() <= 63 {
        return name.to_owned();
    }
    // keep the suffix (random and unique), shorten the middle
    const KEPT: usize = 30;
    let suffix = &name[name.len() - KEPT..];
    let head = name[..63 - KEPT - 1].trim_end_matches('-');
    let joined = format!("{head}-{}", suffix.trim_start_matches('-'));
    joined.replace("--", "-")
}

/// A fresh master password: letters and digits only, which every engine
/// and every client's connection syntax accept.
pub fn new_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_CHARS)
}

/// Whether the engine RDS names serves the job's engine.
fn engine_matches(engine: Engine, rds_engine: &str) -> bool {
    match engine {
        Engine::Postgres => matches!(rds_engine, "postgres" | "aurora-postgresql"),
        Engine::Mysql => matches!(rds_engine, "mysql" | "mariadb" | "aurora-mysql"),
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn from_aws(at: &AwsDateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(at.as_nanos()).ok()
}

/// `at` to the nanosecond: a restore time rounded down to the second can
/// fall before the start of the restorable window.
fn to_aws(at: OffsetDateTime) -> AwsDateTime {
    AwsDateTime::from_secs_and_nanos(at.unix_timestamp(), at.nanosecond())
}

/// [`TemporaryError::TimedOut`] once `limit` has passed since `started`.
pub fn deadline(
    identifier: &str,
    goal: &'static str,
    started: Instant,
    limit: Duration,
) -> Result<(), TemporaryError> {
    if started.elapsed() < limit {
        return Ok(());
    }
    Err(TemporaryError::TimedOut {
        identifier: identifier.to_owned(),
        goal,
        waited: humantime::format_duration(limit).to_string(),
    })
}

/// The error of an RDS call, with the service's code and message.
fn rds_error<'a, E, R>(
    action: &'static str,
    identifier: &'a str,
) -> impl FnOnce(aws_sdk_rds::error::SdkError<E, R>) -> TemporaryError + 'a
where
    E: aws_sdk_rds::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |err| {
        let message = match err.as_service_error() {
            Some(service) => format!(
                "{}: {}",
                service.code().unwrap_or("error"),
                service.message().unwrap_or("(no message)")
            ),
            None => aws_sdk_rds::error::DisplayErrorContext(&err).to_string(),
        };
        TemporaryError::Rds {
            action,
            identifier: identifier.to_owned(),
            message,
        }
    }
}

fn is_code<E, R>(err: &aws_sdk_rds::error::SdkError<E, R>, codes: &[&str]) -> bool
where
    E: aws_sdk_rds::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| codes.contains(&code))
}

/// RDS calls for temporary databases.
#[derive(Clone, Debug)]
pub struct Rds {
    client: aws_sdk_rds::Client,
}

/// Where the agent connects, once the temporary database is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub master_user: String,
}

/// The statuses of a DB instance or cluster that a restore does not
/// recover from (RDS User Guide, "Viewing Amazon RDS DB instance status"
/// and "Viewing DB cluster status").
const FAILED_STATES: [&str; 7] = [
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "storage-full",
    "inaccessible-encryption-credentials",
    "deleting",
];

/// RDS's tags of `(key, value)` pairs.
fn rds_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// See [`Rds::readiness`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Not yet usable: RDS's status, e.g. `creating`, `backing-up`.
    Creating(String),
    /// The restored Aurora cluster is available and waits for its
    /// instance ([`Rds::add_instance`]).
    ClusterAvailable,
    Ready(Endpoint),
}

/// A temporary database of ours, as RDS lists it (for `reap`).
#[derive(Debug, Clone)]
pub struct Listed {
    pub identifier: String,
    /// An Aurora DB cluster (deleted with its instances) or a DB instance.
    pub cluster: bool,
    pub job: Option<String>,
    pub job_id: Option<String>,
    pub created: Option<OffsetDateTime>,
}

impl Rds {
    pub fn new(client: aws_sdk_rds::Client) -> Rds {
        Rds { client }
    }

    /// Decides what `source` restores for a job of `engine`: the snapshot
    /// (the newest available one, or the named one) or the point in time
    /// (checked against the restorable window), the instance class, subnet
    /// group and security groups (the production database's unless the
    /// job names its own).
    pub async fn resolve(
        &self,
        source: &RdsSource,
        engine: Engine,
    ) -> Result<Restore, TemporaryError> {
        let production = self.production(&source.database).await?;
        if !engine_matches(engine, &production.engine) {
            return Err(TemporaryError::EngineMismatch {
                what: production.identifier.clone(),
                engine: production.engine,
                job_engine: engine.as_str(),
            });
        }
        let point = match &source.restore {
            RestoreFrom::Snapshot(named) => {
                self.snapshot(&source.database, named.as_deref()).await?
            }
            RestoreFrom::PointInTime(at) => {
                let latest =
                    production
                        .latest_restorable
                        .ok_or_else(|| TemporaryError::OutsideWindow {
                            database: production.identifier.clone(),
                            wanted: at.map(rfc3339).unwrap_or_else(|| "latest".to_owned()),
                            window: "none: automated backups are off (backup retention period 0)"
                                .to_owned(),
                        })?;
                if let Some(at) = at {
                    let earliest = production.created;
                    if *at > latest || earliest.is_some_and(|e| *at < e) {
                        return Err(TemporaryError::OutsideWindow {
                            database: production.identifier.clone(),
                            wanted: rfc3339(*at),
                            window: format!(
                                "{} to {}",
                                earliest.map(rfc3339).unwrap_or_else(|| "?".to_owned()),
                                rfc3339(latest)
                            ),
                        });
                    }
                }
                Point::Time { at: *at, latest }
            }
        };
        Ok(Restore {
            database: source.database.clone(),
            point,
            engine: production.engine,
            instance_class: source
                .instance_class
                .clone()
                .unwrap_or(production.instance_class),
            db_subnet_group_name: source
                .db_subnet_group_name
                .clone()
                .or(production.subnet_group),
            vpc_security_group_ids: if source.vpc_security_group_ids.is_empty() {
                production.security_groups
            } else {
                source.vpc_security_group_ids.clone()
            },
        })
    }

    /// The production DB instance or cluster, as far as a restore needs it.
    async fn production(&self, database: &RdsDatabase) -> Result<Production, TemporaryError> {
        match database {
            RdsDatabase::Instance(id) => {
                let db = self
                    .instance(id)
                    .await?
                    .ok_or_else(|| TemporaryError::Rds {
                        action: "DescribeDBInstances",
                        identifier: id.clone(),
                        message:
                            "no such DB instance (check db_instance_identifier and the region)"
                                .to_owned(),
                    })?;
                Ok(Production {
                    identifier: id.clone(),
                    engine: db.engine().unwrap_or_default().to_owned(),
                    instance_class: db.db_instance_class().unwrap_or_default().to_owned(),
                    subnet_group: db
                        .db_subnet_group()
                        .and_then(|g| g.db_subnet_group_name())
                        .map(str::to_owned),
                    security_groups: db
                        .vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
                        .collect(),
                    latest_restorable: db
                        .latest_restorable_time()
                        .and_then(from_aws)
                        .filter(|_| db.backup_retention_period().unwrap_or(0) > 0),
                    created: db.instance_create_time().and_then(from_aws),
                })
            }
            RdsDatabase::Cluster(id) => {
                let cluster = self.cluster(id).await?.ok_or_else(|| TemporaryError::Rds {
                    action: "DescribeDBClusters",
                    identifier: id.clone(),
                    message: "no such DB cluster (check db_cluster_identifier and the region)"
                        .to_owned(),
                })?;
                // an Aurora cluster's instances share one class: take its writer's
                let writer = cluster
                    .db_cluster_members()
                    .iter()
                    .find(|m| m.is_cluster_writer().unwrap_or(false))
                    .and_then(|m| m.db_instance_identifier())
                    .map(str::to_owned);
                let instance_class = match writer {
                    Some(writer) => self
                        .instance(&writer)
                        .await?
                        .and_then(|db| db.db_instance_class().map(str::to_owned)),
                    None => None,
                };
                Ok(Production {
                    identifier: id.clone(),
                    engine: cluster.engine().unwrap_or_default().to_owned(),
                    instance_class: instance_class.unwrap_or_else(|| "db.r6g.large".to_owned()),
                    subnet_group: cluster.db_subnet_group().map(str::to_owned),
                    security_groups: cluster
                        .vpc_security_groups()
                        .iter()
                        .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
                        .collect(),
                    latest_restorable: cluster.latest_restorable_time().and_then(from_aws),
                    created: cluster.earliest_restorable_time().and_then(from_aws),
                })
            }
        }
    }

    /// The snapshot to restore: `named`, or the newest available
    /// automated or manual one of `database`.
    async fn snapshot(
        &self,
        database: &RdsDatabase,
        named: Option<&str>,
    ) -> Result<Point, TemporaryError> {
        let mut found: Vec<(String, String, Option<OffsetDateTime>, String)> = Vec::new();
        match database {
            RdsDatabase::Instance(id) => {
                let request = match named {
                    Some(name) => self
                        .client
                        .describe_db_snapshots()
                        .db_snapshot_identifier(name),
                    None => self
                        .client
                        .describe_db_snapshots()
                        .db_instance_identifier(id),
                };
                let mut pages = request.into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page =
                        page.map_err(rds_error("DescribeDBSnapshots", named.unwrap_or(id)))?;
                    for s in page.db_snapshots() {
                        found.push((
                            s.db_snapshot_identifier().unwrap_or_default().to_owned(),
                            s.db_snapshot_arn().unwrap_or_default().to_owned(),
                            s.snapshot_create_time().and_then(from_aws),
                            s.status().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
            RdsDatabase::Cluster(id) => {
                let request = match named {
                    Some(name) => self
                        .client
                        .describe_db_cluster_snapshots()
                        .db_cluster_snapshot_identifier(name),
                    None => self
                        .client
                        .describe_db_cluster_snapshots()
                        .db_cluster_identifier(id),
                };
                let mut pages = request.into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page =
                        page.map_err(rds_error("DescribeDBClusterSnapshots", named.unwrap_or(id)))?;
                    for s in page.db_cluster_snapshots() {
                        found.push((
                            s.db_cluster_snapshot_identifier()
                                .unwrap_or_default()
                                .to_owned(),
                            s.db_cluster_snapshot_arn().unwrap_or_default().to_owned(),
                            s.snapshot_create_time().and_then(from_aws),
                            s.status().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
        }
        if let Some(name) = named {
            let Some((identifier, arn, created, status)) = found.into_iter().next() else {
                return Err(TemporaryError::Rds {
                    action: "DescribeDBSnapshots",
                    identifier: name.to_owned(),
                    message: "no such snapshot (check snapshot_identifier and the region)"
                        .to_owned(),
                });
            };
            if status != "available" {
                return Err(TemporaryError::Unusable {
                    identifier,
                    status,
                    hint: "a snapshot can be restored once it is available",
                });
            }
            return Ok(Point::Snapshot {
                identifier,
                arn,
                created: created.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            });
        }
        found
            .into_iter()
            .filter(|(_, _, created, status)| status == "available" && created.is_some())
            .max_by_key(|(_, _, created, _)| *created)
            .map(|(identifier, arn, created, _)| Point::Snapshot {
                identifier,
                arn,
                created: created.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            })
            .ok_or_else(|| TemporaryError::NoSnapshot {
                database: database.identifier().to_owned(),
            })
    }

    async fn instance(&self, id: &str) -> Result<Option<DbInstance>, TemporaryError> {
        match self
            .client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_instances().first().cloned()),
            Err(err) if is_code(&err, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) => {
                Ok(None)
            }
            Err(err) => Err(rds_error("DescribeDBInstances", id)(err)),
        }
    }

    async fn cluster(&self, id: &str) -> Result<Option<DbCluster>, TemporaryError> {
        match self
            .client
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_clusters().first().cloned()),
            Err(err) if is_code(&err, &["DBClusterNotFoundFault", "DBClusterNotFound"]) => Ok(None),
            Err(err) => Err(rds_error("DescribeDBClusters", id)(err)),
        }
    }

    /// Asks RDS to restore `restore` as `identifier`, tagged with `tags`,
    /// never publicly accessible, without deletion protection and (for a
    /// DB instance) in a single Availability Zone. Returns at once; the
    /// database (for Aurora, the cluster, which then needs
    /// [`Rds::add_instance`]) is `creating`.
    pub async fn create(
        &self,
        restore: &Restore,
        identifier: &str,
        tags: &[(String, String)],
    ) -> Result<(), TemporaryError> {
        let tags = rds_tags(tags);
        let groups = Some(restore.vpc_security_group_ids.clone()).filter(|g| !g.is_empty());
        match (&restore.database, &restore.point) {
            (
                RdsDatabase::Instance(_),
                Point::Snapshot {
                    identifier: snapshot,
                    ..
                },
            ) => {
                self.client
                    .restore_db_instance_from_db_snapshot()
                    .db_instance_identifier(identifier)
                    .db_snapshot_identifier(snapshot)
                    .db_instance_class(&restore.instance_class)
                    .set_db_subnet_group_name(restore.db_subnet_group_name.clone())
                    .set_vpc_security_group_ids(groups)
                    .publicly_accessible(false)
                    .multi_az(false)
                    .deletion_protection(false)
                    .auto_minor_version_upgrade(false)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(rds_error("RestoreDBInstanceFromDBSnapshot", identifier))?;
            }
            (RdsDatabase::Instance(source), Point::Time { at, .. }) => {
                let request = self
                    .client
                    .restore_db_instance_to_point_in_time()
                    .source_db_instance_identifier(source)
                    .target_db_instance_identifier(identifier);
                let request = match at {
                    Some(at) => request.restore_time(to_aws(*at)),
                    None => request.use_latest_restorable_time(true),
                };
                request
                    .db_instance_class(&restore.instance_class)
                    .set_db_subnet_group_name(restore.db_subnet_group_name.clone())
                    .set_vpc_security_group_ids(groups)
                    .publicly_accessible(false)
                    .multi_az(false)
                    .deletion_protection(false)
                    .auto_minor_version_upgrade(false)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(rds_error("RestoreDBInstanceToPointInTime", identifier))?;
            }
            (RdsDatabase::Cluster(_), point) => {
                match point {
                    Point::Snapshot {
                        identifier: snapshot,
                        ..
                    } => {
                        self.client
                            .restore_db_cluster_from_snapshot()
                            .db_cluster_identifier(identifier)
                            .snapshot_identifier(snapshot)
                            .engine(&restore.engine)
                            .set_db_subnet_group_name(restore.db_subnet_group_name.clone())
                            .set_vpc_security_group_ids(groups)
                            .deletion_protection(false)
                            .set_tags(Some(tags.clone()))
                            .send()
                            .await
                            .map_err(rds_error("RestoreDBClusterFromSnapshot", identifier))?;
                    }
                    Point::Time { at, .. } => {
                        // a copy-on-write clone shares the source's pages
                        // until either side writes: fast, and storage is
                        // paid only for what changes
                        let request = self
                            .client
                            .restore_db_cluster_to_point_in_time()
                            .db_cluster_identifier(identifier)
                            .source_db_cluster_identifier(restore.database.identifier());
                        let request = match at {
                            // a clone is of the source as it is; a past
                            // time needs a full restore
                            Some(at) => request
                                .restore_type("full-copy")
                                .restore_to_time(to_aws(*at)),
                            None => request
                                .restore_type("copy-on-write")
                                .use_latest_restorable_time(true),
                        };
                        request
                            .set_db_subnet_group_name(restore.db_subnet_group_name.clone())
                            .set_vpc_security_group_ids(groups)
                            .deletion_protection(false)
                            .set_tags(Some(tags.clone()))
                            .send()
                            .await
                            .map_err(rds_error("RestoreDBClusterToPointInTime", identifier))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds the DB instance that serves the restored Aurora cluster
    /// `identifier` (named alike, tagged with `tags`). A cluster serves
    /// nothing without an instance in it, and takes one only once it is
    /// available ("RestoreDBClusterFromSnapshot",
    /// "RestoreDBClusterToPointInTime": instances can be created "only after
    /// the operation has completed and the DB cluster is available"), which
    /// [`Rds::readiness`] says with [`Readiness::ClusterAvailable`].
    pub async fn add_instance(
        &self,
        restore: &Restore,
        identifier: &str,
        tags: &[(String, String)],
    ) -> Result<(), TemporaryError> {
        let tags = rds_tags(tags);
        self.client
            .create_db_instance()
            .db_instance_identifier(identifier)
            .db_cluster_identifier(identifier)
            .engine(&restore.engine)
            .db_instance_class(&restore.instance_class)
            .publicly_accessible(false)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(rds_error("CreateDBInstance", identifier))?;
        Ok(())
    }

    /// Where the temporary database stands: its status while RDS is still
    /// making it, or its endpoint once it is available. With
    /// `cluster_only` (an Aurora cluster restored, its instance not yet
    /// asked for), the cluster's: [`Readiness::ClusterAvailable`] once it
    /// takes an instance. RDS may not list a database for a moment after
    /// the restore was accepted: that reads as `creating`, not as an
    /// answer.
    pub async fn readiness(
        &self,
        identifier: &str,
        cluster_only: bool,
    ) -> Result<Readiness, TemporaryError> {
        let unusable = |status: String| {
            Err(TemporaryError::Unusable {
                identifier: identifier.to_owned(),
                status,
                hint: "RDS could not restore it; its events (`aws rds describe-events`) say why",
            })
        };
        if cluster_only {
            let Some(cluster) = self.cluster(identifier).await? else {
                return Ok(Readiness::Creating("creating".to_owned()));
            };
            let status = cluster.status().unwrap_or("creating").to_owned();
            return match status.as_str() {
                "available" => Ok(Readiness::ClusterAvailable),
                s if FAILED_STATES.contains(&s) => unusable(status),
                _ => Ok(Readiness::Creating(status)),
            };
        }
        let Some(db) = self.instance(identifier).await? else {
            return Ok(Readiness::Creating("creating".to_owned()));
        };
        let status = db.db_instance_status().unwrap_or("creating").to_owned();
        match status.as_str() {
            "available" => Ok(match self.endpoint(&db).await? {
                Some(endpoint) => Readiness::Ready(endpoint),
                None => Readiness::Creating(status),
            }),
            s if FAILED_STATES.contains(&s) => unusable(status),
            _ => Ok(Readiness::Creating(status)),
        }
    }

    /// Where to connect: the DB instance's endpoint (for Aurora, the
    /// cluster's writer endpoint) and the master user.
    async fn endpoint(&self, db: &DbInstance) -> Result<Option<Endpoint>, TemporaryError> {
        if let Some(cluster_id) = db.db_cluster_identifier() {
            let Some(cluster) = self.cluster(cluster_id).await? else {
                return Ok(None);
            };
            return Ok(
                match (
                    cluster.endpoint(),
                    cluster.port(),
                    cluster.master_username(),
                ) {
                    (Some(host), Some(port), Some(user)) => Some(Endpoint {
                        host: host.to_owned(),
                        port: u16::try_from(port).unwrap_or(0),
                        master_user: user.to_owned(),
                    }),
                    _ => None,
                },
            );
        }
        Ok(match (db.endpoint(), db.master_username()) {
            (Some(endpoint), Some(user)) => match (endpoint.address(), endpoint.port()) {
                (Some(host), Some(port)) => Some(Endpoint {
                    host: host.to_owned(),
                    port: u16::try_from(port).unwrap_or(0),
                    master_user: user.to_owned(),
                }),
                _ => None,
            },
            _ => None,
        })
    }

    /// Sets the master password of temporary database `identifier` (and,
    /// for a DB instance, turns its automated backups off), applied at
    /// once; waits until the change has been made.
    pub async fn reset_password(
        &self,
        identifier: &str,
        cluster: bool,
        password: &str,
        limit: Duration,
    ) -> Result<(), TemporaryError> {
        if cluster {
            self.client
                .modify_db_cluster()
                .db_cluster_identifier(identifier)
                .master_user_password(password)
                .apply_immediately(true)
                .send()
                .await
                .map_err(rds_error("ModifyDBCluster", identifier))?;
        } else {
            self.client
                .modify_db_instance()
                .db_instance_identifier(identifier)
                .master_user_password(password)
                .backup_retention_period(0)
                .apply_immediately(true)
                .send()
                .await
                .map_err(rds_error("ModifyDBInstance", identifier))?;
        }
        // The change shows as a pending modification, then as the status
        // `resetting-master-credentials`; the new password works once the
        // instance is `available` with nothing pending.
        let started = Instant::now();
        loop {
            tokio::time::sleep(POLL.min(limit)).await;
            if let Some(db) = self.instance(identifier).await? {
                let pending = db
                    .pending_modified_values()
                    .is_some_and(|p| p.master_user_password().is_some());
                if db.db_instance_status() == Some("available") && !pending {
                    return Ok(());
                }
            }
            deadline(identifier, "given its new master password", started, limit)?;
        }
    }

    /// Deletes temporary database `identifier` (for Aurora: its instance,
    /// then the cluster) without a final snapshot, and waits until RDS no
    /// longer lists it, for at most `limit`. Deleting one already gone
    /// succeeds.
    pub async fn delete(
        &self,
        identifier: &str,
        cluster: bool,
        limit: Duration,
    ) -> Result<(), TemporaryError> {
        let started = Instant::now();
        // Looked up first: a restore that was refused made nothing, and a
        // deletion of what does not exist is refused by the tag-scoped
        // policy rather than answered "not found".
        let cluster_exists = cluster && self.cluster(identifier).await?.is_some();
        if self.instance(identifier).await?.is_some() {
            self.delete_instance(identifier, started, limit).await?;
        }
        if !cluster_exists {
            return Ok(());
        }
        // Asked once: asking again once it is gone would be refused (the
        // tag-scoped policy finds no tags on what does not exist).
        loop {
            let answer = self
                .client
                .delete_db_cluster()
                .db_cluster_identifier(identifier)
                .skip_final_snapshot(true)
                .send()
                .await;
            match answer {
                Ok(_) => break,
                Err(err) if is_code(&err, &["DBClusterNotFoundFault", "DBClusterNotFound"]) => {
                    return Ok(())
                }
                // its instance still leaving, or a modification pending
                Err(err)
                    if is_code(
                        &err,
                        &["InvalidDBClusterStateFault", "InvalidDBClusterState"],
                    ) && started.elapsed() < limit =>
                {
                    let cluster = self.cluster(identifier).await?;
                    if cluster.is_none_or(|c| c.status() == Some("deleting")) {
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(err) => return Err(rds_error("DeleteDBCluster", identifier)(err)),
            }
        }
        while self.cluster(identifier).await?.is_some() {
            deadline(identifier, "deleted", started, limit)?;
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Deletes DB instance `identifier` and waits until RDS no longer
    /// lists it, until `limit` after `started`.
    async fn delete_instance(
        &self,
        identifier: &str,
        started: Instant,
        limit: Duration,
    ) -> Result<(), TemporaryError> {
        loop {
            let answer = self
                .client
                .delete_db_instance()
                .db_instance_identifier(identifier)
                .skip_final_snapshot(true)
                .delete_automated_backups(true)
                .send()
                .await;
            match answer {
                Ok(_) => break,
                Err(err) if is_code(&err, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) => {
                    break
                }
                // being created or modified: RDS takes the deletion once it
                // can; already being deleted: wait for it to go
                Err(err)
                    if is_code(
                        &err,
                        &["InvalidDBInstanceState", "InvalidDBInstanceStateFault"],
                    ) && started.elapsed() < limit =>
                {
                    let status = self.instance(identifier).await?;
                    if status.is_none_or(|db| db.db_instance_status() == Some("deleting")) {
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(err) => return Err(rds_error("DeleteDBInstance", identifier)(err)),
            }
        }
        while self.instance(identifier).await?.is_some() {
            deadline(identifier, "deleted", started, limit)?;
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Every DB instance and cluster carrying `managed_tag = true`, with
    /// its job tags: what `reap` judges.
    pub async fn list_ours(
        &self,
        managed_tag: &str,
        job_tag: &str,
        job_id_tag: &str,
    ) -> Result<Vec<Listed>, TemporaryError> {
        let tag = |tags: &[Tag], key: &str| {
            tags.iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value().map(str::to_owned))
        };
        let mut ours = Vec::new();
        let mut pages = self.client.describe_db_instances().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(rds_error("DescribeDBInstances", "(all)"))?;
            for db in page.db_instances() {
                // an Aurora instance goes with its cluster
                if db.db_cluster_identifier().is_some()
                    || tag(db.tag_list(), managed_tag).as_deref() != Some("true")
                {
                    continue;
                }
                ours.push(Listed {
                    identifier: db.db_instance_identifier().unwrap_or_default().to_owned(),
                    cluster: false,
                    job: tag(db.tag_list(), job_tag),
                    job_id: tag(db.tag_list(), job_id_tag),
                    created: db.instance_create_time().and_then(from_aws),
                });
            }
        }
        let mut pages = self.client.describe_db_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(rds_error("DescribeDBClusters", "(all)"))?;
            for cluster in page.db_clusters() {
                if tag(cluster.tag_list(), managed_tag).as_deref() != Some("true") {
                    continue;
                }
                ours.push(Listed {
                    identifier: cluster
                        .db_cluster_identifier()
                        .unwrap_or_default()
                        .to_owned(),
                    cluster: true,
                    job: tag(cluster.tag_list(), job_tag),
                    job_id: tag(cluster.tag_list(), job_id_tag),
                    created: cluster.cluster_create_time().and_then(from_aws),
                });
            }
        }
        Ok(ours)
    }
}

/// Stores the temporary database's master `password` as the SecureString
/// `parameter` (encrypted with the account's `aws/ssm` key), replacing
/// what an earlier job left; retries while SSM throttles, for up to
/// `patience`.
pub async fn store_password(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
    password: &str,
    patience: Duration,
) -> Result<(), TemporaryError> {
    let deadline = Instant::now() + patience;
    let mut attempt = 1;
    loop {
        let answer = ssm
            .put_parameter()
            .name(parameter)
            .value(password)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .description("backup-cloud: master password of a temporary database, deleted with it")
            .send()
            .await;
        match answer {
            Ok(_) => return Ok(()),
            Err(err) if is_throttled(&err) && Instant::now() < deadline => {
                tokio::time::sleep(crate::status_store::throttle_backoff(
                    Duration::from_millis(500),
                    attempt,
                ))
                .await;
                attempt += 1;
            }
            Err(err) => {
                return Err(TemporaryError::Password {
                    parameter: parameter.to_owned(),
                    message: aws_sdk_ssm::error::DisplayErrorContext(&err).to_string(),
                })
            }
        }
    }
}

/// Deletes the password parameter; one already gone is fine.
pub async fn forget_password(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
) -> Result<(), TemporaryError> {
    match ssm.delete_parameter().name(parameter).send().await {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            Ok(())
        }
        Err(err) => Err(TemporaryError::Password {
            parameter: parameter.to_owned(),
            message: aws_sdk_ssm::error::DisplayErrorContext(&err).to_string(),
        }),
    }
}

fn is_throttled<E: aws_sdk_ssm::error::ProvideErrorMetadata, R>(
    err: &aws_sdk_ssm::error::SdkError<E, R>,
) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.contains("Throttl") || code == "TooManyUpdates")
}

/// The production database, as far as a restore needs it.
struct Production {
    identifier: String,
    engine: String,
    instance_class: String,
    subnet_group: Option<String>,
    security_groups: Vec<String>,
    /// `None`: point-in-time restore is impossible (no automated backups).
    latest_restorable: Option<OffsetDateTime>,
    /// The earliest time a restore can ask for, when known.
    created: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        (1..=63).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.contains("--")
            && !name.ends_with('-')
    }

    #[test]
    fn temporary_identifiers_follow_rds_naming_rules_and_keep_the_unique_suffix() {
        let short = identifier("orders-20261201T031000Z-0a1b2c3d");
        assert_eq!(short, "backup-cloud-orders-20261201t031000z-0a1b2c3d");
        let long_job = format!("{}_x", "Very_Long".repeat(8));
        let id = format!("{long_job}-20261201T031000Z-0a1b2c3d");
        let long = identifier(&id);
        assert!(valid(&long), "{long}");
        assert!(long.starts_with("backup-cloud-"), "{long}");
        assert!(long.ends_with("-0a1b2c3d"), "{long}");
        assert!(valid(&identifier("a__b--c-")), "{}", identifier("a__b--c-"));
    }

    #[test]
    fn passwords_are_fresh_and_within_every_engines_limits() {
        let a = new_password();
        assert_eq!(a.len(), PASSWORD_CHARS);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, new_password());
    }

    #[test]
    fn engines_match_their_rds_names_only() {
        assert!(engine_matches(Engine::Postgres, "postgres"));
        assert!(engine_matches(Engine::Postgres, "aurora-postgresql"));
        assert!(!engine_matches(Engine::Postgres, "mysql"));
        assert!(engine_matches(Engine::Mysql, "mariadb"));
        assert!(engine_matches(Engine::Mysql, "aurora-mysql"));
        assert!(!engine_matches(Engine::Mysql, "postgres"));
    }

    #[test]
    fn the_backup_records_the_moment_it_represents() {
        let at = time::macros::datetime!(2026-12-01 03:10 UTC);
        let snapshot = Restore {
            database: RdsDatabase::Instance("orders".into()),
            point: Point::Snapshot {
                identifier: "rds:orders-2026-12-01-03-10".into(),
                arn: "arn:aws:rds:us-east-1:1:snapshot:rds:orders-2026-12-01-03-10".into(),
                created: at,
            },
            engine: "postgres".into(),
            instance_class: "db.t4g.large".into(),
            db_subnet_group_name: None,
            vpc_security_group_ids: vec![],
        };
        assert_eq!(
            snapshot.data_source("backup-cloud-x"),
            DataSource::Snapshot {
                snapshot_arn: "arn:aws:rds:us-east-1:1:snapshot:rds:orders-2026-12-01-03-10".into(),
                snapshot_time: at,
                temporary_database: "backup-cloud-x".into(),
            }
        );
        let latest = Restore {
            point: Point::Time {
                at: None,
                latest: at,
            },
            ..snapshot
        };
        assert_eq!(
            latest.data_source("t"),
            DataSource::PointInTime {
                source_database: "orders".into(),
                restore_time: at,
                temporary_database: "t".into(),
            }
        );
        assert!(latest.describe().contains("latest restorable time"));
    }
}
