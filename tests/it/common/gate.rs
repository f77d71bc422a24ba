//! The AWS gate's control API (`localstack/gate.py`, described in
//! `localstack/README.md`): one test's IAM actors, made from `policies/`,
//! and the log of every request the gate decided on. The end-to-end tests
//! run the controller and the restore side with their actors' keys; the
//! admin key (`test`) is for a test's own setup and checks only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

/// Calls `METHOD /__gate/PATH` on the gate behind `endpoint` and returns
/// the JSON answer; panics on anything but 200.
pub fn call(endpoint: &str, method: &str, path: &str, body: &str) -> Value {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority)
        .unwrap_or_else(|e| panic!("the AWS gate at {endpoint} does not answer: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} /__gate/{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not HTTP: {response}"));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{method} /__gate/{path}: {response}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// An IAM user's access key.
#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// One test's actors: the controller's and the restore side's IAM users,
/// the agent's role in its instance profile, and the role `prune` runs as.
#[derive(Debug, Clone)]
pub struct Actors {
    pub controller: Keys,
    pub controller_arn: String,
    pub restore: Keys,
    pub restore_arn: String,
    pub instance_profile: String,
    /// The role of `policies/prune.json` (act as it with [`session`]).
    pub prune_role: String,
}

/// Temporary credentials of a role session: keys and session token.
#[derive(Debug, Clone)]
pub struct Session {
    pub keys: Keys,
    pub token: String,
}

/// A fresh 15-minute session of `role`, as STS would mint it.
pub fn session(endpoint: &str, role: &str) -> Session {
    let answer = call(
        endpoint,
        "POST",
        "sessions",
        &json!({"role": role, "duration_seconds": 900}).to_string(),
    );
    let text = |field: &str| answer[field].as_str().unwrap().to_owned();
    Session {
        keys: Keys {
            access_key_id: text("AccessKeyId"),
            secret_access_key: text("SecretAccessKey"),
        },
        token: text("Token"),
    }
}

/// Where the actors' policies let them work.
#[derive(Debug, Clone, Default)]
pub struct Scope<'a> {
    pub bucket: &'a str,
    /// The configured key prefix (no slashes around it).
    pub prefix: &'a str,
    /// The SSM path of the status parameters (replaces `/backup-cloud/jobs`).
    pub status_prefix: &'a str,
    /// The SSM path of the secrets (replaces `/backup-cloud/secrets`).
    pub secrets_prefix: &'a str,
    /// The customer-managed KMS key of the bucket's default SSE-KMS and of
    /// the password SecureStrings, when they use one.
    pub kms_key_id: Option<&'a str>,
}

/// Creates the actors of `scope` (and puts `policies/bucket.json` on the bucket).
pub fn create_actors(endpoint: &str, scope: &Scope<'_>) -> Actors {
    let mut body = json!({
        "bucket": scope.bucket,
        "prefix": scope.prefix,
        "status_prefix": scope.status_prefix,
        "secrets_prefix": scope.secrets_prefix,
    });
    if let Some(key) = scope.kms_key_id {
        body["kms_key_id"] = json!(key);
        body["bucket_kms_key_id"] = json!(key);
    }
    let answer = call(endpoint, "POST", "actors", &body.to_string());
    let keys = |actor: &str| Keys {
        access_key_id: answer[actor]["access_key_id"].as_str().unwrap().to_owned(),
        secret_access_key: answer[actor]["secret_access_key"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let text = |actor: &str, field: &str| answer[actor][field].as_str().unwrap().to_owned();
    Actors {
        controller: keys("controller"),
        controller_arn: text("controller", "arn"),
        restore: keys("restore"),
        restore_arn: text("restore", "arn"),
        instance_profile: text("instance", "instance_profile"),
        prune_role: text("prune", "role"),
    }
}

/// The gate's log entries numbered above `since`, whose actor contains
/// `actor`; and the marker to pass next time.
pub fn log(endpoint: &str, since: u64, actor: &str) -> (Vec<Value>, u64) {
    let answer = call(
        endpoint,
        "GET",
        &format!("log?since={since}&actor={actor}"),
        "",
    );
    let entries = answer["entries"].as_array().cloned().unwrap_or_default();
    (entries, answer["next"].as_u64().unwrap())
}

/// The marker of the newest log entry: what a test passes to [`log`]
/// to see only what came after it.
pub fn log_marker(endpoint: &str) -> u64 {
    log(endpoint, u64::MAX - 1, "").1
}
