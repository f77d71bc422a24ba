//! Planning a job: everything decided before anything is launched.
//!
//! The plan turns configuration into concrete names — job id, S3 keys, the
//! status parameter, tags — and the job spec the agent will read. It makes
//! no AWS calls, so `--dry-run` and the real launch share it exactly.

use std::collections::BTreeMap;

use rand::Rng;
use time::OffsetDateTime;

use crate::config::{Config, JobConfig, Source};
use crate::controller::platform::RootVolume;
use crate::layout;
use crate::schema::{DataSource, DatabaseTarget, JobSpec, UploadSettings, SCHEMA_VERSION};
use crate::userdata::UserData;

/// Tag marking resources backup-cloud manages (and may terminate).
pub const TAG_MANAGED: &str = "backup-cloud:managed";
pub const TAG_JOB: &str = "backup-cloud:job";
pub const TAG_JOB_ID: &str = "backup-cloud:job-id";

/// A job made concrete.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub spec: JobSpec,
    pub spec_key: String,
    /// The configured storage prefix (`storage.prefix`).
    pub storage_prefix: String,
    pub tags: BTreeMap<String, String>,
    pub max_lifetime_minutes: u64,
    /// Limit on the instance's download of the agent, per attempt.
    pub agent_download_secs: u64,
    /// Time the instance's set-up has: see [`set_up_time`].
    pub set_up_secs: u64,
    /// The root volume asked for instead of the AMI's, once the AMI is
    /// known ([`crate::controller::platform::check_launch`]).
    pub root_volume: Option<RootVolume>,
}

/// How long the instance's set-up may take of `boot_timeout` (counted by
/// the controller from the launch): two minutes less, for the instance to
/// boot before user-data starts and for the agent to report, but at least
/// one minute.
pub fn set_up_time(boot_timeout: std::time::Duration) -> std::time::Duration {
    boot_timeout
        .saturating_sub(std::time::Duration::from_secs(120))
        .max(std::time::Duration::from_secs(60))
}

/// The SSM SecureString parameter holding the master password made for a
/// job's temporary database, beside the job's status parameter (which the
/// instance role may read) for as long as the job runs.
pub fn temporary_password_parameter(status_parameter: &str) -> String {
    format!("{status_parameter}/temporary-database-password")
}

/// A job id: the job name, the launch time and a random suffix, so two
/// launches in the same second never collide.
pub fn new_job_id(job_name: &str, at: OffsetDateTime) -> String {
    let suffix: u32 = rand::rng().random();
    format!("{job_name}-{}-{suffix:08x}", layout::timestamp(at))
}

/// What `plan` says about credentials expiring at `expiry` (`None`: they
/// do not expire) for a launch at `now` whose agent must boot within
/// `boot_window`: a warning when they expire before the window ends, since
/// the agent's download URL, presigned with them, dies with them.
pub fn credentials_warning(
    expiry: Option<std::time::SystemTime>,
    now: std::time::SystemTime,
    boot_window: std::time::Duration,
) -> Option<String> {
    let left = expiry?.duration_since(now).unwrap_or_default();
    (left < boot_window).then(|| {
        format!(
            "expire in {}, before the boot window ({}) ends: the agent's download URL is presigned with them and stops working when they do; launch with credentials that last longer (a longer SSO or role session, or an IAM user's keys)",
            humantime::format_duration(std::time::Duration::from_secs(left.as_secs())),
            humantime::format_duration(boot_window)
        )
    })
}

impl JobPlan {
    /// Plans `job` launched at `at` on `ami_id`.
    pub fn new(config: &Config, job: &JobConfig, ami_id: &str, at: OffsetDateTime) -> JobPlan {
        let job_id = new_job_id(&job.name, at);
        let prefix = &config.storage.prefix;
        let backup_prefix = layout::backup(prefix, &job.name, &layout::timestamp(at));
        let spec_key = layout::job_spec(prefix, &job.name, &job_id);
        let status_parameter = config.status_parameter(&job.name);
        // A temporary database's endpoint and master user are known once
        // it is restored ([`JobPlan::read_from`]); its password is made for
        // the job and kept beside the job's status.
        let (target, password_parameter) = match &job.source {
            Source::Live(live) => (
                (live.host.clone(), live.port, live.user.clone()),
                live.password_parameter.clone(),
            ),
            Source::Rds(_) => (
                (String::new(), 0, String::new()),
                temporary_password_parameter(&status_parameter),
            ),
        };
        let spec = JobSpec {
            schema_version: SCHEMA_VERSION,
            job_name: job.name.clone(),
            job_id: job_id.clone(),
            engine: job.engine,
            database: DatabaseTarget {
                host: target.0,
                port: target.1,
                user: target.2,
                name: job.database.clone(),
                connect_timeout_secs: config.timeouts.database_connect.as_secs(),
            },
            password_parameter,
            bucket: config.storage.bucket.clone(),
            prefix: config.storage.prefix.clone(),
            backup_prefix,
            status_parameter,
            upload: UploadSettings {
                part_size_bytes: config.upload.part_size_mib * 1024 * 1024,
                concurrency: config.upload.concurrency,
            },
            ami_id: ami_id.to_owned(),
            instance_type: job.instance_type.clone(),
            heartbeat_interval_secs: (config.status.heartbeat_timeout.as_secs() / 4).max(1),
            dump: job.dump.clone(),
            retention: config.storage.retention,
            retention_not_after: job.retention.max_age.map(|max_age| at + max_age),
            aws_timeouts: config.timeouts.aws(),
            source: DataSource::Live,
        };
        let mut tags = config.instance.tags.clone();
        tags.insert("Name".to_owned(), format!("backup-cloud {}", job.name));
        tags.insert(TAG_MANAGED.to_owned(), "true".to_owned());
        tags.insert(TAG_JOB.to_owned(), job.name.clone());
        tags.insert(TAG_JOB_ID.to_owned(), job_id);
        JobPlan {
            spec,
            spec_key,
            storage_prefix: prefix.clone(),
            tags,
            max_lifetime_minutes: job.max_lifetime.as_secs().div_ceil(60),
            agent_download_secs: config.timeouts.agent_download.as_secs(),
            set_up_secs: set_up_time(config.status.boot_timeout).as_secs(),
            root_volume: None,
        }
    }

    /// Points the agent at the temporary database restored for this job:
    /// its endpoint, its master user, and what it holds.
    pub fn read_from(&mut self, host: &str, port: u16, master_user: &str, source: DataSource) {
        self.spec.database.host = host.to_owned();
        self.spec.database.port = port;
        self.spec.database.user = master_user.to_owned();
        self.spec.source = source;
    }

    /// Key of the agent binary with the given SHA-256.
    pub fn agent_key(&self, sha256: &str) -> String {
        layout::agent(&self.storage_prefix, sha256)
    }

    /// Key of the manifest that will mark this backup complete.
    pub fn manifest_key(&self) -> String {
        layout::manifest(&self.spec.backup_prefix)
    }

    /// The instance's user-data for this plan, fetching the agent with
    /// SHA-256 `agent_sha256` from `agent_url`.
    pub fn user_data(&self, region: String, agent_sha256: &str, agent_url: String) -> UserData {
        UserData {
            job_id: self.spec.job_id.clone(),
            spec_bucket: self.spec.bucket.clone(),
            spec_key: self.spec_key.clone(),
            agent_url,
            agent_sha256: agent_sha256.to_owned(),
            max_lifetime_minutes: self.max_lifetime_minutes,
            agent_download_secs: self.agent_download_secs,
            set_up_secs: self.set_up_secs,
            region,
            dump_mode: self.spec.dump.mode.name().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(prefix: &str) -> Config {
        let text = format!(
            r#"
[storage]
bucket = "backups"
prefix = "{prefix}"
[instance]
max_lifetime = "90m"
tags = {{ team = "data" }}
[jobs.orders]
engine = "postgres"
host = "db"
user = "backup"
database = "orders"
password_parameter = "/p"
"#
        );
        Config::parse(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn plan_warns_when_credentials_expire_before_the_boot_window_ends() {
        use std::time::{Duration, SystemTime};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let window = Duration::from_secs(600);
        let in_secs = |s| Some(now + Duration::from_secs(s));
        assert_eq!(
            credentials_warning(None, now, window),
            None,
            "long-term keys"
        );
        assert_eq!(credentials_warning(in_secs(3600), now, window), None);
        assert_eq!(credentials_warning(in_secs(600), now, window), None);
        let warning = credentials_warning(in_secs(300), now, window).unwrap();
        assert!(
            warning.starts_with("expire in 5m, before the boot window (10m) ends"),
            "{warning}"
        );
        let expired = credentials_warning(Some(now - Duration::from_secs(5)), now, window);
        assert!(expired.unwrap().starts_with("expire in 0s"));
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let config = config("prod");
        let at = time::macros::datetime!(2026-11-27 21:00:00 UTC);
        let plan = JobPlan::new(&config, config.job("orders").unwrap(), "ami-1", at);
        assert_eq!(
            plan.spec.backup_prefix,
            "prod/backup/orders/20261127T210000Z/"
        );
        assert_eq!(
            plan.manifest_key(),
            "prod/backup/orders/20261127T210000Z/manifest.json"
        );
        assert!(plan
            .spec_key
            .starts_with("prod/jobs/orders/orders-20261127T210000Z-"));
        assert_eq!(plan.agent_key("ab"), "prod/agent/ab/backup-cloud");
        assert_eq!(plan.spec.status_parameter, "/backup-cloud/jobs/orders");
        assert_eq!(plan.max_lifetime_minutes, 90);
    }

    #[test]
    fn an_empty_prefix_puts_keys_at_the_bucket_root() {
        let config = config("");
        let at = time::macros::datetime!(2026-01-02 03:04:05 UTC);
        let plan = JobPlan::new(&config, config.job("orders").unwrap(), "ami-1", at);
        assert_eq!(plan.spec.backup_prefix, "backup/orders/20260102T030405Z/");
        assert_eq!(plan.agent_key("ab"), "agent/ab/backup-cloud");
    }

    #[test]
    fn tags_mark_the_instance_as_ours_and_keep_user_tags() {
        let config = config("");
        let at = OffsetDateTime::now_utc();
        let plan = JobPlan::new(&config, config.job("orders").unwrap(), "ami-1", at);
        assert_eq!(plan.tags[TAG_MANAGED], "true");
        assert_eq!(plan.tags[TAG_JOB], "orders");
        assert_eq!(plan.tags[TAG_JOB_ID], plan.spec.job_id);
        assert_eq!(plan.tags["team"], "data");
    }

    #[test]
    fn the_spec_carries_no_secret() {
        let config = config("");
        let plan = JobPlan::new(
            &config,
            config.job("orders").unwrap(),
            "ami-1",
            OffsetDateTime::now_utc(),
        );
        let json = serde_json::to_string(&plan.spec).unwrap();
        assert!(json.contains("\"password_parameter\":\"/p\""));
        assert!(!json.to_lowercase().contains("\"password\":"));
    }

    #[test]
    fn job_ids_are_unique_within_a_second() {
        let at = OffsetDateTime::now_utc();
        let ids: std::collections::HashSet<_> = (0..50).map(|_| new_job_id("j", at)).collect();
        assert_eq!(ids.len(), 50);
    }
}
