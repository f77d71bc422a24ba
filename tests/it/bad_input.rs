//! Bad input, proven harmless.
//!
//! The configuration file is where a typo, or a value an attacker managed
//! to plant, first enters backup-cloud. Property tests throw arbitrary
//! text, arbitrary values for every key and hostile strings (quotes,
//! `$(...)`, backticks, newlines, NUL, terminal escapes, very long) at the
//! parser and its validators: nothing panics; every rejection names the
//! file, the key and what would be valid, and shows the value escaped;
//! every value accepted is inert where it goes next — the user-data is
//! rendered, passes `bash -n`, and its assignments run with a canary that
//! only an injection would create. End to end, a PostgreSQL database whose
//! name is an injection is backed up through the simulator and restored
//! with stock tools, tags of every allowed character reach EC2 unchanged,
//! and a hostile prefix is refused before anything is launched.

use std::path::Path;
use std::process::Command;

use backup_cloud::config::{Config, ConfigError, Source};
use backup_cloud::controller::plan::JobPlan;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use crate::common::*;

const FILE: &str = "hostile.toml";

const BASE: &str = r#"
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:4566"

[storage]
bucket = "backups-test"
prefix = "prod/db"

[instance]
ami_parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
instance_type = "t3.micro"
instance_profile = "backup-cloud-agent"
subnet_id = "subnet-0abc"
max_lifetime = "2h"
tags = { team = "data" }

[status]
parameter_prefix = "/backup-cloud/jobs"
heartbeat_timeout = "2m"
poll_interval = "2s"

[upload]
part_size_mib = 16
concurrency = 4

[jobs.orders]
engine = "postgres"
host = "db.internal"
port = 5432
user = "backup"
database = "orders"
password_parameter = "/backup-cloud/orders/password"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new(FILE), text)
}

fn base() -> toml::Table {
    toml::from_str(BASE).unwrap()
}

/// Every key of [`BASE`] as (table path, key).
fn known_keys() -> Vec<(Vec<&'static str>, &'static str)> {
    let mut keys = Vec::new();
    for (table, value) in base() {
        let table: &'static str = Box::leak(table.into_boxed_str());
        let toml::Value::Table(inner) = value else {
            continue;
        };
        for (key, value) in inner {
            let key: &'static str = Box::leak(key.into_boxed_str());
            match value {
                toml::Value::Table(nested) if table == "jobs" => {
                    for nested_key in nested.keys() {
                        keys.push((
                            vec![table, key],
                            &*Box::leak(nested_key.clone().into_boxed_str()),
                        ));
                    }
                }
                _ => keys.push((vec![table], key)),
            }
        }
    }
    keys
}

/// [`BASE`] with `path.key` set to `value`, as TOML text.
fn with_value(path: &[&str], key: &str, value: toml::Value) -> String {
    let mut root = base();
    let mut table = &mut root;
    for part in path {
        table = table.get_mut(*part).unwrap().as_table_mut().unwrap();
    }
    table.insert(key.to_owned(), value);
    toml::to_string(&root).unwrap()
}

/// A value of any TOML type, strings included.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(toml::Value::String),
        "[0-9]{1,6}[smhd]?".prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z ]{1,8}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// Lines that look like a config file: known sections and keys, values of
/// every shape, and junk.
fn tomlish() -> impl Strategy<Value = String> {
    let section = prop::sample::select(vec![
        "[aws]",
        "[storage]",
        "[instance]",
        "[instance.tags]",
        "[status]",
        "[upload]",
        "[jobs.orders]",
        "[jobs.\"a b\"]",
        "[[jobs]]",
        "[jobs]",
    ])
    .prop_map(str::to_owned);
    let keys: Vec<&'static str> = known_keys().into_iter().map(|(_, k)| k).collect();
    let assignment = (
        prop::sample::select(keys),
        prop_oneof![
            toml_value().prop_map(|v| v.to_string()),
            "[^\n]{0,20}".prop_map(|s| s),
        ],
    )
        .prop_map(|(k, v)| format!("{k} = {v}"));
    let line = prop_oneof![section, assignment, "[^\n]{0,30}".prop_map(|s| s)];
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

/// The promises of every rejection, whatever the input.
fn check_rejection(err: &ConfigError) {
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{FILE}: ")),
        "names the file: {message}"
    );
    assert!(
        !message
            .chars()
            .any(|c| c.is_control() && !"\n\t".contains(c)),
        "control characters reach the terminal: {message:?}"
    );
    assert!(
        message.lines().all(|line| line.chars().count() < 400),
        "a line of the message is too long: {message:?}"
    );
    if let ConfigError::Invalid { key, .. } = err {
        assert!(message.contains(&format!("`{key}`")), "{message}");
        assert!(!key.chars().any(char::is_control), "{key:?}");
        assert!(!message.contains('\n'), "{message:?}");
    }
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Err(err) = parse(&text) {
            check_rejection(&err);
        }
    }

    #[test]
    fn config_shaped_text_never_panics(text in tomlish()) {
        if let Err(err) = parse(&text) {
            check_rejection(&err);
        }
    }

    /// Any value for any key of a good config: accepted, or refused naming
    /// the key and what is valid.
    #[test]
    fn every_rejection_names_the_key_and_what_is_valid(
        (path, key) in prop::sample::select(known_keys()),
        value in toml_value(),
    ) {
        let text = with_value(&path, key, value);
        if let Err(err) = parse(&text) {
            check_rejection(&err);
            let message = err.to_string();
            prop_assert!(message.contains(key), "names `{}`: {}", key, message);
            prop_assert!(message.contains("expected"), "says what is valid: {}", message);
        }
    }
}

/// Where a hostile value goes.
#[derive(Debug, Clone, Copy)]
enum Field {
    JobName,
    Prefix,
    Bucket,
    Host,
    Database,
    User,
    PasswordParameter,
    TagKey,
    TagValue,
    Region,
    Endpoint,
    AmiParameter,
    StatusPrefix,
    InstanceProfile,
    InstanceType,
}

const FIELDS: [Field; 15] = [
    Field::JobName,
    Field::Prefix,
    Field::Bucket,
    Field::Host,
    Field::Database,
    Field::User,
    Field::PasswordParameter,
    Field::TagKey,
    Field::TagValue,
    Field::Region,
    Field::Endpoint,
    Field::AmiParameter,
    Field::StatusPrefix,
    Field::InstanceProfile,
    Field::InstanceType,
];

impl Field {
    /// The config with this field set to `value`, and the key a rejection
    /// must name.
    fn config(self, value: &str) -> (String, &'static str) {
        let (text, key) = self.config_with_placeholder();
        // written by hand: toml_write 0.1.2 overflows (panics) on strings of
        // more than 255 single quotes
        let literal = toml_basic_string(value);
        assert_eq!(
            text.matches(PLACEHOLDER).count(),
            1,
            "{self:?}: the placeholder stands where the value goes: {text}"
        );
        let text = text
            .replace(&format!("\"{PLACEHOLDER}\""), &literal)
            .replace(PLACEHOLDER, &literal);
        (text, key)
    }

    fn config_with_placeholder(self) -> (String, &'static str) {
        let value = PLACEHOLDER;
        let string = || toml::Value::String(value.to_owned());
        let (text, key) = match self {
            Field::JobName => {
                let mut root = base();
                let jobs = root.get_mut("jobs").unwrap().as_table_mut().unwrap();
                let job = jobs.remove("orders").unwrap();
                jobs.insert(value.to_owned(), job);
                (toml::to_string(&root).unwrap(), "`jobs.")
            }
            Field::Prefix => (
                with_value(&["storage"], "prefix", string()),
                "`storage.prefix`",
            ),
            Field::Bucket => (
                with_value(&["storage"], "bucket", string()),
                "`storage.bucket`",
            ),
            Field::Host => (
                with_value(&["jobs", "orders"], "host", string()),
                "`jobs.orders.host`",
            ),
            Field::Database => (
                with_value(&["jobs", "orders"], "database", string()),
                "`jobs.orders.database`",
            ),
            Field::User => (
                with_value(&["jobs", "orders"], "user", string()),
                "`jobs.orders.user`",
            ),
            Field::PasswordParameter => (
                with_value(&["jobs", "orders"], "password_parameter", string()),
                "`jobs.orders.password_parameter`",
            ),
            Field::TagKey => (
                with_value(&["instance", "tags"], value, "data".into()),
                "`instance.tags.",
            ),
            Field::TagValue => (
                with_value(&["instance", "tags"], "team", string()),
                "`instance.tags.team`",
            ),
            Field::Region => (with_value(&["aws"], "region", string()), "`aws.region`"),
            Field::Endpoint => (
                with_value(&["aws"], "endpoint_url", string()),
                "`aws.endpoint_url`",
            ),
            Field::AmiParameter => (
                with_value(&["instance"], "ami_parameter", string()),
                "`instance.ami_parameter`",
            ),
            Field::StatusPrefix => (
                with_value(&["status"], "parameter_prefix", string()),
                "`status.parameter_prefix`",
            ),
            Field::InstanceProfile => (
                with_value(&["instance"], "instance_profile", string()),
                "`instance.instance_profile`",
            ),
            Field::InstanceType => (
                with_value(&["instance"], "instance_type", string()),
                "`instance.instance_type`",
            ),
        };
        (text, key)
    }
}

const PLACEHOLDER: &str = "PLACEHOLDERVALUE";

/// `value` as a TOML basic string.
fn toml_basic_string(value: &str) -> String {
    let mut literal = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            c if c.is_control() => literal.push_str(&format!("\\u{:04X}", c as u32)),
            c => literal.push(c),
        }
    }
    literal.push('"');
    literal
}

/// Hostile strings: injection fragments (whose commands would create the
/// file `CANARY` names), control characters, very long runs, anything.
fn hostile() -> impl Strategy<Value = String> {
    let fragments: Vec<String> = [
        "'",
        "\"",
        "\\",
        "$(touch CANARY)",
        "`touch CANARY`",
        "${IFS}touch${IFS}CANARY",
        "; touch CANARY #",
        "\n",
        "\r",
        "\0",
        "\t",
        "\u{1b}[31m",
        "\u{202e}",
        " ",
        "*",
        "..",
        "/",
        "-",
        "=",
        "é",
        "東京",
        "orders",
        "x",
    ]
    .iter()
    .map(|f| f.to_string())
    .collect();
    prop_oneof![
        prop::collection::vec(prop::sample::select(fragments.clone()), 1..8)
            .prop_map(|parts| parts.concat()),
        (prop::sample::select(fragments), 100usize..3000).prop_map(|(f, n)| f.repeat(n)),
        any::<String>(),
        "[a-z0-9._/-]{1,40}".prop_map(|s| s),
    ]
}

/// Renders the user-data of an accepted config, checks it with `bash -n`
/// and runs its assignments, which must hand back exactly the planned
/// values and execute nothing.
fn prove_inert(config: &Config, canary: &Path) {
    let job = config.jobs.values().next().expect("one job");
    let plan = JobPlan::new(config, job, "ami-0123", time::OffsetDateTime::now_utc());
    let script = plan
        .user_data(
            config.aws.region.clone().unwrap_or_default(),
            &"0".repeat(64),
            "http://127.0.0.1:1/agent".into(),
        )
        .render_script()
        .expect("an accepted config renders");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    std::fs::write(&path, &script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let assignments = &script[..script
        .find("\n# The agent reports")
        .expect("the assignment block ends before this comment")];
    let probe = format!(
        "{assignments}\nprintf '%s\\0' \"$JOB_ID\" \"$SPEC_BUCKET\" \"$SPEC_KEY\" \"$AWS_REGION\""
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    assert!(out.status.success(), "{probe}");
    let echoed = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "{}\0{}\0{}\0{}\0",
        plan.spec.job_id,
        plan.spec.bucket,
        plan.spec_key,
        config.aws.region.clone().unwrap_or_default()
    );
    assert_eq!(echoed, expected);
    assert!(!canary.exists(), "an injection ran: {script}");
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn hostile_values_are_refused_clearly_or_inert(
        field in prop::sample::select(FIELDS.to_vec()),
        value in hostile(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("CANARY");
        let value = value.replace("CANARY", &canary.display().to_string());
        let (text, key) = field.config(&value);
        match parse(&text) {
            Err(err) => {
                check_rejection(&err);
                let message = err.to_string();
                prop_assert!(message.contains(key), "{:?}: names {}: {}", field, key, message);
                prop_assert!(message.contains("expected"), "{}", message);
                prop_assert!(message.len() < 1200, "{}", message);
            }
            Ok(config) => {
                let job = config.jobs.values().next().unwrap();
                match field {
                    Field::Database => prop_assert_eq!(&job.database, &value),
                    Field::User => match &job.source {
                        Source::Live(live) => prop_assert_eq!(&live.user, &value),
                        other => prop_assert!(false, "a live job: {:?}", other),
                    },
                    Field::TagValue => prop_assert_eq!(&config.instance.tags["team"], &value),
                    _ => {}
                }
                prove_inert(&config, &canary);
            }
        }
    }
}

#[test]
fn a_config_that_is_not_utf8_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    let mut bytes = BASE.as_bytes().to_vec();
    let at = BASE.find("backups-test").unwrap();
    bytes.splice(at..at, [0xff, 0xfe, b'$', b'(']);
    std::fs::write(&path, &bytes).unwrap();
    let message = Config::load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("UTF-8"), "{message}");
    assert!(message.contains(&format!("offset {at}")), "{message}");
}

#[test]
fn a_job_name_that_is_not_utf8_on_the_command_line_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("backups.toml");
    std::fs::write(&config, BASE).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--job"])
        .arg(std::ffi::OsStr::from_bytes(b"ord\xffers"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UTF-8"), "{stderr}");
}

#[test]
fn hostile_job_names_and_tag_keys_are_shown_escaped() {
    for (field, value) in [
        (Field::JobName, "a\nb\u{1b}[2J".to_owned()),
        (Field::JobName, "j".repeat(5000)),
        (Field::TagKey, "k\0\n$(x)".to_owned()),
    ] {
        let (text, key) = field.config(&value);
        let err = parse(&text).unwrap_err();
        check_rejection(&err);
        let message = err.to_string();
        assert!(message.contains(key), "{message}");
        assert!(message.len() < 600, "{message}");
    }
}

// ---- end to end ----------------------------------------------------------------

/// `"name"` as a PostgreSQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs `sql` as the superuser in the database called `name`, whatever
/// characters it holds (libpq conninfo quoting).
fn psql_in(name: &str, sql: &str) -> String {
    let quoted = name.replace('\\', "\\\\").replace('\'', "\\'");
    let output = run_ok(
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres dbname='{quoted}'",
                pg_port()
            ))
            .env("PGPASSWORD", PG_ADMIN_PASSWORD)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]),
    );
    String::from_utf8(output.stdout).unwrap()
}

const DIGEST_SQL: &str = "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM \"we'ird \"\"table\"\" $(x)\" t";

#[tokio::test(flavor = "multi_thread")]
async fn a_database_named_like_an_injection_is_backed_up_and_restored() {
    require_services();
    let canary = format!("/tmp/{}", unique("bc"));
    let _ = std::fs::remove_file(&canary);
    // 63 bytes at most (PostgreSQL's NAMEDATALEN)
    let database = format!("q'\"$(touch {canary})`touch {canary}` ;\\ {}", unique(""));
    assert!(database.len() <= 63, "{} bytes", database.len());
    psql(
        "postgres",
        &format!("CREATE DATABASE {}", quote_ident(&database)),
    );
    psql_in(
        &database,
        &format!(
            "CREATE TABLE \"we'ird \"\"table\"\" $(x)\" (id int PRIMARY KEY, v text);
             INSERT INTO \"we'ird \"\"table\"\" $(x)\"
               SELECT g, '$(touch {canary}) `x` ''q'' ' || md5(g::text) FROM generate_series(1, 2000) g;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {PG_BACKUP_USER};"
        ),
    );
    let original = psql_in(&database, DIGEST_SQL);

    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    // tag values may hold letters of any script, digits, spaces and
    // `_.:/=+-@`: all of them, in one value
    let tag_value = "Grüße = 東京 + a/b@c:d_e.f-g 1";
    let mut config = fixture.config(fixture.postgres_job(&database));
    config
        .instance
        .tags
        .insert("owner note".to_owned(), tag_value.to_owned());
    fixture.write(&config);

    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(!Path::new(&canary).exists(), "an injection ran: {canary}");

    let status = fixture.status().await;
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture.get(status["manifest_key"].as_str().unwrap()).await)
            .unwrap();
    assert_eq!(manifest["database"], database.as_str());
    let key = manifest["objects"][0]["key"].as_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let encrypted = work.path().join("dump.gpg");
    let plain = work.path().join("dump.custom");
    std::fs::write(&encrypted, fixture.get(key).await).unwrap();
    holder.decrypt_and_decompress(&encrypted, &plain);
    let restored = pg_restore_into_new_database("restored_", &plain, &[]);
    assert_eq!(psql_in(&restored, DIGEST_SQL), original);
    assert!(!Path::new(&canary).exists(), "an injection ran: {canary}");

    let instances = fixture.instances().await;
    let tags: Vec<(String, String)> = instances
        .iter()
        .flat_map(|i| i.tags())
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("owner note".to_owned(), tag_value.to_owned())),
        "{tags:?}"
    );
    assert_instances_gone(&fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_prefix_is_refused_before_anything_is_launched() {
    require_services();
    let canary = format!("/tmp/{}", unique("bc"));
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, "orders", &pg_backup_password()).await;
    let hostile = format!("prod/$(touch {canary})/`touch {canary}`");
    let mut config = fixture.config(fixture.postgres_job("orders"));
    config.storage.prefix = hostile;
    fixture.write(&config);
    for args in [
        vec!["config", "check"],
        vec!["run", "--job", &fixture.job],
        vec!["plan", "--job", &fixture.job],
    ] {
        let output = fixture.backup_cloud(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", show(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains(&fixture.config_path.display().to_string())
                && last.contains("`storage.prefix`")
                && last.contains("expected"),
            "{args:?}: {}",
            show(&output)
        );
    }
    assert!(fixture.instance_states().await.is_empty(), "launched");
    assert!(!Path::new(&canary).exists(), "an injection ran: {canary}");
}

// ---- error messages ----------------------------------------------------------

/// The causes in a one-line error: its `: `-separated parts after the
/// first, the long ones (a short part such as a key name may repeat).
fn causes(line: &str) -> Vec<&str> {
    line.split(": ")
        .skip(1)
        .filter(|part| part.len() > 12)
        .collect()
}

/// Every cause is printed once: an error's message names its cause, and
/// the command line prints only the outermost message (it once printed
/// the whole chain as well: "cannot read config file /nope: No such file
/// or directory (os error 2): No such file or directory (os error 2)").
#[test]
fn each_cause_of_an_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("backups.toml");
    std::fs::write(&config, BASE).unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[storage\nbucket = 1").unwrap();
    let missing = dir.path().join("missing.toml");
    let missing_key = dir.path().join("missing.asc");
    let cases: [(&[&str], &Path, &str); 4] = [
        (&["status"], &missing, "No such file or directory"),
        (&["status"], &broken, "broken.toml"),
        (
            &[
                "bench-encrypt",
                "--public-key",
                missing_key.to_str().unwrap(),
            ],
            &config,
            "No such file or directory",
        ),
        (
            &["verify", "s3://backups-test/nowhere/manifest.json"],
            &config,
            "nowhere/manifest.json",
        ),
    ];
    for (args, config, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_MAX_ATTEMPTS", "1")
            .output()
            .unwrap();
        assert_ne!(output.status.code(), Some(0), "{args:?}: {}", show(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr
            .lines()
            .rfind(|l| l.starts_with("backup-cloud: "))
            .unwrap_or_else(|| panic!("{args:?}: no error line: {stderr}"));
        assert!(line.contains(expected), "{args:?}: {line}");
        let parts = causes(line);
        for (i, part) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(part),
                "{args:?}: {part:?} printed twice: {line}"
            );
        }
    }
}

/// The convention above, kept by every error type: a variant with a
/// cause (`#[from]`, `#[source]` or a `source` field) names it in its
/// message, or is `transparent`; else the one printed line would lose it.
#[test]
fn every_error_with_a_cause_names_it_in_its_message() {
    let mut offenders = Vec::new();
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for variant in text.split("#[error(").skip(1) {
            let (message, rest) = variant.split_once(")]").unwrap();
            let item = rest
                .split("\n    #[")
                .next()
                .unwrap()
                .split("\n}")
                .next()
                .unwrap();
            let has_cause =
                item.contains("#[from]") || item.contains("#[source]") || item.contains("source:");
            let names_it = message.contains("transparent")
                || message.contains("{source")
                || message.contains("{0");
            if has_cause && !names_it {
                offenders.push(format!("{}: {message}", file.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// An agent that cannot read its job spec has no status to report in;
/// it exited 4, the code of a failure it had reported, so user-data
/// reported nothing and the job showed only as "the instance went away".
/// It now exits 1, which user-data reports.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_cannot_read_its_spec_exits_as_unreported() {
    require_services();
    let aws = aws().await;
    let bucket = unique("bi-agent-");
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
            .args([
                "agent",
                "--spec-bucket",
                &bucket,
                "--spec-key",
                "jobs/none/spec.json",
            ])
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test"),
        COMMAND_LIMIT,
    );
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("jobs/none/spec.json") && stderr.contains("not in the job's status"),
        "{stderr}"
    );
}
