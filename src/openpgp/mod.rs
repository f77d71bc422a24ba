//! Everything backup-cloud does with OpenPGP, for both halves: the agent
//! encrypts dumps to the configured recipients, the restore commands read
//! who can decrypt a backup, recover session keys and decrypt.
//!
//! GPGME decides what gpg does (engine, keyring, recipients, session keys);
//! bulk data goes through gpg's own pipes ([`stream`] says why). Keyrings
//! are private temporary homes ([`TempHome`]) that stop any gpg-agent they
//! started when dropped. [`packets`] reads just enough of the packet
//! grammar to find the key packets at the head of an object, with no key.
//!
//! Everything here blocks: run it on a blocking thread.

pub mod decrypt;
pub mod encrypt;
pub mod packets;
pub mod stream;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gpgme::{Context, Protocol};

pub use decrypt::{Decryptor, GpgError, Recipients};
pub use encrypt::{EncryptError, Encryptor};
pub use stream::StreamError;

/// A GPGME OpenPGP context producing binary output; `home` overrides
/// GNUPGHOME.
pub fn context(home: Option<&Path>) -> Result<Context, gpgme::Error> {
    let mut context = Context::from_protocol(Protocol::OpenPgp)?;
    if let Some(home) = home {
        context.set_engine_home_dir(home.as_os_str().as_encoded_bytes())?;
    }
    context.set_armor(false);
    Ok(context)
}

/// What [`self_check`] found: GPGME's version and the gpg it drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineReport {
    pub gpgme: String,
    pub gpg: PathBuf,
    pub gpg_version: String,
}

/// Checks that the GPGME linked into this executable finds and runs a
/// usable gpg here (GPGME asks that gpg its version): what an agent needs
/// of a machine besides glibc. Fails naming what is missing.
pub fn self_check() -> Result<EngineReport, StreamError> {
    let gpgme = gpgme::init();
    gpgme
        .check_engine_version(Protocol::OpenPgp)
        .map_err(|_| StreamError::NoEngine)?;
    let context = context(None).map_err(|_| StreamError::NoEngine)?;
    let gpg = stream::engine(&context)?;
    let gpg_version = context
        .engine_info()
        .version()
        .ok()
        .unwrap_or("unknown")
        .to_owned();
    Ok(EngineReport {
        gpgme: gpgme.version().to_owned(),
        gpg,
        gpg_version,
    })
}

/// A private (0700) temporary gpg home, removed when dropped together with
/// any gpg-agent started in it. gpg starts an agent only when it handles
/// secret keys, which backups never need; a public-keys folder holding a
/// secret key by mistake would leave one behind otherwise.
#[derive(Debug)]
pub struct TempHome {
    dir: tempfile::TempDir,
}

impl TempHome {
    /// A new home in the system's temporary directory.
    pub fn new() -> io::Result<TempHome> {
        TempHome::create(tempfile::Builder::new().prefix("bc-gpg-").tempdir()?)
    }

    /// A new home inside `parent` (a private working directory).
    pub fn new_in(parent: &Path) -> io::Result<TempHome> {
        TempHome::create(
            tempfile::Builder::new()
                .prefix("gnupg-")
                .tempdir_in(parent)?,
        )
    }

    fn create(dir: tempfile::TempDir) -> io::Result<TempHome> {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        Ok(TempHome { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn to_path_buf(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        if self.dir.path().join("S.gpg-agent").exists() {
            let _ = std::process::Command::new("gpgconf")
                .arg("--homedir")
                .arg(self.dir.path())
                .args(["--kill", "gpg-agent"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_home_is_private_and_removed() {
        let parent = tempfile::tempdir().unwrap();
        for home in [
            TempHome::new().unwrap(),
            TempHome::new_in(parent.path()).unwrap(),
        ] {
            let path = home.to_path_buf();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
            drop(home);
            assert!(!path.exists());
        }
    }
}
