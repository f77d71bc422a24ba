//! The configuration file: parsing, defaults and validation.
//!
//! A scheduler runs backup-cloud unattended, so a mistake here must be found
//! before anything is launched and reported precisely: every rejection names
//! the file, the key and what would be valid. Values that later reach a
//! shell script, an S3 key, an SSM parameter name or a tag are restricted to
//! the characters those places accept, so hostile input is refused here
//! rather than escaped later (the user-data filter quotes everything anyway).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::retention::Rules;
use crate::schema::{
    AwsTimeouts, DumpMode, DumpSettings, Engine, Retention, DEFAULT_AWS_ATTEMPT_SECS,
    DEFAULT_AWS_OPERATION_SECS, DEFAULT_DATABASE_CONNECT_SECS,
};

/// Ubuntu 24.04 LTS, amd64, from Canonical's public SSM parameters.
pub const DEFAULT_AMI_PARAMETER: &str =
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id";
pub const DEFAULT_INSTANCE_TYPE: &str = "m6id.large";
pub const DEFAULT_STATUS_PREFIX: &str = "/backup-cloud/jobs";
pub const DEFAULT_PART_SIZE_MIB: u64 = 16;
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;

/// How long incomplete backups are left alone by default (`incomplete_grace`).
pub const DEFAULT_INCOMPLETE_GRACE: Duration = Duration::from_secs(2 * 86_400);

/// `check`'s default thresholds: a nightly job's newest backup is late
/// after 26 hours; the operating guide asks for every backup category to
/// be verified (and drilled) at least monthly.
pub const DEFAULT_MAX_AGE_ALERT: Duration = Duration::from_secs(26 * 3600);
pub const DEFAULT_VERIFY_EVERY: Duration = Duration::from_secs(31 * 86_400);
pub const DEFAULT_DRILL_EVERY: Duration = Duration::from_secs(31 * 86_400);

const DAY: Duration = Duration::from_secs(86_400);

/// S3 accepts retention periods of up to 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Tag keys backup-cloud sets itself; users may not override them.
pub const RESERVED_TAG_PREFIX: &str = "backup-cloud:";

/// A configuration problem, always tied to the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: `{key}` {problem}; expected {expected}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
        expected: String,
    },
    #[error("{path}: no job named `{job}`; configured jobs: {known}")]
    UnknownJob {
        path: PathBuf,
        job: String,
        known: String,
    },
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub aws: AwsSettings,
    pub storage: StorageSettings,
    pub instance: InstanceSettings,
    pub status: StatusSettings,
    pub timeouts: TimeoutSettings,
    pub upload: UploadConfig,
    pub notify: NotifySettings,
    pub jobs: BTreeMap<String, JobConfig>,
}

/// `[notify]`: where alerts go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// An SNS topic: a message on every failed or timed-out job and every
    /// problem `check` finds.
    pub sns_topic_arn: Option<String>,
}

/// What `check` holds a job to (`[checks]`, or the job's own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// The newest complete backup must be younger than this.
    pub max_age_alert: Duration,
    /// It must have passed `verify` within this…
    pub verify_every: Duration,
    /// …and a drill within this.
    pub drill_every: Duration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Region; when absent, the standard chain decides.
    pub region: Option<String>,
    /// Endpoint for every service (LocalStack); `AWS_ENDPOINT_URL` also works.
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// S3 Object Lock retention for every object written.
    #[serde(default)]
    pub retention: Option<Retention>,
}

#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub ami_parameter: String,
    pub instance_type: String,
    pub instance_profile: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub max_lifetime: Duration,
    /// Size of the root volume in GiB (gp3), instead of the AMI's own
    /// (8 GiB for Ubuntu's and Amazon Linux's): room for a directory dump
    /// on an instance type without instance storage.
    pub root_volume_gib: Option<u32>,
    pub tags: BTreeMap<String, String>,
    /// Ask for spot capacity first, falling back to on-demand.
    pub spot: bool,
    /// On-demand price per hour, for `plan`'s cost estimate.
    pub hourly_price_usd: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub parameter_prefix: String,
    pub heartbeat_timeout: Duration,
    pub poll_interval: Duration,
    pub boot_timeout: Duration,
    /// How long the transfer counters may stand still while dumping or
    /// uploading before the job is declared hung, heartbeats or not.
    pub stall_timeout: Duration,
}

/// Limits on every other wait (`[timeouts]`), so none can last forever.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutSettings {
    /// For EC2 to confirm an instance is going away.
    pub terminate_wait: Duration,
    /// Past `max_lifetime`, before the controller stops waiting for the
    /// dead-man shutdown to report in.
    pub lifetime_grace: Duration,
    /// For the operator's answer after Ctrl-C (then: terminate).
    pub interrupt_prompt: Duration,
    /// For the dump tools to connect to the database.
    pub database_connect: Duration,
    /// How long a temporary database (`source = "snapshot"` or
    /// `"point-in-time"`) may take to become available, and to be deleted.
    pub temporary_database: Duration,
    /// For the instance to download the agent, per attempt.
    pub agent_download: Duration,
    /// For one attempt of an AWS call.
    pub aws_attempt: Duration,
    /// For an AWS call, retries included.
    pub aws_operation: Duration,
}

impl TimeoutSettings {
    /// The limits on AWS calls, as the SDK and the job spec take them.
    pub fn aws(&self) -> AwsTimeouts {
        AwsTimeouts {
            attempt_secs: self.aws_attempt.as_secs(),
            operation_secs: self.aws_operation.as_secs(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct UploadConfig {
    pub part_size_mib: u64,
    pub concurrency: usize,
}

/// One backup job as configured.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub name: String,
    pub engine: Engine,
    /// Where the data is read from (`source`).
    pub source: Source,
    /// PostgreSQL: the database. MySQL: the databases dumped, joined by
    /// `,`, or `*` for all of them (for logs and the manifest).
    pub database: String,
    pub dump: DumpSettings,
    pub instance_type: String,
    pub max_lifetime: Duration,
    /// `instance.root_volume_gib`, or this job's own.
    pub root_volume_gib: Option<u32>,
    pub spot: bool,
    /// Which backups `prune` keeps (`[retention]` or the job's own), with
    /// `incomplete_grace` raised to at least the longest a backup of the
    /// job can be in the writing.
    pub retention: Rules,
    pub checks: Checks,
}

/// Where a job's data is read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `source = "live"` (the default): the production server itself.
    Live(LiveDatabase),
    /// `source = "snapshot"` or `"point-in-time"`: a temporary copy the
    /// controller restores for the job and deletes after it.
    Rds(RdsSource),
}

/// How to reach and log in to a live database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDatabase {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The SSM SecureString parameter holding the password.
    pub password_parameter: String,
}

/// A temporary RDS database restored for each backup.
#[derive(Debug, Clone, PartialEq)]
pub struct RdsSource {
    /// The production DB instance or Aurora DB cluster.
    pub database: RdsDatabase,
    pub restore: RestoreFrom,
    /// `temp_instance_class`; `None`: the production database's own class.
    pub instance_class: Option<String>,
    /// `db_subnet_group_name`; `None`: the production database's.
    pub db_subnet_group_name: Option<String>,
    /// `vpc_security_group_ids`: groups that admit the backup instance;
    /// empty: the production database's.
    pub vpc_security_group_ids: Vec<String>,
    /// `temp_hourly_price_usd`: what the temporary database costs per hour,
    /// for `plan`'s estimate.
    pub hourly_price_usd: Option<f64>,
}

impl RdsSource {
    /// The source in words, e.g. `a temporary copy of RDS DB instance
    /// orders (its newest snapshot)`.
    pub fn describe(&self) -> String {
        let what = match &self.database {
            RdsDatabase::Instance(id) => format!("RDS DB instance {id}"),
            RdsDatabase::Cluster(id) => format!("Aurora DB cluster {id}"),
        };
        let when = match &self.restore {
            RestoreFrom::Snapshot(None) => "its newest snapshot".to_owned(),
            RestoreFrom::Snapshot(Some(id)) => format!("snapshot {id}"),
            RestoreFrom::PointInTime(None) => "its latest restorable time".to_owned(),
            RestoreFrom::PointInTime(Some(at)) => format!(
                "as of {}",
                at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
        };
        format!("a temporary copy of {what} ({when})")
    }
}

/// `db_instance_identifier` or `db_cluster_identifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdsDatabase {
    Instance(String),
    Cluster(String),
}

impl RdsDatabase {
    /// The production database's identifier.
    pub fn identifier(&self) -> &str {
        match self {
            RdsDatabase::Instance(id) | RdsDatabase::Cluster(id) => id,
        }
    }
}

/// What moment the temporary database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// `source = "snapshot"`: the newest available automated or manual
    /// snapshot (`None`), or `snapshot_identifier`.
    Snapshot(Option<String>),
    /// `source = "point-in-time"`: `restore_time = "latest"` (`None`, the
    /// default) or an RFC 3339 time.
    PointInTime(Option<time::OffsetDateTime>),
}

// ---- raw, as written in the file -------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    aws: AwsSettings,
    storage: StorageSettings,
    #[serde(default)]
    instance: RawInstance,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    upload: RawUpload,
    retention: Option<RawRetention>,
    checks: Option<RawChecks>,
    #[serde(default)]
    notify: NotifySettings,
    #[serde(default)]
    jobs: BTreeMap<String, RawJob>,
}

/// `[retention]` or `[jobs.NAME.retention]`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    max_age: Option<String>,
    incomplete_grace: Option<String>,
}

/// `[checks]` or `[jobs.NAME.checks]`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    max_age_alert: Option<String>,
    verify_every: Option<String>,
    drill_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    ami_parameter: Option<String>,
    instance_type: Option<String>,
    instance_profile: Option<String>,
    subnet_id: Option<String>,
    #[serde(default)]
    security_group_ids: Vec<String>,
    max_lifetime: Option<String>,
    root_volume_gib: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    spot: bool,
    hourly_price_usd: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    parameter_prefix: Option<String>,
    heartbeat_timeout: Option<String>,
    poll_interval: Option<String>,
    boot_timeout: Option<String>,
    stall_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    terminate_wait: Option<String>,
    lifetime_grace: Option<String>,
    interrupt_prompt: Option<String>,
    database_connect: Option<String>,
    temporary_database: Option<String>,
    agent_download: Option<String>,
    aws_attempt: Option<String>,
    aws_operation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    part_size_mib: Option<u64>,
    concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    engine: Engine,
    #[serde(default)]
    source: RawSource,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    database: Option<String>,
    databases: Option<Vec<String>>,
    password_parameter: Option<String>,
    db_instance_identifier: Option<String>,
    db_cluster_identifier: Option<String>,
    snapshot_identifier: Option<String>,
    restore_time: Option<String>,
    temp_instance_class: Option<String>,
    db_subnet_group_name: Option<String>,
    vpc_security_group_ids: Option<Vec<String>>,
    temp_hourly_price_usd: Option<f64>,
    format: Option<PostgresFormat>,
    mode: Option<MysqlMode>,
    jobs: Option<u32>,
    compression_level: Option<i32>,
    long_query_guard: Option<String>,
    kill_long_queries: Option<bool>,
    no_locks: Option<bool>,
    rows_per_chunk: Option<u64>,
    large_objects: Option<bool>,
    exclude: Option<BTreeMap<String, Vec<String>>>,
    instance_type: Option<String>,
    max_lifetime: Option<String>,
    root_volume_gib: Option<i64>,
    spot: Option<bool>,
    retention: Option<RawRetention>,
    checks: Option<RawChecks>,
}

/// `source` of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawSource {
    #[default]
    Live,
    Snapshot,
    PointInTime,
}

/// `format` of a PostgreSQL job.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PostgresFormat {
    Custom,
    Directory,
}

/// `mode` of a MySQL job.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MysqlMode {
    Mydumper,
    Mysqldump,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|err| ConfigError::Syntax {
            path: path.to_owned(),
            message: format!(
                "not UTF-8 text (an invalid byte at offset {}); a TOML file must be UTF-8",
                err.utf8_error().valid_up_to()
            ),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates `text`; `path` is used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let key = dotted_key(e.path());
                let mut message = syntax_message(&e.into_inner().to_string());
                if !message.contains("expected") {
                    // the parser's "wanted string or table" for an enum
                    let choices = key.as_deref().and_then(enum_choices).unwrap_or(
                        "a value of the type and form the README documents for this key",
                    );
                    message.push_str(&format!("\n  expected {choices}"));
                }
                ConfigError::Syntax {
                    path: path.to_owned(),
                    message: match key {
                        Some(key) => format!("`{key}`: {message}"),
                        None => message,
                    },
                }
            })?;
        Validator { path }.config(raw)
    }

    /// The job called `name`, or an error listing the configured ones.
    pub fn job(&self, name: &str) -> Result<&JobConfig, ConfigError> {
        self.jobs.get(name).ok_or_else(|| ConfigError::UnknownJob {
            path: self.path.clone(),
            job: name.to_owned(),
            known: if self.jobs.is_empty() {
                "(none)".to_owned()
            } else {
                self.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// SSM parameter holding the status of job `job_name`.
    pub fn status_parameter(&self, job_name: &str) -> String {
        format!("{}/{}", self.status.parameter_prefix, job_name)
    }

    /// `<prefix>/` or the empty string, ready to put in front of a key.
    pub fn key_prefix(&self) -> String {
        crate::layout::root(&self.storage.prefix)
    }
}

impl RawJob {
    /// mydumper's own keys, and whether each was given.
    fn mydumper_tuning(&self) -> [(&'static str, bool); 4] {
        [
            ("long_query_guard", self.long_query_guard.is_some()),
            ("kill_long_queries", self.kill_long_queries.is_some()),
            ("no_locks", self.no_locks.is_some()),
            ("rows_per_chunk", self.rows_per_chunk.is_some()),
        ]
    }
}

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, key: &str, problem: impl Into<String>, expected: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
            expected: expected.to_owned(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        if let Some(region) = &raw.aws.region {
            self.check(
                "aws.region",
                region,
                is_region,
                "a region name such as `eu-west-1`",
            )?;
        }
        if let Some(url) = &raw.aws.endpoint_url {
            self.check(
                "aws.endpoint_url",
                url,
                is_endpoint_url,
                "an http:// or https:// URL without spaces or quotes",
            )?;
        }
        self.check(
            "storage.bucket",
            &raw.storage.bucket,
            is_bucket_name,
            "an S3 bucket name: 3-63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit",
        )?;
        self.check(
            "storage.prefix",
            &raw.storage.prefix,
            is_key_prefix,
            "empty, or path segments of letters, digits and `!-_.*'()` separated by single `/`, with no leading or trailing `/`",
        )?;

        if let Some(retention) = &raw.storage.retention {
            if !(1..=MAX_RETENTION_DAYS).contains(&retention.days) {
                return Err(self.invalid(
                    "storage.retention.days",
                    format!("is {}", retention.days),
                    &format!("a whole number of days from 1 to {MAX_RETENTION_DAYS}, in a table such as `retention = {{ mode = \"compliance\", days = 30 }}`"),
                ));
            }
        }

        if let Some(topic) = &raw.notify.sns_topic_arn {
            self.check(
                "notify.sns_topic_arn",
                topic,
                is_sns_topic_arn,
                "a standard (not FIFO) SNS topic ARN such as `arn:aws:sns:eu-west-1:123456789012:backup-cloud-alerts`",
            )?;
        }
        let instance = self.instance(raw.instance)?;
        let status = self.status(raw.status)?;
        let timeouts = self.timeouts(raw.timeouts)?;
        let upload = self.upload(raw.upload)?;

        let retention = raw.retention.unwrap_or_default();
        let checks = raw.checks.unwrap_or_default();
        let mut jobs = BTreeMap::new();
        for (name, mut job) in raw.jobs {
            let (retention_key, raw_retention) = match job.retention.take() {
                Some(own) => (format!("jobs.{name}.retention"), own),
                None => ("retention".to_owned(), retention.clone()),
            };
            let (checks_key, raw_checks) = match job.checks.take() {
                Some(own) => (format!("jobs.{name}.checks"), own),
                None => ("checks".to_owned(), checks.clone()),
            };
            let mut job = self.job(&name, job, &instance)?;
            // the longest a backup of this job can be in the writing
            let writing = job.max_lifetime + status.boot_timeout + timeouts.lifetime_grace;
            job.retention = self.retention(&retention_key, &raw_retention, writing)?;
            job.checks = self.checks(&checks_key, &raw_checks)?;
            jobs.insert(name, job);
        }
        Ok(Config {
            path: self.path.to_owned(),
            aws: raw.aws,
            storage: raw.storage,
            instance,
            status,
            timeouts,
            upload,
            notify: raw.notify,
            jobs,
        })
    }

    fn instance(&self, raw: RawInstance) -> Result<InstanceSettings, ConfigError> {
        let ami_parameter = raw
            .ami_parameter
            .unwrap_or_else(|| DEFAULT_AMI_PARAMETER.to_owned());
        self.check(
            "instance.ami_parameter",
            &ami_parameter,
            |name| {
                is_ssm_name(name)
                    && AMI_PARAMETER_PREFIXES
                        .iter()
                        .any(|prefix| name.starts_with(prefix))
            },
            "an SSM parameter name of letters, digits and `_.-/` under /aws/service/ (public) \
             or /backup-cloud/amis/ (your own AMI's): the controller's policy reads no others",
        )?;
        let instance_type = raw
            .instance_type
            .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_owned());
        self.instance_type("instance.instance_type", &instance_type)?;
        if let Some(profile) = &raw.instance_profile {
            self.check(
                "instance.instance_profile",
                profile,
                is_iam_name,
                "an instance profile name or ARN of letters, digits and `+=,.@_-:/`",
            )?;
        }
        if let Some(subnet) = &raw.subnet_id {
            self.check(
                "instance.subnet_id",
                subnet,
                |s| is_aws_id(s, "subnet-"),
                "a subnet id such as `subnet-0123abcd`",
            )?;
        }
        for (i, group) in raw.security_group_ids.iter().enumerate() {
            self.check(
                &format!("instance.security_group_ids[{i}]"),
                group,
                |s| is_aws_id(s, "sg-"),
                "a security group id such as `sg-0123abcd`",
            )?;
        }
        let max_lifetime = self.duration(
            "instance.max_lifetime",
            raw.max_lifetime.as_deref(),
            Duration::from_secs(12 * 3600),
            Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600),
        )?;
        for (key, value) in &raw.tags {
            let field = format!("instance.tags.{}", shown_key(key));
            if key.starts_with(RESERVED_TAG_PREFIX) || key.starts_with("aws:") {
                return Err(self.invalid(
                    &field,
                    "uses a reserved prefix",
                    "a tag key not starting with `backup-cloud:` or `aws:`",
                ));
            }
            self.check(
                &field,
                key,
                |k| is_tag_text(k, 128),
                "a tag key of 1-128 letters, digits, spaces and `_.:/=+-@`",
            )?;
            self.check(
                &field,
                value,
                |v| v.is_empty() || is_tag_text(v, 256),
                "a tag value of up to 256 letters, digits, spaces and `_.:/=+-@`",
            )?;
        }
        if let Some(price) = raw.hourly_price_usd {
            if !(price.is_finite() && price > 0.0 && price < 1000.0) {
                return Err(self.invalid(
                    "instance.hourly_price_usd",
                    format!("is {price}"),
                    "a price per hour in US dollars, greater than 0 and below 1000",
                ));
            }
        }
        let root_volume_gib = raw
            .root_volume_gib
            .map(|gib| self.root_volume_gib("instance.root_volume_gib", gib))
            .transpose()?;
        Ok(InstanceSettings {
            spot: raw.spot,
            root_volume_gib,
            hourly_price_usd: raw.hourly_price_usd,
            ami_parameter,
            instance_type,
            instance_profile: raw.instance_profile,
            subnet_id: raw.subnet_id,
            security_group_ids: raw.security_group_ids,
            max_lifetime,
            tags: raw.tags,
        })
    }

    fn status(&self, raw: RawStatus) -> Result<StatusSettings, ConfigError> {
        let parameter_prefix = raw
            .parameter_prefix
            .unwrap_or_else(|| DEFAULT_STATUS_PREFIX.to_owned());
        self.check(
            "status.parameter_prefix",
            &parameter_prefix,
            |p| p.starts_with('/') && !p.ends_with('/') && is_ssm_name(p),
            "an SSM path such as `/backup-cloud/jobs`: leading `/`, no trailing `/`, letters, digits and `_.-/`",
        )?;
        let heartbeat_timeout = self.duration(
            "status.heartbeat_timeout",
            raw.heartbeat_timeout.as_deref(),
            Duration::from_secs(600),
            Duration::from_secs(10)..=Duration::from_secs(24 * 3600),
        )?;
        let poll_interval = self.duration(
            "status.poll_interval",
            raw.poll_interval.as_deref(),
            Duration::from_secs(10),
            Duration::from_millis(200)..=Duration::from_secs(600),
        )?;
        let boot_timeout = self.duration(
            "status.boot_timeout",
            raw.boot_timeout.as_deref(),
            Duration::from_secs(900),
            Duration::from_secs(10)..=Duration::from_secs(24 * 3600),
        )?;
        let stall_timeout = self.duration(
            "status.stall_timeout",
            raw.stall_timeout.as_deref(),
            Duration::from_secs(30 * 60),
            Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600),
        )?;
        if poll_interval * 2 > heartbeat_timeout {
            return Err(self.invalid(
                "status.poll_interval",
                format!(
                    "is {} but status.heartbeat_timeout is only {}",
                    humantime::format_duration(poll_interval),
                    humantime::format_duration(heartbeat_timeout)
                ),
                "at most half of status.heartbeat_timeout",
            ));
        }
        Ok(StatusSettings {
            parameter_prefix,
            heartbeat_timeout,
            poll_interval,
            boot_timeout,
            stall_timeout,
        })
    }

    fn timeouts(&self, raw: RawTimeouts) -> Result<TimeoutSettings, ConfigError> {
        let secs = Duration::from_secs;
        let aws_attempt = self.duration(
            "timeouts.aws_attempt",
            raw.aws_attempt.as_deref(),
            secs(DEFAULT_AWS_ATTEMPT_SECS),
            secs(5)..=secs(6 * 3600),
        )?;
        let aws_operation = self.duration(
            "timeouts.aws_operation",
            raw.aws_operation.as_deref(),
            secs(DEFAULT_AWS_OPERATION_SECS),
            secs(5)..=secs(24 * 3600),
        )?;
        if aws_operation < aws_attempt {
            return Err(self.invalid(
                "timeouts.aws_operation",
                format!(
                    "is {} but timeouts.aws_attempt is {}",
                    humantime::format_duration(aws_operation),
                    humantime::format_duration(aws_attempt)
                ),
                "at least timeouts.aws_attempt: one call spans all its attempts",
            ));
        }
        Ok(TimeoutSettings {
            terminate_wait: self.duration(
                "timeouts.terminate_wait",
                raw.terminate_wait.as_deref(),
                secs(300),
                secs(30)..=secs(3600),
            )?,
            lifetime_grace: self.duration(
                "timeouts.lifetime_grace",
                raw.lifetime_grace.as_deref(),
                secs(120),
                secs(10)..=secs(3600),
            )?,
            interrupt_prompt: self.duration(
                "timeouts.interrupt_prompt",
                raw.interrupt_prompt.as_deref(),
                secs(60),
                secs(1)..=secs(3600),
            )?,
            database_connect: self.duration(
                "timeouts.database_connect",
                raw.database_connect.as_deref(),
                secs(DEFAULT_DATABASE_CONNECT_SECS),
                secs(2)..=secs(600),
            )?,
            temporary_database: self.duration(
                "timeouts.temporary_database",
                raw.temporary_database.as_deref(),
                secs(2 * 3600),
                secs(60)..=secs(24 * 3600),
            )?,
            agent_download: self.duration(
                "timeouts.agent_download",
                raw.agent_download.as_deref(),
                secs(600),
                secs(10)..=secs(2 * 3600),
            )?,
            aws_attempt,
            aws_operation,
        })
    }

    fn upload(&self, raw: RawUpload) -> Result<UploadConfig, ConfigError> {
        let part_size_mib = raw.part_size_mib.unwrap_or(DEFAULT_PART_SIZE_MIB);
        if !(5..=5120).contains(&part_size_mib) {
            return Err(self.invalid(
                "upload.part_size_mib",
                format!("is {part_size_mib}"),
                "a whole number from 5 to 5120 (S3's part size limits, in MiB)",
            ));
        }
        let concurrency = raw.concurrency.unwrap_or(DEFAULT_UPLOAD_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            return Err(self.invalid(
                "upload.concurrency",
                format!("is {concurrency}"),
                "a whole number from 1 to 64",
            ));
        }
        Ok(UploadConfig {
            part_size_mib,
            concurrency,
        })
    }

    fn job(
        &self,
        name: &str,
        raw: RawJob,
        instance: &InstanceSettings,
    ) -> Result<JobConfig, ConfigError> {
        let key = |field: &str| format!("jobs.{name}.{field}");
        if !is_job_name(name) {
            return Err(self.invalid(
                &format!("jobs.{}", shown_key(name)),
                "is not a valid job name",
                "a name of 1-64 letters, digits, `_` and `-`, starting with a letter or digit",
            ));
        }
        let source = match raw.source {
            RawSource::Live => Source::Live(self.live_database(name, &raw)?),
            _ => Source::Rds(self.rds_source(name, &raw)?),
        };
        let (database, dump) = self.dump_settings(name, &raw)?;
        let instance_type = match raw.instance_type {
            Some(t) => {
                self.instance_type(&key("instance_type"), &t)?;
                t
            }
            None => instance.instance_type.clone(),
        };
        let max_lifetime = match raw.max_lifetime.as_deref() {
            Some(text) => self.duration(
                &key("max_lifetime"),
                Some(text),
                instance.max_lifetime,
                Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600),
            )?,
            None => instance.max_lifetime,
        };
        let root_volume_gib = match raw.root_volume_gib {
            Some(gib) => Some(self.root_volume_gib(&key("root_volume_gib"), gib)?),
            None => instance.root_volume_gib,
        };
        Ok(JobConfig {
            name: name.to_owned(),
            root_volume_gib,
            engine: raw.engine,
            source,
            database,
            dump,
            instance_type,
            max_lifetime,
            spot: raw.spot.unwrap_or(instance.spot),
            retention: Rules::default(),
            checks: Checks {
                max_age_alert: DEFAULT_MAX_AGE_ALERT,
                verify_every: DEFAULT_VERIFY_EVERY,
                drill_every: DEFAULT_DRILL_EVERY,
            },
        })
    }

    /// `host`, `port`, `user` and `password_parameter` of a live job;
    /// the keys of the RDS sources are refused.
    fn live_database(&self, name: &str, raw: &RawJob) -> Result<LiveDatabase, ConfigError> {
        let key = |field: &str| format!("jobs.{name}.{field}");
        let rds_keys = [
            (
                "db_instance_identifier",
                raw.db_instance_identifier.is_some(),
            ),
            ("db_cluster_identifier", raw.db_cluster_identifier.is_some()),
            ("snapshot_identifier", raw.snapshot_identifier.is_some()),
            ("restore_time", raw.restore_time.is_some()),
            ("temp_instance_class", raw.temp_instance_class.is_some()),
            ("db_subnet_group_name", raw.db_subnet_group_name.is_some()),
            (
                "vpc_security_group_ids",
                raw.vpc_security_group_ids.is_some(),
            ),
            ("temp_hourly_price_usd", raw.temp_hourly_price_usd.is_some()),
        ];
        if let Some((field, _)) = rds_keys.iter().find(|(_, set)| *set) {
            return Err(self.invalid(
                &key(field),
                "is set, but the job's source is `live`",
                "no such key, or `source = \"snapshot\"` or `\"point-in-time\"` (the keys of a temporary RDS database)",
            ));
        }
        let required = |field: &str, value: &Option<String>| {
            value.clone().ok_or_else(|| {
                self.invalid(
                    &key(field),
                    "is missing",
                    "a value: a job with `source = \"live\"` (the default) connects to its database itself",
                )
            })
        };
        let host = required("host", &raw.host)?;
        self.check(
            &key("host"),
            &host,
            is_host,
            "a DNS name or IP address (letters, digits, `.`, `-`, `:`)",
        )?;
        let port = raw.port.unwrap_or(match raw.engine {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
        });
        if port == 0 {
            return Err(self.invalid(&key("port"), "is 0", "a TCP port from 1 to 65535"));
        }
        let user = required("user", &raw.user)?;
        self.check(
            &key("user"),
            &user,
            is_db_identifier,
            "a user name of 1-63 bytes without control characters",
        )?;
        let password_parameter = required("password_parameter", &raw.password_parameter)?;
        self.check(
            &key("password_parameter"),
            &password_parameter,
            is_ssm_name,
            "the name of an SSM SecureString parameter (letters, digits and `_.-/`), not the password itself",
        )?;
        Ok(LiveDatabase {
            host,
            port,
            user,
            password_parameter,
        })
    }

    /// The keys of a job whose source is a temporary RDS database. The
    /// keys of a live connection are refused: the controller takes the
    /// endpoint from the temporary database and gives it a fresh master
    /// password, so no production password is involved.
    fn rds_source(&self, name: &str, raw: &RawJob) -> Result<RdsSource, ConfigError> {
        let key = |field: &str| format!("jobs.{name}.{field}");
        let live_keys = [
            ("host", raw.host.is_some()),
            ("port", raw.port.is_some()),
            ("user", raw.user.is_some()),
            ("password_parameter", raw.password_parameter.is_some()),
        ];
        if let Some((field, _)) = live_keys.iter().find(|(_, set)| *set) {
            return Err(self.invalid(
                &key(field),
                "is set, but the job reads a temporary RDS database",
                "no such key: the endpoint is the temporary database's, and the agent logs in as its master user with a password made for the job",
            ));
        }
        let database = match (&raw.db_instance_identifier, &raw.db_cluster_identifier) {
            (Some(id), None) => {
                self.check(
                    &key("db_instance_identifier"),
                    id,
                    is_rds_identifier,
                    "an RDS DB instance identifier (1-63 letters, digits and `-`, starting with a letter)",
                )?;
                RdsDatabase::Instance(id.clone())
            }
            (None, Some(id)) => {
                self.check(
                    &key("db_cluster_identifier"),
                    id,
                    is_rds_identifier,
                    "an Aurora DB cluster identifier (1-63 letters, digits and `-`, starting with a letter)",
                )?;
                RdsDatabase::Cluster(id.clone())
            }
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    &key("db_cluster_identifier"),
                    "is set together with db_instance_identifier",
                    "one of them: `db_instance_identifier` for RDS, `db_cluster_identifier` for Aurora",
                ))
            }
            (None, None) => {
                return Err(self.invalid(
                    &key("db_instance_identifier"),
                    "is missing",
                    "the production database: `db_instance_identifier` for RDS, or `db_cluster_identifier` for Aurora",
                ))
            }
        };
        let restore = if raw.source == RawSource::Snapshot {
            if raw.restore_time.is_some() {
                return Err(self.invalid(
                    &key("restore_time"),
                    "is set, but the source is `snapshot`",
                    "no such key, or `source = \"point-in-time\"`",
                ));
            }
            if let Some(id) = &raw.snapshot_identifier {
                self.check(
                    &key("snapshot_identifier"),
                    id,
                    |v| is_rds_identifier(v) || is_rds_arn(v),
                    "a DB snapshot identifier or ARN (letters, digits, `-` and `:`)",
                )?;
            }
            RestoreFrom::Snapshot(raw.snapshot_identifier.clone())
        } else {
            if raw.snapshot_identifier.is_some() {
                return Err(self.invalid(
                    &key("snapshot_identifier"),
                    "is set, but the source is `point-in-time`",
                    "no such key, or `source = \"snapshot\"`",
                ));
            }
            let time = match raw.restore_time.as_deref() {
                None | Some("latest") => None,
                Some(text) => Some(
                    time::OffsetDateTime::parse(
                        text,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|_| {
                        self.invalid(
                            &key("restore_time"),
                            format!("is {}", describe(text)),
                            "`latest` or an RFC 3339 time within the backup retention window, such as `2026-11-30T03:00:00Z`",
                        )
                    })?,
                ),
            };
            RestoreFrom::PointInTime(time)
        };
        if let Some(class) = &raw.temp_instance_class {
            self.check(
                &key("temp_instance_class"),
                class,
                |v| v.starts_with("db.") && is_instance_type(&v[3..]),
                "a DB instance class such as `db.r6g.large`",
            )?;
        }
        if let Some(group) = &raw.db_subnet_group_name {
            self.check(
                &key("db_subnet_group_name"),
                group,
                |v| {
                    (1..=255).contains(&v.len())
                        && all_chars(v, |c| c.is_ascii_alphanumeric() || " ._-".contains(c))
                },
                "a DB subnet group name (letters, digits, spaces, `.`, `_` and `-`)",
            )?;
        }
        let vpc_security_group_ids = raw.vpc_security_group_ids.clone().unwrap_or_default();
        for (i, group) in vpc_security_group_ids.iter().enumerate() {
            self.check(
                &format!("{}[{i}]", key("vpc_security_group_ids")),
                group,
                |v| is_aws_id(v, "sg-"),
                "security group ids such as `sg-0123456789abcdef0`",
            )?;
        }
        if let Some(price) = raw.temp_hourly_price_usd {
            if !(price.is_finite() && price >= 0.0) {
                return Err(self.invalid(
                    &key("temp_hourly_price_usd"),
                    format!("is {price}"),
                    "a price in USD per hour, 0 or more",
                ));
            }
        }
        Ok(RdsSource {
            database,
            restore,
            instance_class: raw.temp_instance_class.clone(),
            db_subnet_group_name: raw.db_subnet_group_name.clone(),
            vpc_security_group_ids,
            hourly_price_usd: raw.temp_hourly_price_usd,
        })
    }

    /// The retention rules in table `table` (`retention` or a job's own);
    /// `incomplete_grace` is raised to `writing` (the job's `max_lifetime`,
    /// `boot_timeout` and `lifetime_grace`: the longest a backup can be in
    /// the writing) if shorter, so a backup still being written is never
    /// taken for an abandoned one.
    fn retention(
        &self,
        table: &str,
        raw: &RawRetention,
        writing: Duration,
    ) -> Result<Rules, ConfigError> {
        let key = |field: &str| format!("{table}.{field}");
        let max_age = raw
            .max_age
            .as_deref()
            .map(|text| self.duration(&key("max_age"), Some(text), DAY, DAY..=DAY * 36_500))
            .transpose()?;
        let incomplete_grace = self.duration(
            &key("incomplete_grace"),
            raw.incomplete_grace.as_deref(),
            DEFAULT_INCOMPLETE_GRACE,
            Duration::from_secs(3600)..=DAY * 365,
        )?;
        let rules = Rules {
            keep_last: raw.keep_last.unwrap_or(0),
            keep_hourly: raw.keep_hourly.unwrap_or(0),
            keep_daily: raw.keep_daily.unwrap_or(0),
            keep_weekly: raw.keep_weekly.unwrap_or(0),
            keep_monthly: raw.keep_monthly.unwrap_or(0),
            keep_yearly: raw.keep_yearly.unwrap_or(0),
            max_age,
            incomplete_grace: incomplete_grace.max(writing),
        };
        Ok(rules)
    }

    /// `check`'s thresholds in table `table` (`checks` or a job's own).
    fn checks(&self, table: &str, raw: &RawChecks) -> Result<Checks, ConfigError> {
        let key = |field: &str| format!("{table}.{field}");
        let range = Duration::from_secs(60)..=DAY * 3650;
        Ok(Checks {
            max_age_alert: self.duration(
                &key("max_age_alert"),
                raw.max_age_alert.as_deref(),
                DEFAULT_MAX_AGE_ALERT,
                range.clone(),
            )?,
            verify_every: self.duration(
                &key("verify_every"),
                raw.verify_every.as_deref(),
                DEFAULT_VERIFY_EVERY,
                range.clone(),
            )?,
            drill_every: self.duration(
                &key("drill_every"),
                raw.drill_every.as_deref(),
                DEFAULT_DRILL_EVERY,
                range,
            )?,
        })
    }

    /// The job's dump mode and tuning, and the name its database(s) go by.
    fn dump_settings(
        &self,
        name: &str,
        raw: &RawJob,
    ) -> Result<(String, DumpSettings), ConfigError> {
        let key = |field: &str| format!("jobs.{name}.{field}");
        let mut dump = DumpSettings::default();
        let database = match raw.engine {
            Engine::Postgres => self.postgres_settings(name, raw, &mut dump)?,
            Engine::Mysql => self.mysql_settings(name, raw, &mut dump)?,
        };
        if let Some(jobs) = raw.jobs {
            if !(1..=64).contains(&jobs) {
                return Err(self.invalid(
                    &key("jobs"),
                    format!("is {jobs}"),
                    "a whole number from 1 to 64",
                ));
            }
            dump.jobs = Some(jobs);
        }
        if let Some(level) = raw.compression_level {
            if !(0..=19).contains(&level) {
                return Err(self.invalid(
                    &key("compression_level"),
                    format!("is {level}"),
                    "a zstd level from 1 to 19, or 0 for no compression",
                ));
            }
            dump.compression_level = level;
        }
        Ok((database, dump))
    }

    /// `dump_settings` for PostgreSQL: the format; returns the database.
    fn postgres_settings(
        &self,
        name: &str,
        raw: &RawJob,
        dump: &mut DumpSettings,
    ) -> Result<String, ConfigError> {
        let key = |field: &str| format!("jobs.{name}.{field}");
        let mysql_only = [
            ("databases", raw.databases.is_some()),
            ("mode", raw.mode.is_some()),
            ("exclude", raw.exclude.is_some()),
        ];
        for (field, given) in mysql_only.into_iter().chain(raw.mydumper_tuning()) {
            if given {
                return Err(self.not_for_engine(name, field, "postgres"));
            }
        }
        let database = raw.database.clone().ok_or_else(|| {
            self.invalid(
                &key("database"),
                "is missing",
                "the name of the database to dump",
            )
        })?;
        self.check(
            &key("database"),
            &database,
            is_db_identifier,
            "a database name of 1-63 bytes without control characters",
        )?;
        dump.mode = match raw.format.unwrap_or(PostgresFormat::Custom) {
            PostgresFormat::Custom => DumpMode::PostgresCustom,
            PostgresFormat::Directory => DumpMode::PostgresDirectory,
        };
        dump.large_objects = raw.large_objects.unwrap_or(true);
        if raw.jobs.is_some() && dump.mode != DumpMode::PostgresDirectory {
            return Err(self.invalid(
                &key("jobs"),
                "needs format = \"directory\"",
                "format = \"directory\" (pg_dump runs jobs in parallel only in that format)",
            ));
        }
        Ok(database)
    }

    /// `dump_settings` for MySQL/MariaDB: the mode, the databases and the
    /// mydumper tuning; returns the name the databases go by.
    fn mysql_settings(
        &self,
        name: &str,
        raw: &RawJob,
        dump: &mut DumpSettings,
    ) -> Result<String, ConfigError> {
        let key = |field: &str| format!("jobs.{name}.{field}");
        if raw.large_objects.is_some() {
            return Err(self.not_for_engine(name, "large_objects", "mysql"));
        }
        if raw.format.is_some() {
            return Err(self.not_for_engine(name, "format", "mysql"));
        }
        dump.mode = match raw.mode.unwrap_or(MysqlMode::Mydumper) {
            MysqlMode::Mydumper => DumpMode::Mydumper,
            MysqlMode::Mysqldump => DumpMode::Mysqldump,
        };
        dump.databases = match (&raw.database, &raw.databases) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    &key("database"),
                    "is given together with `databases`",
                    "one of `database` or `databases`",
                ))
            }
            (Some(one), None) => vec![one.clone()],
            (None, Some(list)) => list.clone(),
            (None, None) => Vec::new(),
        };
        for (i, database) in dump.databases.iter().enumerate() {
            self.check(
                &format!("{}[{i}]", key("databases")),
                database,
                is_mysql_database_name,
                "a MySQL database name: 1-64 characters of the Basic Multilingual Plane, no control characters, not ending with a space",
            )?;
        }
        for (database, tables) in raw.exclude.iter().flatten() {
            let at = format!("{}.{database:?}", key("exclude"));
            self.check(
                &at,
                database,
                is_mysql_database_name,
                "a MySQL database name: 1-64 characters of the Basic Multilingual Plane, no control characters, not ending with a space",
            )?;
            if !dump.databases.is_empty() && !dump.databases.contains(database) {
                return Err(self.invalid(
                    &at,
                    "names a database the job does not dump",
                    &format!("one of the job's databases: {}", dump.databases.join(", ")),
                ));
            }
            for (i, table) in tables.iter().enumerate() {
                self.check(
                    &format!("{at}[{i}]"),
                    table,
                    is_mysql_database_name,
                    "a MySQL table or view name: 1-64 characters of the Basic Multilingual Plane, no control characters, not ending with a space",
                )?;
            }
        }
        dump.exclude = raw.exclude.clone().unwrap_or_default();
        if let Some(guard) = raw.long_query_guard.as_deref() {
            dump.long_query_guard_secs = self
                .duration(
                    &key("long_query_guard"),
                    Some(guard),
                    std::time::Duration::ZERO,
                    Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
                )?
                .as_secs();
        }
        dump.kill_long_queries = raw.kill_long_queries.unwrap_or(false);
        dump.no_locks = raw.no_locks.unwrap_or(false);
        if let Some(rows) = raw.rows_per_chunk {
            if rows == 0 {
                return Err(self.invalid(
                    &key("rows_per_chunk"),
                    "is 0",
                    "a positive number of rows",
                ));
            }
            dump.rows_per_chunk = rows;
        }
        if dump.mode == DumpMode::Mysqldump {
            let jobs = ("jobs", raw.jobs.is_some());
            for (field, given) in std::iter::once(jobs).chain(raw.mydumper_tuning()) {
                if given {
                    return Err(self.invalid(
                        &key(field),
                        "applies to mode = \"mydumper\" only",
                        "the key removed, or mode = \"mydumper\"",
                    ));
                }
            }
        }
        if dump.databases.is_empty() {
            Ok("*".to_owned())
        } else {
            Ok(dump.databases.join(","))
        }
    }

    /// `jobs.<name>.<field>` was given for an engine it does not apply to.
    fn not_for_engine(&self, name: &str, field: &str, engine: &str) -> ConfigError {
        self.invalid(
            &format!("jobs.{name}.{field}"),
            format!("does not apply to engine = \"{engine}\""),
            "the key removed, or the engine it belongs to",
        )
    }

    fn instance_type(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.check(
            key,
            value,
            is_instance_type,
            "an EC2 instance type such as `m6id.large`",
        )
    }

    /// A root volume size: gp3's range, 1 to 16384 GiB ("Amazon EBS
    /// volume types"); EC2 also refuses one smaller than the AMI's
    /// snapshot, which the launch checks.
    fn root_volume_gib(&self, key: &str, gib: i64) -> Result<u32, ConfigError> {
        u32::try_from(gib)
            .ok()
            .filter(|gib| (1..=16_384).contains(gib))
            .ok_or_else(|| {
                self.invalid(
                    key,
                    format!("is {gib}"),
                    "a size in GiB from 1 to 16384 (a gp3 volume)",
                )
            })
    }

    fn check(
        &self,
        key: &str,
        value: &str,
        valid: impl Fn(&str) -> bool,
        expected: &str,
    ) -> Result<(), ConfigError> {
        if valid(value) {
            Ok(())
        } else {
            Err(self.invalid(key, format!("is {}", describe(value)), expected))
        }
    }

    fn duration(
        &self,
        key: &str,
        text: Option<&str>,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let expected = format!(
            "a duration such as `90s`, `30m`, `6h` or `30d`, from {} to {}",
            crate::retention::shown(*range.start()),
            crate::retention::shown(*range.end())
        );
        let Some(text) = text else {
            return Ok(default);
        };
        let value = humantime::parse_duration(text)
            .map_err(|_| self.invalid(key, format!("is {}", describe(text)), &expected))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("is {text}, out of range"), &expected))
        }
    }
}

/// The parser's message, safe for a terminal: control characters escaped
/// (a config file may hold anything), long lines shortened, continuation
/// lines indented under the file name.
fn syntax_message(message: &str) -> String {
    // a long line keeps its start (where) and its end (what is expected)
    const HEAD: usize = 130;
    const TAIL: usize = 70;
    message
        .trim_end()
        .lines()
        .map(|line| {
            let chars: Vec<char> = line
                .chars()
                .flat_map(|c| {
                    if c.is_control() && c != '\t' {
                        c.escape_default().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect();
            if chars.len() <= HEAD + TAIL {
                chars.into_iter().collect::<String>()
            } else {
                let head: String = chars[..HEAD].iter().collect();
                let tail: String = chars[chars.len() - TAIL..].iter().collect();
                format!("{head} … {tail}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The setting a parse error is about, as `table.key` (array elements as
/// `key[i]`), or `None` for the document as a whole.
fn dotted_key(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(&shown_key(name));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    (!key.is_empty()).then_some(key)
}

/// What an enum-valued key accepts, for messages the parser leaves vague.
fn enum_choices(key: &str) -> Option<&'static str> {
    match key.rsplit('.').next()? {
        "engine" => Some("`postgres` or `mysql`"),
        "source" => Some("`live`, `snapshot` or `point-in-time`"),
        "format" => Some("`custom` or `directory`"),
        "mode" if key.starts_with("storage.retention") => Some("`compliance` or `governance`"),
        "mode" => Some("`mydumper` or `mysqldump`"),
        _ => None,
    }
}

/// A key the user chose (a job name, a tag key) as it appears in the name
/// of a rejected setting: as written when it is short and printable,
/// otherwise quoted, escaped and shortened like a value.
fn shown_key(key: &str) -> String {
    if key.chars().count() <= 64 && !key.chars().any(char::is_control) {
        key.to_owned()
    } else {
        describe(key)
    }
}

/// Shows a rejected value safely: short, quoted, control characters escaped.
fn describe(value: &str) -> String {
    const MAX: usize = 80;
    let escaped = format!("{value:?}");
    let inner = &escaped[1..escaped.len() - 1];
    if inner.chars().count() <= MAX {
        escaped
    } else {
        format!("\"{}\"…", inner.chars().take(MAX).collect::<String>())
    }
}

fn all_chars(value: &str, allowed: impl Fn(char) -> bool) -> bool {
    value.chars().all(allowed)
}

/// `arn:<partition>:sns:<region>:<12-digit account>:<topic>`, the topic
/// name 1-256 letters, digits, `-` and `_`. Not a FIFO topic (`.fifo`):
/// SNS refuses a publish to one without a message group, and alerts need
/// no ordering.
fn is_sns_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, name] = parts[..] else {
        return false;
    };
    scheme == "arn"
        && partition.starts_with("aws")
        && service == "sns"
        && is_region(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn is_job_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && all_chars(name, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_region(value: &str) -> bool {
    (1..=32).contains(&value.len())
        && all_chars(value, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })
}

fn is_endpoint_url(value: &str) -> bool {
    (value.starts_with("http://") || value.starts_with("https://"))
        && value.len() <= 2048
        && all_chars(value, |c| c.is_ascii_graphic() && !"\"'`\\$".contains(c))
}

fn is_bucket_name(value: &str) -> bool {
    (3..=63).contains(&value.len())
        && all_chars(value, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
        })
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !value.contains("..")
}

fn is_key_prefix(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 512
            && value.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && all_chars(segment, |c| {
                        c.is_ascii_alphanumeric() || "!-_.*'()".contains(c)
                    })
            }))
}

/// Where `instance.ami_parameter` may be: the public parameters, and the
/// account's own under `/backup-cloud/amis/` (policies/controller.json,
/// statement `ResolveAmi`).
const AMI_PARAMETER_PREFIXES: [&str; 2] = ["/aws/service/", "/backup-cloud/amis/"];

fn is_ssm_name(value: &str) -> bool {
    (1..=1011).contains(&value.len())
        && all_chars(value, |c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !value.contains("//")
}

fn is_iam_name(value: &str) -> bool {
    (1..=2048).contains(&value.len())
        && all_chars(value, |c| {
            c.is_ascii_alphanumeric() || "+=,.@_-:/".contains(c)
        })
}

fn is_aws_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        (1..=32).contains(&rest.len()) && all_chars(rest, |c| c.is_ascii_hexdigit())
    })
}

fn is_instance_type(value: &str) -> bool {
    let mut parts = value.split('.');
    let (Some(family), Some(size), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    [family, size].iter().all(|p| {
        (1..=24).contains(&p.len())
            && all_chars(p, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
            })
    })
}

fn is_tag_text(value: &str, max: usize) -> bool {
    (1..=max).contains(&value.chars().count())
        && all_chars(value, |c| c.is_alphanumeric() || " _.:/=+-@".contains(c))
}

fn is_host(value: &str) -> bool {
    (1..=253).contains(&value.len())
        && all_chars(value, |c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        && !value.starts_with('-')
}

/// A MySQL database name we accept: it becomes part of mydumper's file
/// names, a regular expression and a command-line argument, so it is kept
/// to characters that are inert in all three.
/// Any name MySQL and MariaDB allow for a database (MySQL Reference
/// Manual, "Schema Object Names": up to 64 characters, any of the Basic
/// Multilingual Plane but NUL, none ending with a space): every place a
/// name goes quotes or escapes it (SQL literals and backquotes, mysqldump
/// after `--`, mydumper's regex escaped to ASCII), and none reaches the
/// instance's script.
fn is_mysql_database_name(value: &str) -> bool {
    (1..=64).contains(&value.chars().count())
        && !value.ends_with(' ')
        && all_chars(value, |c| !c.is_control() && u32::from(c) <= 0xFFFF)
}

/// RDS identifiers (DB instances, clusters, snapshots): 1 to 63 letters,
/// digits or hyphens, starting with a letter, with no two hyphens in a row
/// and none at the end ("Naming constraints in Amazon RDS").
fn is_rds_identifier(value: &str) -> bool {
    (1..=63).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && all_chars(value, |c| c.is_ascii_alphanumeric() || c == '-')
        && !value.contains("--")
        && !value.ends_with('-')
}

/// The ARN of a DB snapshot shared from another account.
fn is_rds_arn(value: &str) -> bool {
    value.starts_with("arn:aws")
        && value.len() <= 1011
        && all_chars(value, |c| c.is_ascii_alphanumeric() || "-:".contains(c))
}

fn is_db_identifier(value: &str) -> bool {
    (1..=63).contains(&value.len()) && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[aws]
region = "us-east-1"
endpoint_url = "http://localhost:4566"

[storage]
bucket = "backups-test"
prefix = "prod/db"

[instance]
ami_parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
max_lifetime = "2h"
tags = { team = "data" }

[status]
heartbeat_timeout = "2m"
poll_interval = "2s"

[jobs.orders]
engine = "postgres"
host = "db.internal"
user = "backup"
database = "orders"
password_parameter = "/backup-cloud/orders/password"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("backups.toml"), text)
    }

    fn error_for(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn a_job_reads_a_temporary_rds_database_with_its_own_keys_only() {
        let rds = |keys: &str| {
            GOOD.replace(
                "host = \"db.internal\"\nuser = \"backup\"\n",
                &format!("{keys}\n"),
            )
            .replace(
                "password_parameter = \"/backup-cloud/orders/password\"\n",
                "",
            )
        };
        let config = parse(&rds(
            "source = \"point-in-time\"\ndb_cluster_identifier = \"orders\"\nrestore_time = \"2026-11-30T03:00:00Z\"\ntemp_instance_class = \"db.r6g.large\"",
        ))
        .unwrap();
        let Source::Rds(source) = &config.job("orders").unwrap().source else {
            panic!("an RDS source")
        };
        assert_eq!(source.database, RdsDatabase::Cluster("orders".into()));
        assert_eq!(
            source.restore,
            RestoreFrom::PointInTime(Some(time::macros::datetime!(2026-11-30 03:00 UTC)))
        );
        assert!(source.describe().contains("Aurora DB cluster orders"));
        for (keys, named, expected) in [
            // the live connection's keys have no place here
            ("source = \"snapshot\"\ndb_instance_identifier = \"o\"\nuser = \"backup\"", "jobs.orders.user", "master user"),
            // nor RDS's on a live job
            ("host = \"db\"\nuser = \"u\"\npassword_parameter = \"/p\"\nsnapshot_identifier = \"s\"", "jobs.orders.snapshot_identifier", "source = \"snapshot\""),
            ("source = \"snapshot\"", "jobs.orders.db_instance_identifier", "db_cluster_identifier"),
            ("source = \"snapshot\"\ndb_instance_identifier = \"a\"\ndb_cluster_identifier = \"b\"", "jobs.orders.db_cluster_identifier", "one of them"),
            ("source = \"snapshot\"\ndb_instance_identifier = \"o\"\nrestore_time = \"latest\"", "jobs.orders.restore_time", "point-in-time"),
            ("source = \"point-in-time\"\ndb_instance_identifier = \"o\"\nrestore_time = \"yesterday\"", "jobs.orders.restore_time", "RFC 3339"),
            ("source = \"snapshot\"\ndb_instance_identifier = \"prod--1\"", "jobs.orders.db_instance_identifier", "RDS DB instance identifier"),
            ("source = \"snapshot\"\ndb_instance_identifier = \"o\"\ntemp_instance_class = \"r6g.large\"", "jobs.orders.temp_instance_class", "db.r6g.large"),
            ("source = \"copy\"\ndb_instance_identifier = \"o\"", "jobs.orders.source", "one of `live`, `snapshot`, `point-in-time`"),
            ("host = \"db\"\npassword_parameter = \"/p\"", "jobs.orders.user", "is missing"),
        ] {
            let err = error_for(&rds(keys));
            assert!(err.contains(named), "{keys}: {err}");
            assert!(err.contains(expected), "{keys}: {err}");
        }
    }

    #[test]
    fn a_good_config_parses_with_defaults_applied() {
        let config = parse(GOOD).unwrap();
        let job = config.job("orders").unwrap();
        let Source::Live(live) = &job.source else {
            panic!("a live job: {:?}", job.source)
        };
        assert_eq!(live.port, 5432);
        assert_eq!(job.instance_type, DEFAULT_INSTANCE_TYPE);
        assert_eq!(job.max_lifetime, Duration::from_secs(7200));
        assert_eq!(config.status.poll_interval, Duration::from_secs(2));
        assert_eq!(config.key_prefix(), "prod/db/");
        assert_eq!(
            config.status_parameter("orders"),
            "/backup-cloud/jobs/orders"
        );
    }

    #[test]
    fn an_ami_parameter_the_controller_cannot_read_is_refused() {
        let with = |name: &str| {
            GOOD.replace(
                "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
                name,
            )
        };
        assert!(parse(&with("/backup-cloud/amis/pg16-tools")).is_ok());
        let err = error_for(&with("/my-team/ami"));
        assert!(err.contains("instance.ami_parameter"), "{err}");
        assert!(
            err.contains("/aws/service/") && err.contains("/backup-cloud/amis/"),
            "{err}"
        );
    }

    #[test]
    fn unknown_job_lists_the_known_ones() {
        let config = parse(GOOD).unwrap();
        let err = config.job("invoices").unwrap_err().to_string();
        assert!(err.contains("backups.toml"), "{err}");
        assert!(err.contains("invoices") && err.contains("orders"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_key_and_file() {
        let err = error_for(&GOOD.replace(
            "engine = \"postgres\"",
            "engine = \"postgres\"\npasword = \"x\"",
        ));
        assert!(err.starts_with("backups.toml"), "{err}");
        assert!(err.contains("pasword"), "{err}");
        assert!(
            err.contains("password_parameter"),
            "should list valid keys: {err}"
        );
    }

    #[test]
    fn exclude_names_mysql_tables_of_the_jobs_own_databases() {
        let mysql = GOOD
            .replace("engine = \"postgres\"", "engine = \"mysql\"")
            .replace(
                "database = \"orders\"",
                "databases = [\"shop.eu\", \"crm\"]",
            );
        let config = parse(&format!(
            "{mysql}\n[jobs.orders.exclude]\n\"shop.eu\" = [\"v_broken\", \"old.log\"]\n"
        ))
        .unwrap();
        let dump = &config.job("orders").unwrap().dump;
        assert_eq!(
            dump.exclude,
            BTreeMap::from([(
                "shop.eu".to_owned(),
                vec!["v_broken".to_owned(), "old.log".to_owned()]
            )])
        );
        let err = error_for(&format!("{mysql}\n[jobs.orders.exclude]\nshop = [\"t\"]\n"));
        assert!(
            err.contains("jobs.orders.exclude.\"shop\"") && err.contains("shop.eu, crm"),
            "{err}"
        );
        let err = error_for(&format!(
            "{mysql}\n[jobs.orders.exclude]\ncrm = [\"ends in a space \"]\n"
        ));
        assert!(err.contains("jobs.orders.exclude.\"crm\"[0]"), "{err}");
        let err = error_for(&format!(
            "{GOOD}\n[jobs.orders.exclude]\norders = [\"t\"]\n"
        ));
        assert!(err.contains("exclude"), "{err}");
    }

    #[test]
    fn unknown_engine_names_the_valid_ones() {
        let err = error_for(&GOOD.replace("engine = \"postgres\"", "engine = \"oracle\""));
        assert!(err.contains("oracle") && err.contains("postgres"), "{err}");
        let err = error_for(&GOOD.replace("engine = \"postgres\"", "engine = 5"));
        assert!(
            err.contains("`jobs.orders.engine`") && err.contains("expected `postgres` or `mysql`"),
            "{err}"
        );
    }

    #[test]
    fn each_validated_key_is_named_in_its_rejection() {
        let cases = [
            (
                "bucket = \"backups-test\"",
                "bucket = \"Bad_Bucket\"",
                "storage.bucket",
            ),
            (
                "prefix = \"prod/db\"",
                "prefix = \"/prod/\"",
                "storage.prefix",
            ),
            (
                "prefix = \"prod/db\"",
                "prefix = \"a/../b\"",
                "storage.prefix",
            ),
            (
                "host = \"db.internal\"",
                "host = \"db$(reboot)\"",
                "jobs.orders.host",
            ),
            (
                "max_lifetime = \"2h\"",
                "max_lifetime = \"forever\"",
                "instance.max_lifetime",
            ),
            (
                "max_lifetime = \"2h\"",
                "max_lifetime = \"10s\"",
                "instance.max_lifetime",
            ),
            (
                "poll_interval = \"2s\"",
                "poll_interval = \"5m\"",
                "status.poll_interval",
            ),
            (
                "tags = { team = \"data\" }",
                "tags = { \"backup-cloud:job\" = \"x\" }",
                "instance.tags.backup-cloud:job",
            ),
            (
                "tags = { team = \"data\" }",
                "tags = { team = \"a`b\" }",
                "instance.tags.team",
            ),
            (
                "region = \"us-east-1\"",
                "region = \"us east\"",
                "aws.region",
            ),
            (
                "database = \"orders\"",
                "database = \"ord\\ners\"",
                "jobs.orders.database",
            ),
            (
                "password_parameter = \"/backup-cloud/orders/password\"",
                "password_parameter = \"hunter2 !\"",
                "jobs.orders.password_parameter",
            ),
            ("[jobs.orders]", "[jobs.\"or ders\"]", "jobs.or ders"),
        ];
        for (from, to, key) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "case {to} did not apply");
            let err = error_for(&text);
            assert!(err.starts_with("backups.toml: "), "{err}");
            assert!(
                err.contains(&format!("`{key}`")),
                "expected key {key} in: {err}"
            );
            assert!(
                err.contains("expected"),
                "expected a hint of what is valid: {err}"
            );
        }
    }

    #[test]
    fn rejected_values_are_shown_escaped_and_shortened() {
        let hostile = format!("db\n{}", "x".repeat(500));
        let err =
            error_for(&GOOD.replace("host = \"db.internal\"", &format!("host = {hostile:?}")));
        assert!(
            !err.contains('\n'),
            "raw newline leaked into the message: {err}"
        );
        assert!(err.len() < 400, "message too long: {err}");
    }

    #[test]
    fn every_wait_has_a_configurable_limit_with_a_default() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.status.stall_timeout, Duration::from_secs(1800));
        let t = config.timeouts;
        assert_eq!(
            [
                t.terminate_wait,
                t.lifetime_grace,
                t.interrupt_prompt,
                t.database_connect,
                t.agent_download,
                t.aws_attempt,
                t.aws_operation
            ]
            .map(|d| d.as_secs()),
            [300, 120, 60, 30, 600, 600, 1800]
        );
        let config = parse(&format!(
            "{GOOD}\n[timeouts]\nterminate_wait = \"90s\"\nlifetime_grace = \"30s\"\n\
             interrupt_prompt = \"5s\"\ndatabase_connect = \"10s\"\nagent_download = \"1m\"\n\
             aws_attempt = \"20s\"\naws_operation = \"2m\"\n"
        ))
        .unwrap();
        assert_eq!(config.timeouts.terminate_wait, Duration::from_secs(90));
        assert_eq!(config.timeouts.aws().attempt_secs, 20);
        assert_eq!(config.timeouts.aws().operation_secs, 120);
        for (table, key, expected) in [
            (
                "timeouts",
                "terminate_wait = \"1s\"",
                "`timeouts.terminate_wait`",
            ),
            (
                "timeouts",
                "agent_download = \"soon\"",
                "`timeouts.agent_download`",
            ),
            (
                "timeouts",
                "aws_attempt = \"1h\"",
                "`timeouts.aws_operation`",
            ),
            (
                "timeouts",
                "database_connect = \"1h\"",
                "`timeouts.database_connect`",
            ),
            ("timeouts", "dns = \"1s\"", "dns"),
        ] {
            let err = error_for(&format!("{GOOD}\n[{table}]\n{key}\n"));
            assert!(err.contains(expected) && err.contains("expected"), "{err}");
        }
        let err = error_for(&GOOD.replace(
            "poll_interval = \"2s\"",
            "poll_interval = \"2s\"\nstall_timeout = \"10s\"",
        ));
        assert!(err.contains("`status.stall_timeout`"), "{err}");
    }

    #[test]
    fn retention_rules_default_per_job_and_take_the_job_s_own_tables() {
        let default = parse(GOOD).unwrap();
        let job = default.job("orders").unwrap();
        assert!(!job.retention.has_keep_rules());
        assert_eq!(job.retention.max_age, None);
        // incomplete_grace: 2 days, raised to max_lifetime when that is longer
        assert_eq!(job.retention.incomplete_grace, DEFAULT_INCOMPLETE_GRACE);
        assert_eq!(job.checks.max_age_alert, DEFAULT_MAX_AGE_ALERT);

        let text = format!(
            "{GOOD}\n[retention]\nkeep_daily = 7\nmax_age = \"10d\"\nincomplete_grace = \"1h\"\n\
             [checks]\nverify_every = \"7d\"\n\
             [jobs.orders.checks]\ndrill_every = \"14d\"\n"
        )
        .replace(
            "prefix = \"prod/db\"",
            "prefix = \"prod/db\"\nretention = { mode = \"compliance\", days = 30 }",
        );
        let config = parse(&text).unwrap();
        let job = config.job("orders").unwrap();
        assert_eq!(job.retention.keep_daily, 7);
        assert_eq!(job.retention.max_age, Some(DAY * 10));
        // raised to the longest a job can be writing: its lifetime, boot
        // and the grace past its lifetime
        assert_eq!(
            job.retention.incomplete_grace,
            job.max_lifetime + config.status.boot_timeout + config.timeouts.lifetime_grace
        );
        // the job's own [checks] replaces the default table as a whole
        assert_eq!(job.checks.verify_every, DEFAULT_VERIFY_EVERY);
        assert_eq!(job.checks.drill_every, DAY * 14);

        for (bad, key) in [
            ("[retention]\nmax_age = \"1h\"", "retention.max_age"),
            ("[retention]\nkeep_daily = -1", "retention.keep_daily"),
            ("[retention]\nkeep_dayly = 1", "keep_dayly"),
            (
                "[jobs.orders.retention]\nincomplete_grace = \"soon\"",
                "jobs.orders.retention.incomplete_grace",
            ),
            ("[checks]\nmax_age_alert = \"0s\"", "checks.max_age_alert"),
        ] {
            let err = error_for(&format!("{GOOD}\n{bad}\n"));
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn sns_topic_arns_are_checked() {
        assert!(is_sns_topic_arn(
            "arn:aws:sns:eu-west-1:123456789012:backup-cloud-alerts"
        ));
        assert!(is_sns_topic_arn(
            "arn:aws:sns:us-east-1:123456789012:backup-cloud_alerts"
        ));
        for bad in [
            "backup-cloud-alerts",
            "arn:aws:sqs:eu-west-1:123456789012:q",
            "arn:aws:sns:eu-west-1:1234:t",
            "arn:aws:sns:eu-west-1:123456789012:",
            "arn:aws:sns:eu-west-1:123456789012:a b",
            "arn:aws:sns:eu-west-1:123456789012:a:b",
            "arn:aws:sns:eu-west-1:123456789012:alerts.fifo",
        ] {
            assert!(!is_sns_topic_arn(bad), "{bad}");
        }
        let err = error_for(&format!("{GOOD}\n[notify]\nsns_topic_arn = \"alerts\"\n"));
        assert!(err.contains("`notify.sns_topic_arn`"), "{err}");
    }

    #[test]
    fn retention_is_parsed_and_checked() {
        use crate::schema::RetentionMode;
        let with = |table: &str| {
            GOOD.replace(
                "prefix = \"prod/db\"",
                &format!("prefix = \"prod/db\"\nretention = {table}"),
            )
        };
        assert_eq!(parse(GOOD).unwrap().storage.retention, None);
        let config = parse(&with("{ mode = \"governance\", days = 30 }")).unwrap();
        assert_eq!(
            config.storage.retention,
            Some(Retention {
                mode: RetentionMode::Governance,
                days: 30
            })
        );
        let err = error_for(&with("{ mode = \"compliance\", days = 0 }"));
        assert!(
            err.contains("`storage.retention.days`") && err.contains("36500"),
            "{err}"
        );
        let err = error_for(&with("{ mode = \"legal-hold\", days = 3 }"));
        assert!(
            err.contains("compliance") && err.contains("governance"),
            "{err}"
        );
        let err = error_for(&with("{ days = 3 }"));
        assert!(err.contains("mode"), "{err}");
    }

    #[test]
    fn validators_accept_and_refuse_the_documented_shapes() {
        assert!(is_bucket_name("my.backups-1"));
        assert!(!is_bucket_name("ab"));
        assert!(!is_bucket_name("-abc"));
        assert!(is_instance_type("m6id.large"));
        assert!(!is_instance_type("m6id"));
        assert!(!is_instance_type("m6id.large;reboot"));
        assert!(is_aws_id("subnet-0abc", "subnet-"));
        assert!(!is_aws_id("subnet-xyz", "subnet-"));
        assert!(is_job_name("orders_2"));
        assert!(!is_job_name("-orders"));
        assert!(!is_job_name(&"a".repeat(65)));
    }
}
