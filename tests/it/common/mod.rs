//! Shared set-up for the end-to-end tests: real LocalStack, real
//! PostgreSQL, real gpg, and the real `backup-cloud` binary run as a
//! subprocess. `make test` starts the services; these helpers only find
//! them and fail loudly when they are missing.

pub mod config;
pub mod faultproxy;
pub mod gate;
pub mod rds;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_ssm::types::ParameterType;
use backup_cloud::aws::AwsClients;
use rand::Rng;

use config::{
    Aws, ConfigFile, Engine, Instance, Job, MysqlMode, PostgresFormat, StatusSettings, Storage,
    Upload,
};

pub const REGION: &str = "us-east-1";
/// The Amazon Linux 2023 public parameter LocalStack ships.
pub const LOCALSTACK_AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

pub fn endpoint() -> String {
    std::env::var("BACKUP_CLOUD_TEST_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

pub fn pg_port() -> u16 {
    std::env::var("BACKUP_CLOUD_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(55432)
}

/// The test cluster of a newer major version than this machine's
/// `pg_dump` (`tests/harness/postgres-up newer`).
pub fn pg_newer_port() -> u16 {
    std::env::var("BACKUP_CLOUD_TEST_PG_NEWER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(55433)
}

pub const PG_ADMIN_PASSWORD: &str = "postgres-admin-pw";
pub const PG_BACKUP_USER: &str = "backup";

pub fn pg_backup_password() -> String {
    std::env::var("BACKUP_CLOUD_TEST_PG_PASSWORD").unwrap_or_else(|_| "backup-test-pw".into())
}

/// Panics with the fix when a service the tests need is not listening.
pub fn require_service(name: &str, port: u16) {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!("{name} is not listening on 127.0.0.1:{port}; run the tests with `make test`, which starts it");
    }
}

pub fn require_services() {
    let port = endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(4566);
    require_service("LocalStack", port);
    require_service("PostgreSQL", pg_port());
}

pub async fn aws() -> AwsClients {
    AwsClients::load(Some(REGION), Some(&endpoint())).await
}

/// A copy of LocalStack's x86_64 Amazon Linux 2023 image named `name`:
/// an image registered from nothing has no architecture there, as no AMI
/// on EC2 lacks one. Returns its id.
pub async fn copy_localstack_ami(aws: &AwsClients, name: &str) -> String {
    let source = aws
        .ssm
        .get_parameter()
        .name(LOCALSTACK_AMI_PARAMETER)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
        .value
        .unwrap();
    aws.ec2
        .copy_image()
        .source_image_id(source)
        .source_region(REGION)
        .name(name)
        .send()
        .await
        .unwrap()
        .image_id
        .unwrap()
}

/// The parameter naming an AMI called as Ubuntu 24.04's images are, made
/// once per test process: a copy of LocalStack's image, which the
/// simulator boots on this machine as it does that one.
async fn ubuntu_ami_parameter(aws: &AwsClients) -> String {
    static PARAMETER: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    PARAMETER
        .get_or_init(|| async {
            let image = copy_localstack_ami(
                aws,
                &unique("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-sim-"),
            )
            .await;
            let parameter = format!("/backup-cloud/amis/{}", unique("ubuntu-noble-"));
            put_parameter(&aws.ssm, &parameter, &image, ParameterType::String, None).await;
            parameter
        })
        .await
        .clone()
}

/// Writes the database password `value` into the SecureString `name`
/// (under the customer-managed key `key_id`, or the account's default).
async fn put_password(ssm: &aws_sdk_ssm::Client, name: &str, value: &str, key_id: Option<&str>) {
    put_parameter(ssm, name, value, ParameterType::SecureString, key_id).await
}

/// Writes `value` into the parameter `name` of type `kind`, as the test's
/// admin, until SSM stops throttling it, for up to a minute: the tests
/// share the account's PutParameter rate (3/s under the gate, as on AWS)
/// with the jobs running beside them, and the SDK's three attempts are
/// not always enough.
pub async fn put_parameter(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    value: &str,
    kind: ParameterType,
    key_id: Option<&str>,
) {
    use aws_sdk_ssm::error::ProvideErrorMetadata;
    let request = ssm
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .set_key_id(key_id.map(str::to_owned))
        .overwrite(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match request.clone().send().await {
            Ok(_) => return,
            Err(err)
                if err.code() == Some("ThrottlingException")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!("PutParameter: {err:?}"),
        }
    }
}

/// Puts the key holder's public key where a config with `prefix` finds it.
async fn put_public_key(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, holder: &KeyHolder) {
    s3.put_object()
        .bucket(bucket)
        .key(format!("{prefix}/config/public-keys/holder.asc"))
        .body(ByteStream::from(holder.public_key()))
        .send()
        .await
        .unwrap();
}

/// A lowercase random suffix for names that must not collide between tests.
pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::rng().random();
    format!("{prefix}{n:08x}")
}

/// The longest any one `backup-cloud` command of the tests may run: far
/// beyond the slowest (a few minutes), so that a hang (a deadlock on full
/// pipes, say) fails its test instead of stalling the suite until CI's
/// own limit.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Runs `command` to its end and returns its output; kills it and panics
/// if it has not ended within `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} was still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs a command and returns its output, panicking with stderr on failure.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Held by every test that runs `drill` or compares the drills' scratch
/// databases (`backup_cloud_drill_…`) before and after: such a comparison
/// only means something while no other drill runs against the same
/// server. When each test file was a binary of its own, the PostgreSQL
/// drills of `restore` and `restore_formats` never overlapped; in one
/// process they would without this lock.
pub static DRILLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One of a child's output pipes.
#[derive(Debug, Clone, Copy)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// A running command whose stdout and stderr are collected as they come,
/// so a test can wait for a line and act while the command runs on.
pub struct Streaming {
    child: Child,
    stdout: Collector,
    stderr: Collector,
}

/// Reads a pipe to its end on a thread of its own.
struct Collector {
    bytes: Arc<Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Collector {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bytes);
        let thread = std::thread::spawn(move || {
            let mut buffer = [0; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Collector { bytes, thread }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    fn finish(self) -> Vec<u8> {
        self.thread.join().expect("the pipe reader");
        Arc::into_inner(self.bytes).unwrap().into_inner().unwrap()
    }
}

impl Streaming {
    /// Spawns `command` with both output pipes collected.
    pub fn spawn(command: &mut Command) -> Streaming {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let stdout = Collector::start(child.stdout.take().unwrap());
        let stderr = Collector::start(child.stderr.take().unwrap());
        Streaming {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until a line of `pipe` satisfies `matches`, for at most `limit`.
    pub async fn wait_for_line(
        &self,
        pipe: Pipe,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) {
        let collector = match pipe {
            Pipe::Stdout => &self.stdout,
            Pipe::Stderr => &self.stderr,
        };
        eventually(what, limit, || async {
            collector.text().lines().any(&matches).then_some(())
        })
        .await;
    }

    /// The process id of the command.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command to exit; everything it printed.
    pub fn wait_with_output(mut self) -> Output {
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
        }
    }
}

/// A throwaway gpg home with one cv25519 key pair, used as the offline key
/// holder: the backup is encrypted to its public key and decrypted with
/// the `gpg` CLI, never with our code.
pub struct KeyHolder {
    pub home: tempfile::TempDir,
    pub fingerprint: String,
}

impl KeyHolder {
    pub fn generate(name: &str) -> KeyHolder {
        let home = tempfile::tempdir().unwrap();
        run_ok(
            Command::new("gpg")
                .arg("--homedir")
                .arg(home.path())
                .args(["--batch", "--passphrase", "", "--quick-gen-key"])
                .arg(format!("{name} <{name}@backup-cloud.invalid>"))
                .args(["future-default", "default", "never"]),
        );
        let listing = run_ok(Command::new("gpg").arg("--homedir").arg(home.path()).args([
            "--batch",
            "--with-colons",
            "--list-keys",
        ]));
        let fingerprint = String::from_utf8(listing.stdout)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("a fingerprint")
            .to_owned();
        KeyHolder { home, fingerprint }
    }

    pub fn public_key(&self) -> Vec<u8> {
        run_ok(self.gpg().args(["--armor", "--export", &self.fingerprint])).stdout
    }

    pub fn gpg(&self) -> Command {
        let mut command = Command::new("gpg");
        command
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--quiet"]);
        command
    }

    /// Decrypts `ciphertext` with the stock gpg CLI.
    pub fn decrypt(&self, ciphertext: &Path, plaintext: &Path) {
        run_ok(
            self.gpg()
                .arg("--output")
                .arg(plaintext)
                .arg("--decrypt")
                .arg(ciphertext),
        );
    }

    /// Unpacks a zstd-compressed one-stream backup with the stock tools,
    /// as the README tells an operator: `gpg --decrypt`, then `zstd -d`.
    pub fn decrypt_and_decompress(&self, ciphertext: &Path, plaintext: &Path) {
        let compressed = plaintext.with_extension("zst");
        self.decrypt(ciphertext, &compressed);
        run_ok(
            Command::new("zstd")
                .args(["-q", "-d", "-f", "--rm", "-o"])
                .arg(plaintext)
                .arg(&compressed),
        );
    }
}

/// Restores `dump` with stock `pg_restore --no-owner --exit-on-error`
/// (and `extra`) into a new database named `{prefix}…`, as the superuser;
/// returns the database's name.
pub fn pg_restore_into_new_database(prefix: &str, dump: &Path, extra: &[&str]) -> String {
    let restored = unique(prefix);
    psql("postgres", &format!("CREATE DATABASE {restored}"));
    run_ok(
        Command::new("pg_restore")
            .args(["--no-owner", "--exit-on-error"])
            .args(extra)
            .arg(format!(
                "--dbname=host=127.0.0.1 port={} user=postgres dbname={restored}",
                pg_port()
            ))
            .env("PGPASSWORD", PG_ADMIN_PASSWORD)
            .arg(dump),
    );
    restored
}

/// Runs `psql` as the test cluster's superuser against `database`.
pub fn psql(database: &str, sql: &str) -> String {
    psql_at(pg_port(), database, sql)
}

/// Runs `psql` as the superuser of the test cluster on `port` against
/// `database`.
pub fn psql_at(port: u16, database: &str, sql: &str) -> String {
    let output = run_ok(
        Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user=postgres dbname={database}"
            ))
            .env("PGPASSWORD", PG_ADMIN_PASSWORD)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql]),
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Creates a database with several tables covering the awkward cases
/// (NULLs, non-ASCII text, bytea, numerics, timestamps), about `rows` × 300
/// bytes of data.
pub fn create_sample_database(name: &str, rows: u32) {
    psql("postgres", &format!("CREATE DATABASE {name}"));
    psql(
        name,
        &format!(
            "CREATE TABLE customers (
                id integer PRIMARY KEY,
                name text NOT NULL,
                city text,
                note text,
                photo bytea,
                balance numeric(12,2),
                created timestamptz NOT NULL
             );
             INSERT INTO customers
             SELECT g,
                    'customer ' || g || ' Grüße 東京 ✓',
                    CASE WHEN g % 7 = 0 THEN NULL ELSE 'city-' || (g % 113) END,
                    repeat(md5(random()::text), 6),
                    CASE WHEN g % 5 = 0 THEN NULL
                         ELSE decode(md5(random()::text) || md5(random()::text), 'hex') END,
                    CASE WHEN g % 11 = 0 THEN NULL ELSE (g * 3.17)::numeric(12,2) END,
                    timestamptz '2026-01-01 00:00:00+00' + g * interval '37 seconds'
             FROM generate_series(1, {rows}) AS g;
             CREATE TABLE orders (
                id bigserial PRIMARY KEY,
                customer_id integer REFERENCES customers(id),
                items jsonb,
                emoji text
             );
             INSERT INTO orders (customer_id, items, emoji)
             SELECT 1 + (g % {rows}), jsonb_build_object('sku', g, 'qty', g % 9),
                    CASE WHEN g % 3 = 0 THEN NULL ELSE '🚀 naïve café' END
             FROM generate_series(1, {rows}) AS g;
             CREATE TABLE empty_table (id int);
             CREATE VIEW big_customers AS SELECT id, name FROM customers WHERE balance > 100;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {PG_BACKUP_USER};
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {PG_BACKUP_USER};"
        ),
    );
}

/// A digest of every table's full contents, for comparing a restore.
pub fn table_digests(database: &str) -> Vec<(String, String)> {
    let tables = psql(
        database,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    );
    tables
        .lines()
        .map(|table| {
            let digest = psql(
                database,
                &format!(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM {table} t"
                ),
            );
            (table.to_owned(), digest.trim().to_owned())
        })
        .collect()
}

/// A bucket with the key holder's public key under the configured prefix,
/// the database password in an SSM SecureString, a config file, and the
/// test's IAM actors (made from `policies/` by the AWS gate): the
/// controller and the restore side run with their own users' keys, the
/// agent with the role of the instance profile the config names. `aws`
/// holds the admin key, for the test's own setup and checks.
pub struct Fixture {
    pub aws: AwsClients,
    /// An AMI named as Ubuntu 24.04's (a copy of LocalStack's image, in
    /// a parameter under `/backup-cloud/amis/`): mydumper jobs boot it,
    /// as a stock Amazon Linux 2023 image has no mydumper and is refused.
    pub ubuntu_ami_parameter: String,
    pub bucket: String,
    pub prefix: String,
    pub job: String,
    pub password_parameter: String,
    pub status_prefix: String,
    /// Holds the config file; removed when the fixture is dropped.
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub actors: gate::Actors,
}

impl Fixture {
    pub async fn new(key_holder: &KeyHolder, database: &str, password: &str) -> Fixture {
        let aws = aws().await;
        let ubuntu_ami_parameter = ubuntu_ami_parameter(&aws).await;
        let bucket = unique("bc-test-");
        let prefix = "backups/prod".to_owned();
        let job = unique("job-");
        let password_parameter = format!("/backup-cloud-test/{job}/db-password");
        let status_prefix = format!("/backup-cloud-test/{job}/status");
        aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        put_public_key(&aws.s3, &bucket, &prefix, key_holder).await;
        put_password(&aws.ssm, &password_parameter, password, None).await;
        let actors = test_actors(&bucket, &prefix, &job, None);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("backups.toml");
        let fixture = Fixture {
            ubuntu_ami_parameter,
            aws,
            bucket,
            prefix,
            job,
            password_parameter,
            status_prefix,
            dir,
            config_path,
            actors,
        };
        fixture.write(&fixture.config(fixture.postgres_job(database)));
        fixture
    }

    /// The fixture's config with `job` as its one job, under the
    /// fixture's job name: LocalStack, the fixture's bucket and status
    /// prefix, the simulator's AMI, short timeouts.
    pub fn config(&self, job: Job) -> ConfigFile {
        ConfigFile {
            aws: Aws {
                region: REGION.to_owned(),
                endpoint_url: endpoint(),
            },
            storage: Storage {
                bucket: self.bucket.clone(),
                prefix: self.prefix.clone(),
                retention: None,
            },
            instance: Instance {
                ami_parameter: if matches!(job.mode, Some(MysqlMode::Mydumper)) {
                    self.ubuntu_ami_parameter.clone()
                } else {
                    LOCALSTACK_AMI_PARAMETER.to_owned()
                },
                instance_type: "t3.micro".to_owned(),
                max_lifetime: Duration::from_secs(20 * 60),
                instance_profile: self.actors.instance_profile.clone(),
                root_volume_gib: None,
                tags: BTreeMap::new(),
            },
            status: StatusSettings {
                parameter_prefix: self.status_prefix.clone(),
                heartbeat_timeout: Duration::from_secs(60),
                poll_interval: Duration::from_secs(1),
                boot_timeout: Duration::from_secs(120),
                stall_timeout: None,
            },
            upload: Upload {
                part_size_mib: 5,
                concurrency: 3,
            },
            retention: None,
            checks: None,
            notify: None,
            jobs: BTreeMap::from([(self.job.clone(), job)]),
        }
    }

    /// A PostgreSQL job on `database` of the test server, as the backup
    /// user, with the fixture's password parameter.
    pub fn postgres_job(&self, database: &str) -> Job {
        Job {
            engine: Engine::Postgres,
            host: "127.0.0.1".to_owned(),
            port: pg_port(),
            user: PG_BACKUP_USER.to_owned(),
            database: Some(database.to_owned()),
            databases: None,
            password_parameter: self.password_parameter.clone(),
            rds: BTreeMap::new(),
            format: None,
            mode: None,
            jobs: None,
            rows_per_chunk: None,
            compression_level: None,
            spot: None,
            large_objects: None,
            exclude: None,
        }
    }

    /// [`Fixture::postgres_job`] as a directory dump with two workers.
    pub fn postgres_directory_job(&self, database: &str) -> Job {
        Job {
            format: Some(PostgresFormat::Directory),
            jobs: Some(2),
            ..self.postgres_job(database)
        }
    }

    /// A MySQL job on the test MariaDB, as the backup user, dumping
    /// exactly `databases` with `mode`.
    pub fn mysql_job(&self, mode: MysqlMode, databases: &[&str]) -> Job {
        Job {
            engine: Engine::Mysql,
            port: mysql_port(),
            user: MYSQL_BACKUP_USER.to_owned(),
            database: None,
            databases: Some(databases.iter().map(|d| d.to_string()).collect()),
            mode: Some(mode),
            ..self.postgres_job("")
        }
    }

    /// Writes `config` as the fixture's config file.
    pub fn write(&self, config: &ConfigFile) {
        config.write(&self.config_path);
    }

    /// Runs `backup-cloud ARGS --config <fixture config>` as its actor
    /// (see [`Fixture::command`]).
    pub fn backup_cloud(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args), COMMAND_LIMIT)
    }

    /// `backup-cloud ARGS --config <fixture config>`, with the keys of
    /// the actor who runs it: the restore user for the commands that read
    /// backups (`verify`, `restore`, `drill`, `export`, `backups`,
    /// `check`, ...), a session of the prune role for `prune`, the
    /// controller's user for the rest.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_backup-cloud")), args)
    }

    /// [`Fixture::command`] of another build of backup-cloud, `binary`.
    pub fn command_of(&self, binary: &Path, args: &[&str]) -> Command {
        const READ_BACKUPS: [&str; 9] = [
            "verify",
            "headers",
            "session-keys",
            "decrypt",
            "restore",
            "drill",
            "export",
            "backups",
            "check",
        ];
        let (keys, token) = match args.first() {
            Some(&"prune") => {
                let session = gate::session(&endpoint(), &self.actors.prune_role);
                (session.keys, Some(session.token))
            }
            Some(first) if READ_BACKUPS.contains(first) => (self.actors.restore.clone(), None),
            _ => (self.actors.controller.clone(), None),
        };
        self.command_as(binary, args, &keys, token.as_deref())
    }

    /// `binary ARGS --config <fixture config>` with `keys` (and a session
    /// `token`): e.g. a command run with the wrong actor's credentials.
    pub fn command_as(
        &self,
        binary: &Path,
        args: &[&str],
        keys: &gate::Keys,
        token: Option<&str>,
    ) -> Command {
        let mut command = Command::new(binary);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", &keys.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &keys.secret_access_key)
            .env_remove("AWS_SESSION_TOKEN");
        if let Some(token) = token {
            command.env("AWS_SESSION_TOKEN", token);
        }
        command
    }

    /// The test's own setup, as the admin: a new customer-managed KMS key,
    /// made the default SSE-KMS key of `bucket` and the key of the
    /// fixture's password SecureString. Returns the key's id.
    pub async fn use_customer_managed_key(&self, bucket: &str) -> String {
        use aws_sdk_s3::types::{
            ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
            ServerSideEncryptionRule,
        };
        let created = run_ok(
            Command::new("aws")
                .args(["--endpoint-url", &endpoint(), "--region", REGION])
                .args(["kms", "create-key", "--query", "KeyMetadata.KeyId"])
                .args(["--output", "text"])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test"),
        );
        let key_id = String::from_utf8(created.stdout).unwrap().trim().to_owned();
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(&key_id)
            .build()
            .unwrap();
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default)
            .build();
        self.aws
            .s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let password = self
            .aws
            .ssm
            .get_parameter()
            .name(&self.password_parameter)
            .with_decryption(true)
            .send()
            .await
            .unwrap();
        let password = password.parameter().unwrap().value().unwrap();
        self.set_password(password, Some(&key_id)).await;
        key_id
    }

    /// Sets the database password the job reads to `value`, under the
    /// customer-managed key `key_id` or the account's default.
    pub async fn set_password(&self, value: &str, key_id: Option<&str>) {
        put_password(&self.aws.ssm, &self.password_parameter, value, key_id).await;
    }

    /// Creates `bucket` with Object Lock enabled (for `storage.retention`)
    /// and the key holder's public key under the fixture's prefix.
    pub async fn create_locked_bucket(&self, bucket: &str, holder: &KeyHolder) {
        self.aws
            .s3
            .create_bucket()
            .bucket(bucket)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .unwrap();
        put_public_key(&self.aws.s3, bucket, &self.prefix, holder).await;
    }

    /// The fixture moved to a new bucket created with Object Lock enabled
    /// (named from `prefix`, holding `holder`'s public key), with new
    /// actors for it.
    pub async fn on_locked_bucket(self, prefix: &str, holder: &KeyHolder) -> Fixture {
        let locked = unique(prefix);
        self.create_locked_bucket(&locked, holder).await;
        let mut fixture = Fixture {
            bucket: locked,
            ..self
        };
        fixture.renew_actors(None);
        fixture
    }

    /// New actors for the fixture's bucket as it is now (another bucket,
    /// or one whose default encryption and password SecureString use the
    /// customer-managed key `kms_key_id`); [`Fixture::config`] names their
    /// instance profile from then on.
    pub fn renew_actors(&mut self, kms_key_id: Option<&str>) {
        self.actors = test_actors(&self.bucket, &self.prefix, &self.job, kms_key_id);
    }

    /// Runs `reap --output json` until it reaps something (a hung agent's
    /// heartbeat has gone stale), for at most a minute; returns its report.
    pub async fn reap_once_stale(&self) -> serde_json::Value {
        eventually(
            "reap to find a stale heartbeat",
            Duration::from_secs(60),
            || async {
                let reap = self.backup_cloud(&["reap", "--output", "json"]);
                assert_eq!(reap.status.code(), Some(0), "{}", show(&reap));
                let stdout = String::from_utf8_lossy(&reap.stdout);
                let report: serde_json::Value =
                    serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
                (!report["reaped"].as_array().unwrap().is_empty()).then_some(report)
            },
        )
        .await
    }

    pub fn run_job(&self) -> Output {
        self.backup_cloud(&["run", "--job", &self.job])
    }

    pub fn status_parameter(&self) -> String {
        format!("{}/{}", self.status_prefix, self.job)
    }

    pub async fn status(&self) -> serde_json::Value {
        let out = self
            .aws
            .ssm
            .get_parameter()
            .name(self.status_parameter())
            .send()
            .await
            .unwrap();
        serde_json::from_str(out.parameter().unwrap().value().unwrap()).unwrap()
    }

    /// Every key in the bucket under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .aws
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        let out = self
            .aws
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// Where the job's backups go.
    pub fn backup_prefix(&self) -> String {
        format!("{}/backup/{}/", self.prefix, self.job)
    }

    /// The promises of a failed job: status `failed`, no manifest under
    /// the job's backup prefix, no multipart upload left open, every
    /// instance gone. Returns the status and what is under the prefix.
    pub async fn assert_failed_without_manifest(&self) -> (serde_json::Value, Vec<String>) {
        let status = self.status().await;
        assert_eq!(status["phase"], "failed", "{status}");
        let keys = self.keys(&self.backup_prefix()).await;
        assert!(
            keys.iter().all(|k| !k.ends_with("manifest.json")),
            "no manifest for a failed backup: {keys:?}"
        );
        assert_eq!(
            self.incomplete_uploads().await,
            0,
            "no multipart upload left open"
        );
        assert_instances_gone(self).await;
        (status, keys)
    }

    pub async fn incomplete_uploads(&self) -> usize {
        let out = self
            .aws
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        out.uploads().len()
    }

    /// Every instance launched for this fixture's job, as EC2 lists them.
    pub async fn instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        self.instances_of(std::slice::from_ref(&self.job)).await
    }

    /// Every instance launched for any of `jobs`, as EC2 lists them.
    pub async fn instances_of(&self, jobs: &[String]) -> Vec<aws_sdk_ec2::types::Instance> {
        let out = self
            .aws
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:backup-cloud:job")
                    .set_values(Some(jobs.to_vec()))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .cloned()
            .collect()
    }

    /// States of every instance launched for this fixture's job.
    pub async fn instance_states(&self) -> Vec<String> {
        self.instances()
            .await
            .iter()
            .filter_map(|i| {
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned())
            })
            .collect()
    }
}

/// A test's actors, held to `policies/` on `bucket` under `prefix`, with
/// the SSM paths of `job`'s fixture.
fn test_actors(bucket: &str, prefix: &str, job: &str, kms_key_id: Option<&str>) -> gate::Actors {
    gate::create_actors(
        &endpoint(),
        &gate::Scope {
            bucket,
            prefix,
            status_prefix: &format!("/backup-cloud-test/{job}/status"),
            secrets_prefix: &format!("/backup-cloud-test/{job}"),
            kms_key_id,
        },
    )
}

/// Asserts that every instance of the job is terminated or on its way.
pub async fn assert_instances_gone(fixture: &Fixture) {
    let states = fixture.instance_states().await;
    assert!(!states.is_empty(), "no instance was launched");
    for state in states {
        assert!(
            state == "terminated" || state == "shutting-down",
            "instance left in state {state}"
        );
    }
}

pub fn show(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---- MariaDB ----------------------------------------------------------------

pub const MYSQL_BACKUP_USER: &str = "backup";

pub fn mysql_port() -> u16 {
    std::env::var("BACKUP_CLOUD_TEST_MYSQL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(53306)
}

pub fn mysql_backup_password() -> String {
    std::env::var("BACKUP_CLOUD_TEST_MYSQL_PASSWORD").unwrap_or_else(|_| "backup-test-pw".into())
}

/// The test server's socket, where root logs in without a password.
pub fn mysql_socket() -> PathBuf {
    std::env::var_os("BACKUP_CLOUD_TEST_MYSQL_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".state/mariadb.sock"))
}

pub fn require_mysql_services() {
    require_services();
    require_service("MariaDB", mysql_port());
}

/// The `mariadb` client as root over the socket, batch mode, no headers.
pub fn mariadb_root() -> Command {
    let mut command = Command::new("mariadb");
    command
        .arg("--no-defaults")
        .arg(format!("--socket={}", mysql_socket().display()))
        .args(["-u", "root", "--batch", "--skip-column-names"])
        .args(["--default-character-set=utf8mb4"]);
    command
}

/// Runs the fixture's job, which must succeed; returns its manifest and
/// the backup's S3 address.
pub async fn back_up(fixture: &Fixture) -> (serde_json::Value, String) {
    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let status = fixture.status().await;
    let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture.get(&manifest_key).await).unwrap();
    let address = format!("s3://{}/{manifest_key}", fixture.bucket);
    (manifest, address)
}

/// `backup-cloud ARGS --config …` as the restore side, with `gnupg_home`
/// as GNUPGHOME and no `MYSQL_PWD` from the test's environment.
pub fn restore_side(fixture: &Fixture, args: &[&str], gnupg_home: &Path) -> Output {
    output_within(
        fixture
            .command(args)
            .env_remove("RUST_LOG")
            .env("GNUPGHOME", gnupg_home)
            .env_remove("MYSQL_PWD"),
        COMMAND_LIMIT,
    )
}

/// `drill ADDRESS --to URL` with the key holder's keyring: it must pass
/// with `counts` ("N table(s), M row(s)"); returns its stdout.
pub fn drill_passes(
    fixture: &Fixture,
    holder: &KeyHolder,
    address: &str,
    url: &str,
    counts: &str,
) -> String {
    let output = restore_side(
        fixture,
        &["drill", address, "--to", url],
        holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(out.contains(&format!("drill passed: {counts}")), "{out}");
    out
}

/// A fixture, its key holder and a sample PostgreSQL database of 2,000
/// rows (named from `prefix`).
pub async fn sample_fixture(prefix: &str) -> (KeyHolder, String, Fixture) {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique(prefix);
    create_sample_database(&database, 2_000);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    (holder, database, fixture)
}

/// The test MariaDB as root over its socket (no password), as a
/// restore or drill target URL.
pub fn mysql_root_url() -> String {
    format!(
        "mysql://root@localhost/?socket={}",
        mysql_socket().display()
    )
}

/// Runs `sql` as root and returns its output.
pub fn mariadb(sql: &str) -> String {
    let output = run_ok(mariadb_root().arg("-e").arg(sql));
    String::from_utf8(output.stdout).unwrap()
}

/// Creates `database` with tables covering the awkward cases — NULLs,
/// utf8mb4 text (emoji), BLOBs, decimals, datetimes — plus a view, a
/// trigger and an empty table; `rows` rows of ~300 bytes in each of the
/// two main tables.
pub fn create_mysql_sample_database(database: &str, rows: u32) {
    mariadb(&format!(
        "CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
         USE `{database}`;
         CREATE TABLE customers (
            id INT PRIMARY KEY,
            name VARCHAR(200) NOT NULL,
            city VARCHAR(50) NULL,
            note TEXT,
            photo BLOB NULL,
            balance DECIMAL(12,2) NULL,
            created DATETIME NOT NULL
         ) ENGINE=InnoDB;
         INSERT INTO customers
         SELECT seq,
                CONCAT('customer ', seq, ' Grüße 東京 🚀✓'),
                IF(seq % 7 = 0, NULL, CONCAT('city-', seq % 113)),
                REPEAT(MD5(seq), 6),
                IF(seq % 5 = 0, NULL, UNHEX(CONCAT(MD5(seq), SHA1(seq), '00ff0a0d275c'))),
                IF(seq % 11 = 0, NULL, seq * 3.17),
                '2026-01-01 00:00:00' + INTERVAL seq * 37 SECOND
         FROM seq_1_to_{rows};
         CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT NOT NULL) ENGINE=InnoDB;
         CREATE TABLE orders (
            id BIGINT AUTO_INCREMENT PRIMARY KEY,
            customer_id INT,
            items JSON,
            emoji VARCHAR(50) NULL
         ) ENGINE=InnoDB;
         CREATE TRIGGER orders_audit AFTER INSERT ON orders
            FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id);
         INSERT INTO orders (customer_id, items, emoji)
         SELECT 1 + (seq % {rows}), JSON_OBJECT('sku', seq, 'qty', seq % 9),
                IF(seq % 3 = 0, NULL, '🚀 naïve café 😀')
         FROM seq_1_to_{rows};
         CREATE TABLE empty_table (id INT) ENGINE=InnoDB;
         CREATE VIEW big_customers AS SELECT id, name FROM customers WHERE balance > 100;"
    ));
}

/// Two sample databases backed up together: `{tag}_shop_…` with
/// `shop_rows` rows and `{tag}_crm_…` with `crm_rows`. Returns their names.
pub fn create_mysql_shop_and_crm(tag: &str, shop_rows: u32, crm_rows: u32) -> (String, String) {
    let shop = unique(&format!("{tag}_shop_"));
    let crm = unique(&format!("{tag}_crm_"));
    create_mysql_sample_database(&shop, shop_rows);
    create_mysql_sample_database(&crm, crm_rows);
    (shop, crm)
}

/// Drops `databases` from the MySQL server, those that exist.
pub fn drop_mysql_databases(databases: &[&str]) {
    for database in databases {
        mariadb(&format!("DROP DATABASE IF EXISTS `{database}`"));
    }
}

/// `CHECKSUM TABLE` of every base table in `databases`, by `db.table`.
pub fn mysql_checksums(databases: &[&str]) -> Vec<(String, String)> {
    let list = databases
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(",");
    let tables = mariadb(&format!(
        "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
         WHERE table_schema IN ({list}) AND table_type = 'BASE TABLE' ORDER BY table_schema, table_name"
    ));
    let tables: Vec<&str> = tables.lines().collect();
    assert!(!tables.is_empty(), "no tables in {databases:?}");
    mariadb(&format!("CHECKSUM TABLE {}", tables.join(", ")))
        .lines()
        .map(|line| {
            let (table, checksum) = line.split_once('\t').expect("table<TAB>checksum");
            (table.to_owned(), checksum.to_owned())
        })
        .collect()
}

/// Downloads every object of a manifest, decrypts it with the stock `gpg`
/// CLI and, when compressed, decompresses it with the stock `zstd` CLI, to
/// `dir/<path>`; returns the manifest's objects.
pub async fn restore_directory(
    fixture: &Fixture,
    holder: &KeyHolder,
    manifest: &serde_json::Value,
    dir: &Path,
) -> Vec<serde_json::Value> {
    use sha2::{Digest, Sha256};
    let objects = manifest["objects"].as_array().unwrap().clone();
    let encrypted_dir = tempfile::tempdir().unwrap();
    for (index, object) in objects.iter().enumerate() {
        let key = object["key"].as_str().unwrap();
        let ciphertext = fixture.get(key).await;
        assert_eq!(
            ciphertext.len() as u64,
            object["size"].as_u64().unwrap(),
            "{key}"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&ciphertext)),
            object["sha256"].as_str().unwrap(),
            "{key}"
        );
        let encrypted = encrypted_dir.path().join(format!("{index}.gpg"));
        std::fs::write(&encrypted, &ciphertext).unwrap();
        // a pack is a tar archive of small files: unpacked with tar
        let packed = object["packed"].as_array();
        let target = match (object["path"].as_str(), packed) {
            (Some(path), None) => dir.join(path),
            (None, Some(_)) => encrypted_dir.path().join(format!("{index}.tar")),
            _ => panic!("a directory object has a path or packed files: {object}"),
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        if object["compression"] == "zstd" {
            let compressed = encrypted_dir.path().join(format!("{index}.zst"));
            holder.decrypt(&encrypted, &compressed);
            run_ok(
                Command::new("zstd")
                    .args(["-q", "-d", "-f", "-o"])
                    .arg(&target)
                    .arg(&compressed),
            );
        } else {
            holder.decrypt(&encrypted, &target);
        }
        let files = match packed {
            None => vec![object.clone()],
            Some(files) => {
                std::fs::create_dir_all(dir).unwrap();
                run_ok(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(&target)
                        .arg("-C")
                        .arg(dir),
                );
                let listed = run_ok(Command::new("tar").arg("-tf").arg(&target));
                let listed = String::from_utf8(listed.stdout).unwrap();
                assert_eq!(
                    listed.lines().collect::<Vec<_>>(),
                    files
                        .iter()
                        .map(|f| f["path"].as_str().unwrap())
                        .collect::<Vec<_>>(),
                    "{key}"
                );
                files.clone()
            }
        };
        for file in files {
            let path = file["path"].as_str().unwrap();
            let bytes = file["plaintext_bytes"]
                .as_u64()
                .or(file["bytes"].as_u64())
                .unwrap();
            assert_eq!(
                std::fs::metadata(dir.join(path)).unwrap().len(),
                bytes,
                "{path}"
            );
        }
    }
    objects
}

/// A directory backup's objects are its files under `data/`, each at its
/// path, and packs of small files under `packs/`, numbered from 1, all
/// zstd-compressed.
pub fn assert_directory_keys(objects: &[serde_json::Value], backup_prefix: &str) {
    let mut packs = 0;
    for object in objects {
        match object["path"].as_str() {
            Some(path) => {
                assert_eq!(object["key"], format!("{backup_prefix}data/{path}.zst.gpg"));
                assert!(object["packed"].is_null(), "{object}");
            }
            None => {
                packs += 1;
                assert!(object["packed"].is_array(), "{object}");
                assert!(object["table"].is_null(), "{object}");
            }
        }
        assert_eq!(object["compression"], "zstd");
    }
    let mut pack_keys: Vec<&str> = objects
        .iter()
        .filter(|o| o["path"].is_null())
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    pack_keys.sort_unstable();
    let expected: Vec<String> = (1..=packs)
        .map(|n| format!("{backup_prefix}packs/{n:05}.tar.zst.gpg"))
        .collect();
    assert_eq!(pack_keys, expected);
}

/// Every dump file of a directory backup's manifest, whether an object
/// of its own or packed with others: its `path`, `database` and `table`.
pub fn manifest_files(manifest: &serde_json::Value) -> Vec<serde_json::Value> {
    manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|object| match object["packed"].as_array() {
            Some(files) => files.clone(),
            None => vec![object.clone()],
        })
        .collect()
}
