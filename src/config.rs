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

use crate::schema::Engine;

/// Ubuntu 24.04 LTS, amd64, from Canonical's public SSM parameters.
pub const DEFAULT_AMI_PARAMETER: &str =
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id";
pub const DEFAULT_INSTANCE_TYPE: &str = "m6id.large";
pub const DEFAULT_STATUS_PREFIX: &str = "/backup-cloud/jobs";
pub const DEFAULT_PART_SIZE_MIB: u64 = 16;
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;

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
    pub upload: UploadConfig,
    pub jobs: BTreeMap<String, JobConfig>,
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
}

#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub ami_parameter: String,
    pub instance_type: String,
    pub instance_profile: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub max_lifetime: Duration,
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
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password_parameter: String,
    pub instance_type: String,
    pub max_lifetime: Duration,
    pub spot: bool,
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
    upload: RawUpload,
    #[serde(default)]
    jobs: BTreeMap<String, RawJob>,
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
    host: String,
    port: Option<u16>,
    user: String,
    database: String,
    password_parameter: String,
    instance_type: Option<String>,
    max_lifetime: Option<String>,
    spot: Option<bool>,
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
        if self.storage.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.storage.prefix)
        }
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

        let instance = self.instance(raw.instance)?;
        let status = self.status(raw.status)?;
        let upload = self.upload(raw.upload)?;

        let mut jobs = BTreeMap::new();
        for (name, job) in raw.jobs {
            let job = self.job(&name, job, &instance)?;
            jobs.insert(name, job);
        }
        Ok(Config {
            path: self.path.to_owned(),
            aws: raw.aws,
            storage: raw.storage,
            instance,
            status,
            upload,
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
            is_ssm_name,
            "an SSM parameter name of letters, digits and `_.-/`",
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
        Ok(InstanceSettings {
            spot: raw.spot,
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
        self.check(
            &key("host"),
            &raw.host,
            is_host,
            "a DNS name or IP address (letters, digits, `.`, `-`, `:`)",
        )?;
        let port = raw.port.unwrap_or(5432);
        if port == 0 {
            return Err(self.invalid(&key("port"), "is 0", "a TCP port from 1 to 65535"));
        }
        self.check(
            &key("user"),
            &raw.user,
            is_db_identifier,
            "a user name of 1-63 bytes without control characters",
        )?;
        self.check(
            &key("database"),
            &raw.database,
            is_db_identifier,
            "a database name of 1-63 bytes without control characters",
        )?;
        self.check(
            &key("password_parameter"),
            &raw.password_parameter,
            is_ssm_name,
            "the name of an SSM SecureString parameter (letters, digits and `_.-/`), not the password itself",
        )?;
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
        Ok(JobConfig {
            name: name.to_owned(),
            engine: raw.engine,
            host: raw.host,
            port,
            user: raw.user,
            database: raw.database,
            password_parameter: raw.password_parameter,
            instance_type,
            max_lifetime,
            spot: raw.spot.unwrap_or(instance.spot),
        })
    }

    fn instance_type(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.check(
            key,
            value,
            is_instance_type,
            "an EC2 instance type such as `m6id.large`",
        )
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
            "a duration such as `90s`, `30m` or `6h`, from {} to {}",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
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
    fn a_good_config_parses_with_defaults_applied() {
        let config = parse(GOOD).unwrap();
        let job = config.job("orders").unwrap();
        assert_eq!(job.port, 5432);
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
