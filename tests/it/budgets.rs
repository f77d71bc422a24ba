//! Budgets that EC2 and the operator's patience impose.
//!
//! EC2 refuses user-data over 16 KB. Every configurable value that reaches
//! the script is pushed to the longest the config validator accepts, every
//! option is turned on, and the agent URL is as long as a presigned URL
//! carrying a temporary session token gets; the rendered script must still
//! fit, with room to spare, and pass `bash -n`.

use std::path::Path;
use std::process::Command;

use backup_cloud::config::Config;
use backup_cloud::controller::plan::JobPlan;
use backup_cloud::userdata::{UserData, USER_DATA_LIMIT};

/// A config with every option on and every free-form value at its limit.
fn maximal_config() -> String {
    // 5 segments of 100 and 4 slashes: 504 of the 512 bytes allowed
    let prefix = vec!["p".repeat(100); 5].join("/");
    // an SSM path as long as the validator allows (1011)
    let status_prefix = format!("/{}", "s".repeat(1010));
    let tags: Vec<String> = (0..40)
        .map(|i| format!("\"{i:03}{}\" = \"{}\"", "k".repeat(125), "v".repeat(256)))
        .collect();
    let job = "j".repeat(64);
    format!(
        r#"[aws]
region = "ap-southeast-4"
endpoint_url = "https://{endpoint}.example.com"

[storage]
bucket = "{bucket}"
prefix = "{prefix}"

[instance]
ami_parameter = "/backup-cloud/amis/{ami}"
instance_type = "{family}.{size}"
instance_profile = "arn:aws:iam::123456789012:instance-profile/{profile}"
subnet_id = "subnet-{hex}"
security_group_ids = ["sg-{hex}", "sg-{hex}", "sg-{hex}", "sg-{hex}", "sg-{hex}"]
max_lifetime = "7d"
spot = true
hourly_price_usd = 12.5
tags = {{ {tags} }}

[status]
parameter_prefix = "{status_prefix}"
heartbeat_timeout = "24h"
poll_interval = "10m"
boot_timeout = "24h"

[upload]
part_size_mib = 5120
concurrency = 64

[jobs.{job}]
engine = "postgres"
host = "{host}"
port = 65535
user = "{user}"
database = "{database}"
password_parameter = "/{password}"
instance_type = "{family}.{size}"
max_lifetime = "7d"
"#,
        endpoint = "e".repeat(1900),
        bucket = "b".repeat(63),
        ami = "a".repeat(1011 - "/backup-cloud/amis/".len()),
        family = "f".repeat(24),
        size = "z".repeat(24),
        profile = "i".repeat(128),
        hex = "0".repeat(32),
        tags = tags.join(", "),
        host = "h".repeat(253),
        user = "u".repeat(63),
        database = "$(d)'`\\\"".repeat(9),
        password = "w".repeat(1010),
    )
}

#[test]
fn user_data_fits_with_every_option_on() {
    let text = maximal_config();
    let config = Config::parse(Path::new("max.toml"), &text)
        .unwrap_or_else(|e| panic!("the maximal config must be valid: {e}"));
    let (name, job) = config.jobs.iter().next().unwrap();
    let plan = JobPlan::new(
        &config,
        job,
        "ami-0123456789abcdef0",
        time::OffsetDateTime::now_utc(),
    );
    assert!(plan.spec.status_parameter.len() > 1000, "{name}");
    let agent_key = plan.agent_key(&"f".repeat(64));
    // SigV4 query parameters, with a session token as long as STS issues
    let agent_url = format!(
        "https://{}.s3.ap-southeast-4.amazonaws.com/{agent_key}?x-id=GetObject&X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=ASIA{}%2F20261127%2Fap-southeast-4%2Fs3%2Faws4_request&X-Amz-Date=20261127T210000Z\
         &X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Security-Token={}&X-Amz-Signature={}",
        config.storage.bucket,
        "A".repeat(16),
        "T".repeat(2048),
        "0".repeat(64)
    );
    let user_data = plan.user_data("ap-southeast-4".into(), &"f".repeat(64), agent_url);
    let script = user_data.render_script().expect("renders within the limit");
    assert!(
        script.len() < USER_DATA_LIMIT * 3 / 4,
        "user-data is {} bytes of {USER_DATA_LIMIT}: less than a quarter of headroom left",
        script.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn an_oversized_user_data_is_refused_not_truncated() {
    let user_data = UserData {
        job_id: "j".into(),
        spec_bucket: "b".into(),
        spec_key: "k".into(),
        agent_url: "u".repeat(USER_DATA_LIMIT),
        agent_sha256: "0".repeat(64),
        max_lifetime_minutes: 60,
        agent_download_secs: 600,
        set_up_secs: 780,
        region: "us-east-1".into(),
        dump_mode: "pg_dump-custom".into(),
    };
    let err = user_data.render_script().unwrap_err().to_string();
    assert!(err.contains("16384"), "{err}");
}
