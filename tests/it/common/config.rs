//! The config files the fixtures write, as typed values.
//!
//! A test changes a field of [`ConfigFile`] and the file is rendered from
//! it by serializing to TOML, so a setting cannot silently fail to apply
//! the way a text replacement on a template can: a field that does not
//! exist does not compile, and every key rendered is checked by the real
//! parser, which refuses unknown keys. Only the keys the tests set are
//! here; the parser's defaults cover the rest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use backup_cloud::schema::Retention;
use serde::{Serialize, Serializer};

/// A whole config file.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigFile {
    pub aws: Aws,
    pub storage: Storage,
    pub instance: Instance,
    pub status: StatusSettings,
    pub upload: Upload,
    /// `[retention]`: every job's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionRules>,
    /// `[checks]`: every job's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
    /// `[notify]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Jobs by name.
    pub jobs: BTreeMap<String, Job>,
}

/// `[retention]` (or a job's own); durations as the config writes them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionRules {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete_grace: Option<String>,
}

/// `[notify]`.
#[derive(Debug, Clone, Serialize)]
pub struct Notify {
    pub sns_topic_arn: String,
}

/// `[checks]` (or a job's own).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_alert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_every: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_every: Option<String>,
}

/// `[aws]`.
#[derive(Debug, Clone, Serialize)]
pub struct Aws {
    pub region: String,
    /// LocalStack, or a fault proxy in front of it.
    pub endpoint_url: String,
}

/// `[storage]`.
#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    pub bucket: String,
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// `[instance]`.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub ami_parameter: String,
    pub instance_type: String,
    #[serde(serialize_with = "human_duration")]
    pub max_lifetime: Duration,
    /// The agent's instance profile: the test's own (see
    /// [`super::gate::Actors`]).
    pub instance_profile: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_volume_gib: Option<u32>,
    /// Tags on the instance; the simulator reads its own settings
    /// (`backup-cloud-sim:…`) from here.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// `[status]`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSettings {
    pub parameter_prefix: String,
    #[serde(serialize_with = "human_duration")]
    pub heartbeat_timeout: Duration,
    #[serde(serialize_with = "human_duration")]
    pub poll_interval: Duration,
    #[serde(serialize_with = "human_duration")]
    pub boot_timeout: Duration,
    #[serde(
        serialize_with = "optional_human_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub stall_timeout: Option<Duration>,
}

/// `[upload]`.
#[derive(Debug, Clone, Serialize)]
pub struct Upload {
    pub part_size_mib: u64,
    pub concurrency: usize,
}

/// One `[jobs.NAME]` table; `None` leaves a key to the parser's default.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub engine: Engine,
    /// The live connection: left out when empty (0), as a job whose
    /// `source` is a temporary RDS database must.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password_parameter: String,
    /// `source`, `db_instance_identifier`, `restore_time`, ...: the keys
    /// of a job backed up from a temporary RDS database, as written.
    #[serde(flatten)]
    pub rds: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<PostgresFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MysqlMode>,
    /// Parallel dump workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_per_chunk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<bool>,
    /// MySQL: tables and views left out, by database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// `engine` of a job.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
}

/// `format` of a PostgreSQL job.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PostgresFormat {
    Directory,
}

/// `mode` of a MySQL job.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MysqlMode {
    Mydumper,
    Mysqldump,
}

impl ConfigFile {
    /// The one job of a fixture's config.
    pub fn only_job(&mut self) -> &mut Job {
        assert_eq!(self.jobs.len(), 1, "one job: {:?}", self.jobs.keys());
        self.jobs.values_mut().next().unwrap()
    }

    /// Renders the file to `path`.
    pub fn write(&self, path: &Path) {
        let text = toml::to_string(self).expect("a config renders as TOML");
        std::fs::write(path, text).unwrap();
    }
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

/// A duration as the config writes it, e.g. `90s` or `20m`.
fn human_duration<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

fn optional_human_duration<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => human_duration(duration, serializer),
        None => serializer.serialize_none(),
    }
}
