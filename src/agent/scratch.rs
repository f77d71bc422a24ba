//! Scratch space for directory dumps: where the dump tool's files wait
//! between being written and being uploaded.
//!
//! EC2 instance-store NVMe devices are the right place — fast, local and
//! free — so when the instance has some that are genuinely unused they are
//! striped into one RAID 0 array (`mdadm`; a single device is used as it
//! is, and so is the first one where `mdadm` is missing or fails),
//! formatted and mounted; otherwise the root volume's temporary directory
//! serves. Formatting is the one destructive thing the agent does, so a
//! device qualifies only if every check passes: its model is Amazon's
//! instance-store model, it has no partitions, no holders (RAID, LVM), no
//! filesystem or partition-table signature (`blkid -p`), and it is neither
//! mounted nor used as swap. Anything else is left alone.
//!
//! Before the dump starts the free space is checked against the size of
//! the database, which bounds the dump (indexes are not dumped), so a dump
//! that cannot fit fails at once with the numbers rather than hours later.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The model string EC2 instance-store NVMe devices report.
const INSTANCE_STORE_MODEL: &str = "Amazon EC2 NVMe Instance Storage";

/// Where the instance store is mounted.
const INSTANCE_STORE_MOUNT: &str = "/mnt/backup-cloud-scratch";

/// The RAID 0 array striped over several instance-store devices.
const STRIPED_DEVICE: &str = "/dev/md/backup-cloud-scratch";

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "not enough scratch space in {dir}: {available} bytes free, the database is {needed} bytes; \
         use an instance type with instance storage (e.g. m6id) or a larger root volume (`root_volume_gib`)"
    )]
    TooSmall {
        dir: PathBuf,
        available: u64,
        needed: u64,
    },
    #[error(
        "no scratch directory on a disk: {} (each missing or a tmpfs, which would hold the \
         scratch files in memory); set TMPDIR to a directory on a disk",
        .0.iter().map(|dir| dir.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoDisk(Vec<PathBuf>),
    #[error("cannot measure the free space in {dir}: {source}")]
    Measure { dir: PathBuf, source: io::Error },
    #[error("cannot create the scratch directory in {dir}: {source}")]
    Create { dir: PathBuf, source: io::Error },
}

/// A private scratch directory, removed with everything in it on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// The (empty) directory the dump tool writes into.
    pub fn dump_dir(&self) -> PathBuf {
        self.dir.path().join("dump")
    }
}

/// Picks the scratch volume (an instance-store device when there is a
/// usable one), checks it can hold `needed_bytes`, and makes a private
/// directory on it with an empty `dump/` inside.
pub fn prepare(needed_bytes: u64) -> Result<Scratch, ScratchError> {
    let devices = instance_store_devices(
        Path::new("/sys/block"),
        &read("/proc/mounts"),
        &read("/proc/swaps"),
    );
    let base = if devices.is_empty() {
        on_disk_temp_dir()?
    } else {
        match mount_instance_store(&SystemTools, &devices, Path::new(INSTANCE_STORE_MOUNT)) {
            Ok(mount) => mount,
            Err(reason) => {
                tracing::warn!("instance store unusable ({reason}); using the root volume");
                on_disk_temp_dir()?
            }
        }
    };
    let available = available_bytes(&base).map_err(|source| ScratchError::Measure {
        dir: base.clone(),
        source,
    })?;
    if available < needed_bytes {
        return Err(ScratchError::TooSmall {
            dir: base,
            available,
            needed: needed_bytes,
        });
    }
    tracing::info!(
        "scratch space in {}: {available} bytes free for a {needed_bytes}-byte database",
        base.display()
    );
    let create_error = |source| ScratchError::Create {
        dir: base.clone(),
        source,
    };
    let dir = tempfile::Builder::new()
        .prefix("backup-cloud-dump-")
        .tempdir_in(&base)
        .map_err(create_error)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(create_error)?;
    std::fs::create_dir(dir.path().join("dump")).map_err(create_error)?;
    Ok(Scratch { dir })
}

/// The temporary directory on a disk: `$TMPDIR` when set, else
/// `/var/tmp`, which the FHS keeps on persistent storage, skipping a
/// tmpfs. `/tmp` is never the fallback: Amazon Linux 2023 mounts it as a
/// tmpfs of half the memory, where scratch files would take the memory
/// the dump tools need, and a large dump would not fit anyway.
fn on_disk_temp_dir() -> Result<PathBuf, ScratchError> {
    first_on_disk(
        std::env::var_os("TMPDIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .into_iter()
            .chain([PathBuf::from("/var/tmp")])
            .collect(),
    )
}

/// The first of `candidates` that exists on a disk.
fn first_on_disk(candidates: Vec<PathBuf>) -> Result<PathBuf, ScratchError> {
    for dir in &candidates {
        match is_memory_backed(dir) {
            Ok(false) => return Ok(dir.clone()),
            Ok(true) => tracing::info!("{} is a tmpfs, not used for scratch", dir.display()),
            Err(err) => tracing::info!("{} not used for scratch: {err}", dir.display()),
        }
    }
    Err(ScratchError::NoDisk(candidates))
}

/// Whether `dir` lives on a tmpfs (the memory).
fn is_memory_backed(dir: &Path) -> io::Result<bool> {
    let stats = rustix::fs::statfs(dir)?;
    // f_type's and the constant's types differ between architectures
    #[allow(clippy::unnecessary_cast)]
    let tmpfs = stats.f_type as u64 == libc::TMPFS_MAGIC as u64;
    Ok(tmpfs)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Unused instance-store devices (`/dev/nvmeXn1`), judged from sysfs under
/// `sys_block` and the contents of `/proc/mounts` and `/proc/swaps`.
fn instance_store_devices(sys_block: &Path, mounts: &str, swaps: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut devices: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let block = sys_block.join(&name);
            let qualifies = is_nvme_namespace(&name)
                && std::fs::read_to_string(block.join("device/model"))
                    .is_ok_and(|model| model.trim() == INSTANCE_STORE_MODEL)
                && !has_children(&block, &name)
                && !has_entries(&block.join("holders"))
                && !mentions(mounts, &name)
                && !mentions(swaps, &name);
            qualifies.then(|| PathBuf::from(format!("/dev/{name}")))
        })
        .collect();
    devices.sort();
    devices
}

/// `nvme0n1`, not a partition (`nvme0n1p1`) or a controller (`nvme0`).
fn is_nvme_namespace(name: &str) -> bool {
    name.strip_prefix("nvme")
        .and_then(|rest| rest.split_once('n'))
        .is_some_and(|(controller, namespace)| {
            !controller.is_empty()
                && controller.chars().all(|c| c.is_ascii_digit())
                && !namespace.is_empty()
                && namespace.chars().all(|c| c.is_ascii_digit())
        })
}

/// Whether sysfs lists partitions of the device (`<name>p1`, ...).
fn has_children(block: &Path, name: &str) -> bool {
    std::fs::read_dir(block).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}p"))
        })
    })
}

fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Whether a `/proc/mounts`- or `/proc/swaps`-style listing names the device.
fn mentions(listing: &str, name: &str) -> bool {
    let device = format!("/dev/{name}");
    listing.lines().any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|source| source == device || source.starts_with(&format!("{device}p")))
    })
}

/// The system tools that prepare the instance store: a narrow seam, so
/// the choices below are tested without formatting anything.
trait Tools {
    /// Whether `blkid -p` finds no signature at all on `device` (its exit
    /// code 2): the only state in which a device may be formatted.
    fn is_blank(&self, device: &Path) -> Result<bool, String>;
    /// Runs `program` with `args`; its stderr on failure.
    fn run(&self, program: &str, args: &[&OsStr]) -> Result<(), String>;
}

/// The real tools, from `PATH`.
struct SystemTools;

impl Tools for SystemTools {
    fn is_blank(&self, device: &Path) -> Result<bool, String> {
        let probe = Command::new("blkid")
            .arg("-p")
            .arg(device)
            .output()
            .map_err(|err| format!("cannot run blkid: {err}"))?;
        Ok(probe.status.code() == Some(2))
    }

    fn run(&self, program: &str, args: &[&OsStr]) -> Result<(), String> {
        let output = Command::new(program)
            .args(args)
            .output()
            .map_err(|err| format!("cannot run {program}: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

/// Formats and mounts the instance-store `devices` (every one blank, by
/// `blkid -p`): several striped into one RAID 0 array, so the scratch
/// space is their sum and their throughput too, or the first alone where
/// the array cannot be made (no `mdadm` on the AMI, say), with a warning
/// naming why. Mounts it at `mount_point`, which it returns.
fn mount_instance_store(
    tools: &dyn Tools,
    devices: &[PathBuf],
    mount_point: &Path,
) -> Result<PathBuf, String> {
    let mut blank = Vec::new();
    for device in devices {
        if tools.is_blank(device)? {
            blank.push(device.as_path());
        } else {
            tracing::warn!(
                "instance store {} holds a signature: left alone",
                device.display()
            );
        }
    }
    let Some(first) = blank.first() else {
        return Err("no blank instance-store device".to_owned());
    };
    let target = if blank.len() == 1 {
        first.to_path_buf()
    } else {
        let count = format!("--raid-devices={}", blank.len());
        let mut args: Vec<&OsStr> = vec![
            "--create".as_ref(),
            STRIPED_DEVICE.as_ref(),
            "--run".as_ref(),
            "--level=0".as_ref(),
            count.as_ref(),
        ];
        args.extend(blank.iter().map(|device| device.as_os_str()));
        match tools.run("mdadm", &args) {
            Ok(()) => PathBuf::from(STRIPED_DEVICE),
            Err(reason) => {
                tracing::warn!(
                    "cannot stripe the {} instance-store devices ({reason}): using {} alone; \
                     install mdadm on the AMI for all of them",
                    blank.len(),
                    first.display()
                );
                first.to_path_buf()
            }
        }
    };
    tools.run(
        "mkfs.ext4",
        // no blocks reserved for root: the whole device is scratch
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            target.as_os_str(),
        ],
    )?;
    std::fs::create_dir_all(mount_point).map_err(|err| err.to_string())?;
    tools.run(
        "mount",
        &[
            "-o".as_ref(),
            "noatime".as_ref(),
            target.as_os_str(),
            mount_point.as_os_str(),
        ],
    )?;
    tracing::info!(
        "instance store {} mounted at {}",
        target.display(),
        mount_point.display()
    );
    Ok(mount_point.to_owned())
}

/// Bytes an unprivileged writer may still use on the filesystem of `dir`.
fn available_bytes(dir: &Path) -> io::Result<u64> {
    let stats = rustix::fs::statvfs(dir)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/sys/block` with one device `name` of `model`.
    fn device(root: &Path, name: &str, model: &str) -> PathBuf {
        let block = root.join(name);
        std::fs::create_dir_all(block.join("device")).unwrap();
        std::fs::create_dir_all(block.join("holders")).unwrap();
        std::fs::write(block.join("device/model"), format!("{model}\n")).unwrap();
        block
    }

    #[test]
    fn only_bare_unmounted_instance_store_namespaces_qualify() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        device(sys, "nvme1n1", INSTANCE_STORE_MODEL);
        device(sys, "nvme0n1", "Amazon Elastic Block Store");
        let partitioned = device(sys, "nvme2n1", INSTANCE_STORE_MODEL);
        std::fs::create_dir(partitioned.join("nvme2n1p1")).unwrap();
        let raided = device(sys, "nvme3n1", INSTANCE_STORE_MODEL);
        std::fs::create_dir(raided.join("holders/md0")).unwrap();
        device(sys, "nvme4n1", INSTANCE_STORE_MODEL);
        device(sys, "nvme5n1", INSTANCE_STORE_MODEL);
        device(sys, "vda", INSTANCE_STORE_MODEL);
        let mounts = "/dev/nvme4n1 /data ext4 rw 0 0\n/dev/vda / ext4 rw 0 0\n";
        let swaps = "Filename Type Size Used Priority\n/dev/nvme5n1 partition 1 0 -2\n";
        assert_eq!(
            instance_store_devices(sys, mounts, swaps),
            [PathBuf::from("/dev/nvme1n1")]
        );
    }

    /// Tools that record what they are asked; `blank` says which devices
    /// `blkid` finds nothing on, `mdadm` whether the array can be made.
    struct Recording {
        blank: Vec<&'static str>,
        mdadm: bool,
        calls: std::cell::RefCell<Vec<String>>,
    }

    impl Tools for Recording {
        fn is_blank(&self, device: &Path) -> Result<bool, String> {
            Ok(self.blank.iter().any(|blank| device == Path::new(blank)))
        }

        fn run(&self, program: &str, args: &[&OsStr]) -> Result<(), String> {
            let line = std::iter::once(program.to_owned())
                .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(" ");
            self.calls.borrow_mut().push(line);
            if program == "mdadm" && !self.mdadm {
                return Err("cannot run mdadm: No such file or directory".to_owned());
            }
            // the mount itself is not made: the mount point stays a
            // directory of this machine's
            Ok(())
        }
    }

    fn mounted(blank: &[&'static str], mdadm: bool, devices: &[&str]) -> Vec<String> {
        let tools = Recording {
            blank: blank.to_vec(),
            mdadm,
            calls: Default::default(),
        };
        let devices: Vec<PathBuf> = devices.iter().map(PathBuf::from).collect();
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().join("scratch");
        let _ = mount_instance_store(&tools, &devices, &mount_point);
        let mount_point = mount_point.display().to_string();
        tools
            .calls
            .into_inner()
            .into_iter()
            .map(|call| call.replace(&mount_point, "MOUNT"))
            .collect()
    }

    #[test]
    fn every_blank_instance_store_device_is_striped_into_one() {
        let all = ["/dev/nvme1n1", "/dev/nvme2n1", "/dev/nvme3n1"];
        assert_eq!(
            mounted(&all, true, &all),
            [
                "mdadm --create /dev/md/backup-cloud-scratch --run --level=0 --raid-devices=3 \
                 /dev/nvme1n1 /dev/nvme2n1 /dev/nvme3n1",
                "mkfs.ext4 -q -F -m 0 /dev/md/backup-cloud-scratch",
                "mount -o noatime /dev/md/backup-cloud-scratch MOUNT",
            ]
        );
        // one device is used as it is
        assert_eq!(
            mounted(&all, true, &all[..1]),
            [
                "mkfs.ext4 -q -F -m 0 /dev/nvme1n1",
                "mount -o noatime /dev/nvme1n1 MOUNT",
            ]
        );
        // without mdadm, the first device alone
        let calls = mounted(&all, false, &all[..2]);
        assert_eq!(
            calls[1..],
            [
                "mkfs.ext4 -q -F -m 0 /dev/nvme1n1",
                "mount -o noatime /dev/nvme1n1 MOUNT"
            ]
        );
        // a device holding anything is never formatted nor striped
        let calls = mounted(&all[1..], true, &all);
        assert!(
            calls[0].ends_with("--raid-devices=2 /dev/nvme2n1 /dev/nvme3n1"),
            "{calls:?}"
        );
        assert!(mounted(&[], true, &all).is_empty());
    }

    #[test]
    fn this_machine_has_no_instance_store_to_touch() {
        // the test hosts have none; finding one here would mean formatting it
        let found = instance_store_devices(
            Path::new("/sys/block"),
            &read("/proc/mounts"),
            &read("/proc/swaps"),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn scratch_never_falls_back_to_a_tmpfs() {
        let on_disk = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let tmpfs = PathBuf::from("/dev/shm");
        assert!(is_memory_backed(&tmpfs).unwrap(), "/dev/shm is a tmpfs");
        assert!(!is_memory_backed(&on_disk).unwrap());
        let missing = PathBuf::from("/nonexistent/scratch");
        assert_eq!(
            first_on_disk(vec![tmpfs.clone(), missing.clone(), on_disk.clone()]).unwrap(),
            on_disk
        );
        let err = first_on_disk(vec![tmpfs, missing]).unwrap_err().to_string();
        assert!(
            err.contains("/dev/shm, /nonexistent/scratch") && err.contains("TMPDIR"),
            "{err}"
        );
    }

    #[test]
    fn nvme_names_are_told_apart() {
        assert!(is_nvme_namespace("nvme0n1"));
        assert!(is_nvme_namespace("nvme12n3"));
        assert!(!is_nvme_namespace("nvme0n1p1"));
        assert!(!is_nvme_namespace("nvme0"));
        assert!(!is_nvme_namespace("sda"));
    }

    #[test]
    fn a_database_larger_than_the_free_space_is_refused() {
        let err = prepare(u64::MAX).err().expect("too big");
        assert!(matches!(err, ScratchError::TooSmall { .. }), "{err}");
        let scratch = prepare(1).unwrap();
        let dir = scratch.dump_dir();
        assert!(dir.is_dir());
        drop(scratch);
        assert!(!dir.exists());
    }
}
