//! The boot, for real. The AMI is a Debian root filesystem
//! (`tests/harness/rootfs-up`: debootstrap's minbase with curl, nothing of
//! the backup's) that the simulator boots user-data in, on a private
//! overlay, with the real `apt-get` against Debian's mirror. As on a fresh
//! Ubuntu, first-boot jobs hold apt's lists lock for the first 30 seconds
//! and dpkg's locks for the first 90 (long enough that set-up meets both
//! however slowly the agent downloads beside the other tests). The agent, fetched before any package, takes the
//! backup, or reports in the job's status why set-up failed. A second
//! root filesystem, Debian 11's, has a glibc (2.31) older than that of any
//! machine that builds the agent here: the agent built by this very build
//! backs up from it.

use crate::common::config::{ConfigFile, Job, MysqlMode};
use crate::common::*;
use aws_sdk_ssm::types::ParameterType;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The root filesystem `tests/harness/rootfs-up` builds by default: this
/// machine's Debian release.
fn rootfs_name() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap();
    let codename = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .expect("VERSION_CODENAME in /etc/os-release")
        .trim_matches('"')
        .to_owned();
    format!("debian-{codename}")
}

fn state_dir() -> PathBuf {
    std::env::var("BACKUP_CLOUD_TEST_STATE_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.state").to_owned())
        .into()
}

/// Registers an AMI that the simulator boots in the root filesystem `name`
/// (`debian-<release>`), with the simulator's image `tags` besides, and
/// names it in a parameter under `/backup-cloud/amis/`, as for an AMI of
/// one's own. Returns the parameter's name.
async fn rootfs_ami(fixture: &Fixture, name: &str, tags: &[(&str, &str)]) -> String {
    let stamp = state_dir()
        .join("rootfs")
        .join(name)
        .join(".backup-cloud-rootfs");
    assert!(
        stamp.exists(),
        "the root filesystem {name} is not built: run tests/harness/rootfs-up {name} (make test does)"
    );
    let ec2 = &fixture.aws.ec2;
    let image = copy_localstack_ami(&fixture.aws, &unique("backup-cloud-sim-")).await;
    let mut request = ec2.create_tags().resources(&image).tags(
        aws_sdk_ec2::types::Tag::builder()
            .key("backup-cloud-sim:rootfs")
            .value(name)
            .build(),
    );
    for (key, value) in tags {
        request = request.tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(*key)
                .value(*value)
                .build(),
        );
    }
    request.send().await.unwrap();
    let parameter = format!("/backup-cloud/amis/{}", unique("debian-"));
    put_parameter(
        &fixture.aws.ssm,
        &parameter,
        &image,
        ParameterType::String,
        None,
    )
    .await;
    parameter
}

/// The fixture's config with the job on `ami_parameter`, and time for a
/// real set-up before the agent reports.
fn booting(fixture: &Fixture, job: Job, ami_parameter: String) -> ConfigFile {
    let mut config = fixture.config(job);
    config.instance.ami_parameter = ami_parameter;
    config.status.boot_timeout = Duration::from_secs(600);
    config
}

/// The console log of the fixture's one instance.
async fn console(fixture: &Fixture) -> String {
    let instances = fixture.instances().await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    let id = instances[0].instance_id().unwrap();
    let path = state_dir().join("sim").join(id).join("console.log");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_debian_installs_the_real_tools_under_first_boot_locks_and_backs_up() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("boot_");
    create_sample_database(&database, 5_000);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let ami = rootfs_ami(
        &fixture,
        &rootfs_name(),
        &[("backup-cloud-sim:first-boot-apt-seconds", "90")],
    )
    .await;
    let mut config = booting(&fixture, fixture.postgres_job(&database), ami);
    config.instance.root_volume_gib = Some(40);
    fixture.write(&config);

    let run = Streaming::spawn(&mut fixture.command(&["run", "--job", &fixture.job]));
    // while it runs: the root volume asked for replaced the AMI's 15 GiB
    let volume_id = eventually(
        "the instance's root volume",
        Duration::from_secs(120),
        || async {
            let instances = fixture.instances().await;
            let instance = instances.first()?;
            let mapping = instance
                .block_device_mappings()
                .iter()
                .find(|m| m.device_name() == instance.root_device_name())?;
            mapping.ebs()?.volume_id().map(str::to_owned)
        },
    )
    .await;
    let volumes = fixture
        .aws
        .ec2
        .describe_volumes()
        .volume_ids(&volume_id)
        .send()
        .await
        .unwrap();
    let volume = &volumes.volumes()[0];
    assert_eq!(volume.size(), Some(40), "{volume:?}");
    assert_eq!(
        volume.volume_type(),
        Some(&aws_sdk_ec2::types::VolumeType::Gp3)
    );
    let output = run.wait_with_output();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_instances_gone(&fixture).await;
    let console = console(&fixture).await;
    // the lists lock made `update` wait, then dpkg's lock made `install`
    // wait (DPkg::Lock::Timeout), and the real packages were installed
    for expected in [
        "Could not get lock /var/lib/apt/lists/lock",
        "Waiting for cache lock",
        "Setting up postgresql-client-",
        "Setting up gnupg ",
    ] {
        assert!(console.contains(expected), "{expected:?} in:\n{console}");
    }
    assert!(
        !console.contains("skipping package manager call"),
        "the package manager was not faked:\n{console}"
    );

    let status = fixture.status().await;
    let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture.get(&manifest_key).await).unwrap();
    let object = &manifest["objects"][0];
    let work = tempfile::tempdir().unwrap();
    let encrypted = work.path().join("dump.gpg");
    let dump = work.path().join("dump.pgcustom");
    std::fs::write(
        &encrypted,
        fixture.get(object["key"].as_str().unwrap()).await,
    )
    .unwrap();
    holder.decrypt_and_decompress(&encrypted, &dump);
    let restored = pg_restore_into_new_database("boot_restored_", &dump, &[]);
    assert_eq!(table_digests(&restored), table_digests(&database));
}

/// `(2, 31)` of what `getconf GNU_LIBC_VERSION` prints in the root
/// filesystem `root` (`/` for this machine).
fn glibc_of(root: &std::path::Path) -> (u32, u32) {
    let output = run_ok(
        Command::new("chroot")
            .arg(root)
            .args(["getconf", "GNU_LIBC_VERSION"]),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or_else(|| panic!("{text}"));
    let (major, minor) = version.split_once('.').unwrap();
    (major.parse().unwrap(), minor.parse().unwrap())
}

/// The newest glibc version this build's executable needs, as
/// `inspect-agent` reads it: `(2, 30)`.
fn this_build_needs_glibc() -> (u32, u32) {
    let agent = env!("CARGO_BIN_EXE_backup-cloud");
    backup_cloud::controller::platform::inspect_agent(agent, &std::fs::read(agent).unwrap())
        .unwrap()
        .glibc
        .expect("a glibc build")
}

/// Every x86_64 build links against Debian 11's glibc (.cargo/config.toml,
/// scripts/cc-glibc-floor), so this build's own executable, which the
/// controller ships as the agent, backs up from a Debian 11 whose glibc is
/// older than this machine's: with Debian 11's real mydumper and gpg,
/// installed by the real apt-get at boot.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_built_here_backs_up_from_an_older_glibc_debian_11() {
    require_mysql_services();
    let older = "debian-bullseye";
    let root = state_dir().join("rootfs").join(older);
    let (here, there) = (glibc_of(std::path::Path::new("/")), glibc_of(&root));
    assert!(
        there < here,
        "Debian 11's glibc {there:?} is older than this machine's {here:?}"
    );
    let needs = this_build_needs_glibc();
    assert!(
        needs <= there,
        "this build needs {needs:?}, Debian 11 has {there:?}"
    );

    let holder = KeyHolder::generate("holder");
    let database = unique("boot_older_");
    create_mysql_sample_database(&database, 2_000);
    let before = mysql_checksums(&[&database]);
    let fixture = Fixture::new(&holder, "unused", &mysql_backup_password()).await;
    let ami = rootfs_ami(&fixture, older, &[]).await;
    let config = booting(
        &fixture,
        fixture.mysql_job(MysqlMode::Mydumper, &[&database]),
        ami,
    );
    fixture.write(&config);
    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_instances_gone(&fixture).await;
    let console = console(&fixture).await;
    for expected in ["Setting up mydumper ", "Setting up gnupg "] {
        assert!(console.contains(expected), "{expected:?} in:\n{console}");
    }

    let status = fixture.status().await;
    let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture.get(&manifest_key).await).unwrap();
    // Debian 11's mydumper, built against its MariaDB 10.5, did the dump
    let tool = manifest["tool_versions"]["dump_tool"].as_str().unwrap();
    assert!(tool.contains("against MySQL 10.5."), "{tool}");
    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("dump");
    restore_directory(&fixture, &holder, &manifest, &dump).await;
    drop_mysql_databases(&[&database]);
    run_ok(
        Command::new("myloader")
            .arg(format!("--socket={}", mysql_socket().display()))
            .args(["--user=root", "--threads=2", "--directory"])
            .arg(&dump),
    );
    assert_eq!(mysql_checksums(&[&database]), before);
    drop_mysql_databases(&[&database]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_set_up_that_fails_is_reported_by_the_agent_in_apt_s_own_words() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("boot_private_");
    create_sample_database(&database, 100);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    // a private subnet with no mirror: nothing can be installed
    let ami = rootfs_ami(
        &fixture,
        &rootfs_name(),
        &[("backup-cloud-sim:apt-sources", "none")],
    )
    .await;
    fixture.write(&booting(&fixture, fixture.postgres_job(&database), ami));

    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(4), "{}", show(&output));
    let (status, _) = fixture.assert_failed_without_manifest().await;
    let message = status["message"].as_str().unwrap();
    for expected in [
        "installing the database client tools (pg_dump psql pg_restore) and gpg (exit 100)",
        "+ apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=5 install -y -q postgresql-client gnupg",
        "E: Unable to locate package postgresql-client",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("E: Unable to locate package postgresql-client"),
        "the operator sees apt's words: {stderr}"
    );
}

/// LocalStack's public parameter of Amazon Linux 2023 for Graviton.
const ARM64_AMI_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64";

/// `run` (and `plan`) with `extra` arguments must exit 3 before any
/// instance is launched, saying `expected`.
fn refused(fixture: &Fixture, extra: &[&str], expected: &str) {
    for command in ["run", "plan"] {
        let mut args = vec![command, "--job", &fixture.job];
        args.extend_from_slice(extra);
        let output = fixture.backup_cloud(&args);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{command}: {}",
            show(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{command}: {expected:?} in {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_cannot_run_the_agent_is_refused_before_launch() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("platform_");
    create_sample_database(&database, 100);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let mut config = fixture.config(fixture.postgres_job(&database));

    // Graviton with the x86_64 AMI (LocalStack's Amazon Linux 2023)
    config.instance.instance_type = "m7g.large".to_owned();
    fixture.write(&config);
    refused(
        &fixture,
        &[],
        "instance type m7g.large runs arm64, but the AMI ami-",
    );

    // Graviton with an arm64 AMI: this x86_64 agent cannot run there
    config.instance.ami_parameter = ARM64_AMI_PARAMETER.to_owned();
    fixture.write(&config);
    refused(&fixture, &[], "is built for x86_64, but the AMI ami-");

    // a root volume smaller than the AMI's snapshot (15 GiB in LocalStack)
    config = fixture.config(fixture.postgres_job(&database));
    config.instance.root_volume_gib = Some(10);
    fixture.write(&config);
    refused(
        &fixture,
        &[],
        "a root volume of 10 GiB is smaller than the 15 GiB of the AMI ami-",
    );

    // an agent built against a newer glibc than the oldest supported AMI's
    config = fixture.config(fixture.postgres_job(&database));
    fixture.write(&config);
    let agent = std::fs::read(env!("CARGO_BIN_EXE_backup-cloud")).unwrap();
    let (major, minor) = this_build_needs_glibc();
    let newest = format!("GLIBC_{major}.{minor}\0").into_bytes();
    let at = agent
        .windows(newest.len())
        .position(|w| w == newest)
        .expect("the agent refers to its newest glibc version");
    let mut newer = agent.clone();
    newer[at..at + newest.len()].copy_from_slice(b"GLIBC_2.39\0");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup-cloud");
    std::fs::write(&path, newer).unwrap();
    let path = path.display().to_string();
    refused(
        &fixture,
        &["--agent-binary", &path],
        "needs GLIBC_2.39, but the AMI ami-",
    );

    // mydumper on a stock Amazon Linux 2023 image, whose repositories
    // have none: set-up would fail on every launch
    config = fixture.config(fixture.mysql_job(MysqlMode::Mydumper, &["shop"]));
    config.instance.ami_parameter = LOCALSTACK_AMI_PARAMETER.to_owned();
    fixture.write(&config);
    refused(
        &fixture,
        &[],
        "is a stock Amazon Linux 2023 image, whose repositories have no mydumper",
    );

    assert!(fixture.instances().await.is_empty(), "nothing was launched");
}

/// The controller ships the agent built for the AMI's architecture, from
/// beside itself, as `make dist` lays them out: here this build as
/// `backup-cloud-x86_64-linux` and, as `backup-cloud-aarch64-linux`, a
/// copy whose ELF header says AArch64 (`make dist`'s real one takes
/// twenty minutes to cross-build; `scripts/dist` runs it under qemu). The
/// copy is checked as any agent is, and its SHA-256 is what the user-data
/// fetches.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_ships_the_agent_built_for_the_ami_s_architecture() {
    use sha2::{Digest, Sha256};
    require_services();
    let dist = tempfile::tempdir().unwrap();
    let controller = dist.path().join("backup-cloud-x86_64-linux");
    let build = std::fs::read(env!("CARGO_BIN_EXE_backup-cloud")).unwrap();
    std::fs::write(&controller, &build).unwrap();
    std::fs::set_permissions(
        &controller,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // e_machine, at offset 18 of the ELF header: EM_X86_64 (62) to
    // EM_AARCH64 (183), little-endian
    let mut graviton = build.clone();
    assert_eq!(graviton[18..20], [62, 0], "an x86_64 build");
    graviton[18..20].copy_from_slice(&[183, 0]);
    let graviton_agent = dist.path().join("backup-cloud-aarch64-linux");
    std::fs::write(&graviton_agent, &graviton).unwrap();

    let holder = KeyHolder::generate("holder");
    let database = unique("dist_");
    create_sample_database(&database, 10);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let mut config = fixture.config(fixture.postgres_job(&database));
    config.instance.instance_type = "m7g.large".to_owned();
    config.instance.ami_parameter = ARM64_AMI_PARAMETER.to_owned();
    fixture.write(&config);

    let output = fixture
        .command_of(&controller, &["plan", "--job", &fixture.job])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("platform: agent arm64 (needs glibc 2.")
            && stdout.contains("arm64, m7g.large runs arm64"),
        "{stdout}"
    );
    let sha256 = hex::encode(Sha256::digest(&graviton));
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("readonly AGENT_SHA256=") && line.contains(&sha256)),
        "the user-data fetches the aarch64 agent: {stdout}"
    );
    // the same build without an aarch64 agent beside it is refused
    std::fs::remove_file(&graviton_agent).unwrap();
    let output = fixture
        .command_of(&controller, &["plan", "--job", &fixture.job])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("`make dist` builds both"),
        "{}",
        show(&output)
    );
}
