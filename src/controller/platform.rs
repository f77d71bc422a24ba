//! Which agent can run on which instance, found out before anything is
//! launched.
//!
//! The agent is an executable shipped to an AMI and an instance type the
//! user picks. An `x86_64` agent on Graviton fails with "Exec format
//! error"; one linked against a newer glibc than the AMI's fails with
//! "GLIBC_2.3x not found"; one that needs a shared library the AMI lacks
//! does not start either. Each would cost a launch and show only as a
//! failed set-up. Here the agent's ELF header and dynamic section say what
//! it needs, `DescribeImages` and `DescribeInstanceTypes` say what the
//! instance is, and a mismatch is refused naming both.

use object::elf;
use object::elf::FileHeader64;
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endian, Endianness};

use crate::aws::{describe_sdk_error, AwsClients};
use crate::schema::DumpMode;

/// A processor architecture, as EC2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `x86_64` (ELF `EM_X86_64`).
    X86_64,
    /// `arm64`: Graviton (ELF `EM_AARCH64`).
    Arm64,
}

impl Arch {
    /// EC2's name (`ArchitectureValues`, `ProcessorInfo.SupportedArchitectures`).
    pub fn ec2_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The name of the architecture in Rust's and GNU's target triples
    /// (`x86_64`, `aarch64`), as `make dist` names its agents.
    pub fn target_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The architecture EC2 calls `name`.
    pub fn from_ec2(name: &str) -> Option<Arch> {
        [Arch::X86_64, Arch::Arm64]
            .into_iter()
            .find(|arch| arch.ec2_name() == name)
    }

    /// The architecture this executable was built for, if an agent can
    /// be.
    pub fn of_this_build() -> Option<Arch> {
        [Arch::X86_64, Arch::Arm64]
            .into_iter()
            .find(|arch| arch.target_name() == std::env::consts::ARCH)
    }

    fn from_elf(machine: elf::Machine) -> Option<Arch> {
        match machine {
            elf::EM_X86_64 => Some(Arch::X86_64),
            elf::EM_AARCH64 => Some(Arch::Arm64),
            _ => None,
        }
    }
}

/// The file name `make dist` gives the agent for `arch`:
/// `backup-cloud-x86_64-linux`, `backup-cloud-aarch64-linux`.
pub fn dist_agent_name(arch: Arch) -> String {
    format!("backup-cloud-{}-linux", arch.target_name())
}

/// The agent to ship to an AMI of `image_arch` when none is named: this
/// executable `exe` when it is built for that architecture (or the
/// architecture is not one an agent is built for), else the agent `make
/// dist` built for it beside `exe`, when there is one. Otherwise `exe`,
/// which [`check_launch`] then refuses, saying how to get the right one.
pub fn default_agent(exe: &std::path::Path, image_arch: &str) -> std::path::PathBuf {
    match Arch::from_ec2(image_arch) {
        Some(wanted) if Arch::of_this_build() != Some(wanted) => {
            let sibling = exe.with_file_name(dist_agent_name(wanted));
            if sibling.is_file() {
                sibling
            } else {
                exe.to_owned()
            }
        }
        _ => exe.to_owned(),
    }
}

/// The glibc of the AMI families whose names say which they are, by
/// name prefix or infix: Amazon Linux 2023 (its release notes: glibc
/// 2.34), Ubuntu 24.04 and 22.04 (their `libc6` packages: 2.39, 2.35) and
/// Debian 12 and 11 (`libc6` 2.36, 2.31).
const AMI_GLIBC: [(&str, &str, (u32, u32)); 5] = [
    ("al2023-ami-", "Amazon Linux 2023", (2, 34)),
    ("ubuntu-noble-24.04", "Ubuntu 24.04", (2, 39)),
    ("ubuntu-jammy-22.04", "Ubuntu 22.04", (2, 35)),
    ("debian-12-", "Debian 12", (2, 36)),
    ("debian-11-", "Debian 11", (2, 31)),
];

/// The glibc of the AMI named `name`, when its family is known.
pub fn ami_glibc(name: &str) -> Option<(u32, u32)> {
    AMI_GLIBC
        .iter()
        .find(|(family, _, _)| name.starts_with(family) || name.contains(&format!("/{family}")))
        .map(|(_, _, glibc)| *glibc)
}

/// The AMI families of known glibc whose glibc is new enough for
/// `platform` (`"Amazon Linux 2023"`, …), oldest glibc first.
pub fn runs_on(platform: &AgentPlatform) -> Vec<&'static str> {
    let mut families: Vec<_> = AMI_GLIBC
        .iter()
        .filter(|(_, _, glibc)| platform.glibc.is_none_or(|needed| needed <= *glibc))
        .collect();
    families.sort_by_key(|(_, _, glibc)| *glibc);
    families.into_iter().map(|(_, name, _)| *name).collect()
}

/// Shared libraries every glibc system has: the C library's own and the
/// GCC runtime. Anything else (a `libgpgme.so.11` when GPGME is not
/// linked in) an AMI lacks unless it is installed first.
const BASE_LIBRARIES: [&str; 10] = [
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// What an agent executable needs of the instance that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlatform {
    pub arch: Arch,
    /// The newest `GLIBC_x.y` symbol version it refers to, as `(x, y)`;
    /// `None` for an executable that needs no glibc.
    pub glibc: Option<(u32, u32)>,
}

/// What EC2 says of the AMI and the instance type a job would launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePlatform {
    pub ami_id: String,
    /// The AMI's `Architecture` (`x86_64`, `arm64`, `i386`, …).
    pub image_arch: String,
    /// The AMI's `Name` (`al2023-ami-2023.…`,
    /// `ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-…`).
    pub image_name: Option<String>,
    pub instance_type: String,
    /// The instance type's `ProcessorInfo.SupportedArchitectures`.
    pub type_archs: Vec<String>,
    /// The instance type's instance store, when it has one: its
    /// `InstanceStorageInfo` (devices, and their total size in GB of
    /// 10^9 bytes).
    pub instance_store: Option<InstanceStore>,
    /// The AMI's `RootDeviceName` (`/dev/xvda`, `/dev/sda1`).
    pub root_device_name: Option<String>,
    /// Size in GiB of the snapshot behind the AMI's root device: the
    /// smallest root volume EC2 accepts.
    pub root_snapshot_gib: Option<u32>,
}

/// The root volume a launch asks for: the AMI's root device, `gib` GiB
/// of gp3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootVolume {
    pub device_name: String,
    pub gib: u32,
}

/// An instance type's local NVMe instance store (`InstanceStorageInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceStore {
    pub devices: u32,
    /// `TotalSizeInGB`: GB of 10^9 bytes, every device together.
    pub total_gb: u64,
}

/// Where a directory dump's files wait for their upload on an instance,
/// and how many bytes fit there at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchSpace {
    pub bytes: u64,
    /// `"2 × instance store, 474 GB striped (with mdadm…)"`,
    /// `"root volume, 40 GiB …"`.
    pub what: String,
}

/// The scratch space the agent will use on `instance` (see the agent's
/// scratch module): every instance-store device striped together when
/// the type has them, else the root volume (`root_volume`, or the AMI's
/// own), of which the system takes a part. `None` when neither size is
/// known.
pub fn scratch_space(
    instance: &InstancePlatform,
    root_volume: Option<&RootVolume>,
) -> Option<ScratchSpace> {
    if let Some(store) = instance.instance_store.filter(|store| store.total_gb > 0) {
        return Some(ScratchSpace {
            bytes: store.total_gb.saturating_mul(1_000_000_000),
            what: if store.devices > 1 {
                format!(
                    "{} × instance store, {} GB striped (with mdadm, which Ubuntu's AMIs have; \
                     on an AMI without it, the first device alone)",
                    store.devices, store.total_gb
                )
            } else {
                format!("1 × instance store, {} GB", store.total_gb)
            },
        });
    }
    let gib = root_volume
        .map(|volume| volume.gib)
        .or(instance.root_snapshot_gib)?;
    Some(ScratchSpace {
        bytes: u64::from(gib) << 30,
        what: format!("root volume, {gib} GiB less what the AMI's system takes"),
    })
}

/// Refuses a job whose dump tools the AMI cannot have: a stock Amazon
/// Linux 2023 image (named `al2023-ami-…`, as Amazon names them) has no
/// mydumper in its repositories, so the set-up would fail on every
/// launch. An AMI of another name (one's own, with the tools baked in) is
/// trusted to have them.
pub fn check_tools(mode: DumpMode, instance: &InstancePlatform) -> Result<(), PlatformError> {
    let name = instance.image_name.as_deref().unwrap_or_default();
    if mode == DumpMode::Mydumper && name.starts_with("al2023-ami-") {
        return Err(PlatformError::NoMydumper {
            ami_id: instance.ami_id.clone(),
            ami_name: name.to_owned(),
        });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "the AMI {ami_id} ({ami_name}) is a stock Amazon Linux 2023 image, whose repositories have \
         no mydumper: set mode = \"mysqldump\", use an Ubuntu AMI (the default), or use an AMI of \
         your own with mydumper installed (its id in an SSM parameter under /backup-cloud/amis/)"
    )]
    NoMydumper { ami_id: String, ami_name: String },
    #[error(
        "the agent {agent} is not a 64-bit Linux executable for x86_64 or arm64 (ELF): {reason}"
    )]
    NotAnAgent { agent: String, reason: String },
    #[error(
        "the agent {agent} needs GLIBC_{}.{}, but the AMI {ami_id} ({ami_name}) has glibc {}.{}: \
         build the agent on a distribution whose glibc is no newer and pass it with --agent-binary",
        needed.0, needed.1, has.0, has.1
    )]
    Glibc {
        agent: String,
        needed: (u32, u32),
        ami_id: String,
        ami_name: String,
        has: (u32, u32),
    },
    #[error(
        "the agent {agent} needs the shared library {library}, which an AMI does not have before \
         set-up: build it with GPGME linked in, as .cargo/config.toml does"
    )]
    Library { agent: String, library: String },
    #[error(
        "the agent {agent} is built for {agent_arch}, but the AMI {ami_id} is {image_arch}: \
         use an agent for {image_arch} (`make dist` builds both; the controller in dist/ ships \
         the one for the AMI, or pass it with --agent-binary) or an {agent_arch} AMI"
    )]
    AgentVsImage {
        agent: String,
        agent_arch: &'static str,
        ami_id: String,
        image_arch: String,
    },
    #[error(
        "instance type {instance_type} runs {}, but the AMI {ami_id} is {image_arch}: pick an \
         {image_arch} instance type (`instance_type`) or an AMI for {}",
        type_archs.join(" or "), type_archs.join(" or ")
    )]
    TypeVsImage {
        instance_type: String,
        type_archs: Vec<String>,
        ami_id: String,
        image_arch: String,
    },
    #[error(
        "a root volume of {gib} GiB is smaller than the {snapshot_gib} GiB of the AMI {ami_id}'s \
         snapshot, which EC2 refuses: set `root_volume_gib` to at least {snapshot_gib}"
    )]
    RootVolumeTooSmall {
        gib: u32,
        snapshot_gib: u32,
        ami_id: String,
    },
    #[error("the AMI {ami_id} names no root device, so `root_volume_gib` cannot size it")]
    NoRootDevice { ami_id: String },
    #[error("cannot {action}: {reason}")]
    Describe { action: String, reason: String },
}

/// Reads what the executable `bytes` (named `agent` in errors) needs:
/// refuses one that is not a little-endian 64-bit ELF executable for
/// x86_64 or arm64, one whose needs cannot be read (no section headers,
/// yet linked dynamically), or one that needs a shared library outside
/// [`BASE_LIBRARIES`].
pub fn inspect_agent(agent: &str, bytes: &[u8]) -> Result<AgentPlatform, PlatformError> {
    let not_an_agent = |reason: String| PlatformError::NotAnAgent {
        agent: agent.to_owned(),
        reason,
    };
    let header =
        FileHeader64::<Endianness>::parse(bytes).map_err(|e| not_an_agent(e.to_string()))?;
    let endian = header.endian().map_err(|e| not_an_agent(e.to_string()))?;
    if !endian.is_little_endian() {
        return Err(not_an_agent(
            "it is big-endian; EC2's x86_64 and Graviton instances run little-endian code"
                .to_owned(),
        ));
    }
    let kind = header.e_type(endian);
    if kind != elf::ET_EXEC && kind != elf::ET_DYN {
        return Err(not_an_agent(format!(
            "it is not an executable (ELF e_type {kind})"
        )));
    }
    let machine = header.e_machine(endian);
    let arch = Arch::from_elf(machine)
        .ok_or_else(|| not_an_agent(format!("its machine is ELF e_machine {}", machine.0)))?;
    let sections = header
        .sections(endian, bytes)
        .map_err(|e| not_an_agent(e.to_string()))?;
    let interpreted = header
        .program_headers(endian, bytes)
        .map_err(|e| not_an_agent(e.to_string()))?
        .iter()
        .any(|segment| segment.p_type(endian) == elf::PT_INTERP);
    if interpreted && sections.is_empty() {
        return Err(not_an_agent(
            "it is linked dynamically but has no section headers (stripped with sstrip?), \
             so what it needs of glibc cannot be read"
                .to_owned(),
        ));
    }
    let dynamic = sections
        .dynamic_table(endian, bytes)
        .map_err(|e| not_an_agent(e.to_string()))?;
    for entry in &dynamic {
        if entry.tag != elf::DT_NEEDED {
            continue;
        }
        let library = dynamic
            .string(entry)
            .map_err(|e| not_an_agent(e.to_string()))?;
        let library = String::from_utf8_lossy(library);
        if !BASE_LIBRARIES.contains(&library.as_ref()) {
            return Err(PlatformError::Library {
                agent: agent.to_owned(),
                library: library.into_owned(),
            });
        }
    }
    let mut glibc = None;
    if let Some((mut needs, link)) = sections
        .gnu_verneed(endian, bytes)
        .map_err(|e| not_an_agent(e.to_string()))?
    {
        let strings = sections
            .strings(endian, bytes, link)
            .map_err(|e| not_an_agent(e.to_string()))?;
        while let Some((_, mut versions)) = needs.next().map_err(|e| not_an_agent(e.to_string()))? {
            while let Some(version) = versions.next().map_err(|e| not_an_agent(e.to_string()))? {
                let name = version
                    .name(endian, strings)
                    .map_err(|e| not_an_agent(e.to_string()))?;
                glibc = glibc.max(glibc_version(name));
            }
        }
    }
    Ok(AgentPlatform { arch, glibc })
}

/// `(2, 34)` of `GLIBC_2.34`; `None` for other version names.
fn glibc_version(name: &[u8]) -> Option<(u32, u32)> {
    let version = std::str::from_utf8(name).ok()?.strip_prefix("GLIBC_")?;
    let (major, minor) = version.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Asks EC2 the architecture of `ami_id` and those `instance_type` runs.
pub async fn describe_instance_platform(
    aws: &AwsClients,
    ami_id: &str,
    instance_type: &str,
) -> Result<InstancePlatform, PlatformError> {
    let describe =
        |action: String| move |reason: String| PlatformError::Describe { action, reason };
    let images = aws
        .ec2
        .describe_images()
        .image_ids(ami_id)
        .send()
        .await
        .map_err(|e| describe(format!("describe AMI {ami_id}"))(describe_sdk_error(&e)))?;
    let image = images.images().first();
    let image_arch = image
        .and_then(|image| image.architecture())
        .map(|arch| arch.as_str().to_owned())
        .ok_or_else(|| {
            describe(format!("describe AMI {ami_id}"))("EC2 does not list it".to_owned())
        })?;
    let image_name = image.and_then(|image| image.name()).map(str::to_owned);
    let root_device_name = image
        .and_then(|image| image.root_device_name())
        .map(str::to_owned);
    let root_snapshot_gib = image.and_then(|image| {
        image
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == root_device_name.as_deref())
            .and_then(|m| m.ebs())
            .and_then(|ebs| ebs.volume_size())
            .and_then(|gib| u32::try_from(gib).ok())
    });
    let types = aws
        .ec2
        .describe_instance_types()
        .instance_types(instance_type.into())
        .send()
        .await
        .map_err(|e| {
            describe(format!("describe instance type {instance_type}"))(describe_sdk_error(&e))
        })?;
    let instance_type_info = types.instance_types().first();
    let instance_store = instance_type_info
        .and_then(|t| t.instance_storage_info())
        .map(|storage| InstanceStore {
            devices: storage
                .disks()
                .iter()
                .filter_map(|disk| disk.count())
                .map(|count| u32::try_from(count).unwrap_or(0))
                .sum(),
            total_gb: storage
                .total_size_in_gb()
                .and_then(|gb| u64::try_from(gb).ok())
                .unwrap_or(0),
        });
    let type_archs = instance_type_info
        .and_then(|t| t.processor_info())
        .map(|p| {
            p.supported_architectures()
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|archs| !archs.is_empty())
        .ok_or_else(|| {
            describe(format!("describe instance type {instance_type}"))(
                "EC2 gives no architecture for it".to_owned(),
            )
        })?;
    Ok(InstancePlatform {
        ami_id: ami_id.to_owned(),
        image_arch,
        image_name,
        instance_type: instance_type.to_owned(),
        type_archs,
        instance_store,
        root_device_name,
        root_snapshot_gib,
    })
}

/// Refuses a launch where the instance type cannot run the AMI, the
/// agent (named `agent`) cannot run on the AMI (its architecture, or a
/// newer glibc than an AMI of a known family has: [`ami_glibc`]; of an
/// AMI of another family the glibc cannot be told, and a warning says
/// so), or a root volume of `root_volume_gib` cannot replace the AMI's;
/// returns that root volume.
pub fn check_launch(
    agent: &str,
    platform: &AgentPlatform,
    instance: &InstancePlatform,
    root_volume_gib: Option<u32>,
) -> Result<Option<RootVolume>, PlatformError> {
    if !instance.type_archs.contains(&instance.image_arch) {
        return Err(PlatformError::TypeVsImage {
            instance_type: instance.instance_type.clone(),
            type_archs: instance.type_archs.clone(),
            ami_id: instance.ami_id.clone(),
            image_arch: instance.image_arch.clone(),
        });
    }
    if platform.arch.ec2_name() != instance.image_arch {
        return Err(PlatformError::AgentVsImage {
            agent: agent.to_owned(),
            agent_arch: platform.arch.ec2_name(),
            ami_id: instance.ami_id.clone(),
            image_arch: instance.image_arch.clone(),
        });
    }
    if let Some(needed) = platform.glibc {
        let name = instance.image_name.as_deref().unwrap_or_default();
        match ami_glibc(name) {
            Some(has) if needed > has => {
                return Err(PlatformError::Glibc {
                    agent: agent.to_owned(),
                    needed,
                    ami_id: instance.ami_id.clone(),
                    ami_name: name.to_owned(),
                    has,
                })
            }
            Some(_) => {}
            None => tracing::warn!(
                "the glibc of AMI {} ({name}) is not known here: the agent needs glibc {}.{} or newer",
                instance.ami_id,
                needed.0,
                needed.1
            ),
        }
    }
    let Some(gib) = root_volume_gib else {
        return Ok(None);
    };
    let device_name =
        instance
            .root_device_name
            .clone()
            .ok_or_else(|| PlatformError::NoRootDevice {
                ami_id: instance.ami_id.clone(),
            })?;
    if let Some(snapshot_gib) = instance.root_snapshot_gib.filter(|s| *s > gib) {
        return Err(PlatformError::RootVolumeTooSmall {
            gib,
            snapshot_gib,
            ami_id: instance.ami_id.clone(),
        });
    }
    Ok(Some(RootVolume { device_name, gib }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_executable() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn this_build_is_an_agent_for_its_own_machine() {
        let platform = inspect_agent("test", &this_executable()).unwrap();
        let expected = if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::X86_64
        };
        assert_eq!(platform.arch, expected);
        let glibc = platform.glibc.expect("a glibc build");
        assert!(
            glibc <= ami_glibc("al2023-ami-2023").unwrap(),
            "a build here runs on Amazon Linux 2023: {glibc:?}"
        );
        if cfg!(target_arch = "x86_64") {
            // linked against Debian 11's glibc (.cargo/config.toml)
            assert!(
                glibc <= ami_glibc("debian-11-amd64").unwrap(),
                "an x86_64 build runs on Debian 11: {glibc:?}"
            );
        }
    }

    /// Rewrites one byte string of an executable into another of the same
    /// length: what the linker of another machine would have written.
    fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(from)));
        let mut out = bytes.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn an_agent_built_on_a_newer_glibc_or_needing_another_library_is_refused() {
        let bytes = this_executable();
        let platform = inspect_agent("test", &bytes).unwrap();
        let (major, minor) = platform.glibc.unwrap();
        let newest = format!("GLIBC_{major}.{minor}\0");
        let newer = format!("GLIBC_{major}.{}\0", minor + 5);
        let platform = inspect_agent(
            "agent",
            &patched(&bytes, newest.as_bytes(), newer.as_bytes()),
        )
        .unwrap();
        assert_eq!(platform.glibc, Some((major, minor + 5)));
        let al2023 = InstancePlatform {
            image_name: Some("al2023-ami-2023.6.20241010.0-kernel-6.1-x86_64".into()),
            ..instance("x86_64", &["x86_64"])
        };
        let err = check_launch("agent", &platform, &al2023, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("needs GLIBC_{major}.{}", minor + 5))
                && err.contains("has glibc 2.34"),
            "{err}"
        );
        // of an AMI whose family is not known, the glibc cannot be told
        assert!(check_launch("agent", &platform, &instance("x86_64", &["x86_64"]), None).is_ok());
        let err = inspect_agent("agent", &patched(&bytes, b"libm.so.6\0", b"libq.so.6\0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs the shared library libq.so.6"), "{err}");
    }

    #[test]
    fn other_machines_and_formats_are_not_agents() {
        let bytes = this_executable();
        // e_machine is the 16-bit field at offset 18 of the ELF header
        let mut riscv = bytes.clone();
        riscv[18..20].copy_from_slice(&243u16.to_le_bytes());
        let err = inspect_agent("agent", &riscv).unwrap_err().to_string();
        assert!(err.contains("e_machine 243"), "{err}");
        // e_type (offset 16): a relocatable object is no executable
        let mut object = bytes.clone();
        object[16..18].copy_from_slice(&elf::ET_REL.0.to_le_bytes());
        let err = inspect_agent("agent", &object).unwrap_err().to_string();
        assert!(err.contains("not an executable (ELF e_type 1)"), "{err}");
        // EI_DATA (offset 5) 2: big-endian
        let mut big = bytes.clone();
        big[5] = 2;
        let err = inspect_agent("agent", &big).unwrap_err().to_string();
        assert!(err.contains("big-endian"), "{err}");
        // no section headers (e_shoff at 40, e_shnum at 60, e_shstrndx at 62)
        let mut sstripped = bytes.clone();
        sstripped[40..48].fill(0);
        sstripped[60..64].fill(0);
        let err = inspect_agent("agent", &sstripped).unwrap_err().to_string();
        assert!(err.contains("no section headers"), "{err}");
        let err = inspect_agent("script.sh", b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the agent script.sh is not a 64-bit Linux executable"),
            "{err}"
        );
    }

    fn instance(image_arch: &str, type_archs: &[&str]) -> InstancePlatform {
        InstancePlatform {
            ami_id: "ami-1".into(),
            image_arch: image_arch.into(),
            image_name: Some("my-golden-image".into()),
            instance_type: "m7g.large".into(),
            type_archs: type_archs.iter().map(|a| a.to_string()).collect(),
            instance_store: None,
            root_device_name: Some("/dev/xvda".into()),
            root_snapshot_gib: Some(8),
        }
    }

    #[test]
    fn the_agent_the_ami_and_the_instance_type_must_agree() {
        let x86 = AgentPlatform {
            arch: Arch::X86_64,
            glibc: Some((2, 34)),
        };
        let arm = AgentPlatform {
            arch: Arch::Arm64,
            glibc: Some((2, 17)),
        };
        assert!(check_launch("a", &x86, &instance("x86_64", &["i386", "x86_64"]), None).is_ok());
        assert!(check_launch("a", &arm, &instance("arm64", &["arm64"]), None).is_ok());
        let err = check_launch("a", &x86, &instance("x86_64", &["arm64"]), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m7g.large runs arm64, but the AMI ami-1 is x86_64"),
            "{err}"
        );
        let err = check_launch("a", &x86, &instance("arm64", &["arm64"]), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("built for x86_64, but the AMI ami-1 is arm64"),
            "{err}"
        );
    }

    #[test]
    fn a_root_volume_replaces_the_ami_s_and_is_at_least_its_snapshot() {
        let x86 = AgentPlatform {
            arch: Arch::X86_64,
            glibc: None,
        };
        let on = instance("x86_64", &["x86_64"]);
        assert_eq!(
            check_launch("a", &x86, &on, Some(500)).unwrap(),
            Some(RootVolume {
                device_name: "/dev/xvda".into(),
                gib: 500
            })
        );
        let err = check_launch("a", &x86, &on, Some(4))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("4 GiB is smaller than the 8 GiB of the AMI ami-1's snapshot"),
            "{err}"
        );
        let nameless = InstancePlatform {
            root_device_name: None,
            ..on
        };
        assert!(check_launch("a", &x86, &nameless, None).unwrap().is_none());
        assert!(check_launch("a", &x86, &nameless, Some(50)).is_err());
    }

    #[test]
    fn the_agent_for_another_architecture_is_taken_from_beside_the_controller() {
        let dir = tempfile::tempdir().unwrap();
        let this = Arch::of_this_build().expect("built for x86_64 or aarch64");
        let other = match this {
            Arch::X86_64 => Arch::Arm64,
            Arch::Arm64 => Arch::X86_64,
        };
        let exe = dir.path().join(dist_agent_name(this));
        std::fs::write(&exe, b"").unwrap();
        assert_eq!(default_agent(&exe, this.ec2_name()), exe);
        // none built for the other: this one, which the check refuses
        assert_eq!(default_agent(&exe, other.ec2_name()), exe);
        let sibling = dir.path().join(dist_agent_name(other));
        std::fs::write(&sibling, b"").unwrap();
        assert_eq!(default_agent(&exe, other.ec2_name()), sibling);
        assert_eq!(default_agent(&exe, "i386"), exe);
        assert_eq!(dist_agent_name(Arch::Arm64), "backup-cloud-aarch64-linux");
    }

    #[test]
    fn mydumper_is_refused_on_a_stock_amazon_linux_2023_image_only() {
        let al2023 = InstancePlatform {
            image_name: Some("al2023-ami-2023.12.20260930.0-kernel-6.18-x86_64".into()),
            ..instance("x86_64", &["x86_64"])
        };
        let err = check_tools(DumpMode::Mydumper, &al2023)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no mydumper")
                && err.contains("mode = \"mysqldump\"")
                && err.contains("/backup-cloud/amis/"),
            "{err}"
        );
        assert!(check_tools(DumpMode::Mysqldump, &al2023).is_ok());
        // one's own image, tools baked in
        assert!(check_tools(DumpMode::Mydumper, &instance("x86_64", &["x86_64"])).is_ok());
    }

    #[test]
    fn scratch_is_the_instance_store_striped_or_else_the_root_volume() {
        let m6id = InstancePlatform {
            instance_store: Some(InstanceStore {
                devices: 2,
                total_gb: 474,
            }),
            ..instance("x86_64", &["x86_64"])
        };
        let scratch = scratch_space(&m6id, None).unwrap();
        assert_eq!(scratch.bytes, 474_000_000_000);
        assert!(
            scratch
                .what
                .starts_with("2 × instance store, 474 GB striped (with mdadm"),
            "{}",
            scratch.what
        );
        let t3 = instance("x86_64", &["x86_64"]);
        let scratch = scratch_space(&t3, None).unwrap();
        assert_eq!(scratch.bytes, 8 << 30, "the AMI's root snapshot");
        let root = RootVolume {
            device_name: "/dev/xvda".into(),
            gib: 500,
        };
        let scratch = scratch_space(&t3, Some(&root)).unwrap();
        assert_eq!(scratch.bytes, 500 << 30);
        assert!(scratch.what.starts_with("root volume, 500 GiB"));
        let unknown = InstancePlatform {
            root_snapshot_gib: None,
            ..t3
        };
        assert_eq!(scratch_space(&unknown, None), None);
    }

    #[test]
    fn an_agent_runs_on_the_families_whose_glibc_is_new_enough() {
        let agent = |glibc| AgentPlatform {
            arch: Arch::X86_64,
            glibc,
        };
        assert_eq!(
            runs_on(&agent(Some((2, 34)))),
            [
                "Amazon Linux 2023",
                "Ubuntu 22.04",
                "Debian 12",
                "Ubuntu 24.04"
            ]
        );
        assert_eq!(
            runs_on(&agent(Some((2, 36)))),
            ["Debian 12", "Ubuntu 24.04"]
        );
        assert_eq!(runs_on(&agent(Some((2, 31)))).len(), 5);
        assert_eq!(runs_on(&agent(Some((2, 31))))[0], "Debian 11");
        assert!(runs_on(&agent(Some((2, 40)))).is_empty());
        assert_eq!(runs_on(&agent(None)).len(), 5);
    }

    #[test]
    fn the_glibc_of_known_ami_families_is_told_by_name() {
        assert_eq!(
            ami_glibc("al2023-ami-2023.12.20260930.0-kernel-6.18-x86_64"),
            Some((2, 34))
        );
        assert_eq!(
            ami_glibc("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261101"),
            Some((2, 39))
        );
        assert_eq!(ami_glibc("debian-12-amd64-20261101-1234"), Some((2, 36)));
        assert_eq!(ami_glibc("my-golden-image"), None);
    }

    #[test]
    fn glibc_versions_are_read_from_their_names() {
        assert_eq!(glibc_version(b"GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version(b"GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version(b"GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version(b"GCC_3.0"), None);
    }
}
