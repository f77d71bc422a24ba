//! Proving backups restorable, and restoring them.
//!
//! A backup that cannot be restored is worse than none, because people
//! trust it. This module holds everything that reads a finished backup:
//! `verify` (whole, and encrypted to exactly the configured keys, with no
//! private key), split-knowledge decryption (`headers` for the operator,
//! `session-keys` for the offline key holder, `decrypt` with session keys
//! alone), `restore` and `drill` into a database, and `export` to offline
//! media. They all read through [`store::Backup`], so an offline copy is
//! checked exactly like the backup in S3.
//!
//! Error policy: a problem *with the backup* (a missing object, a wrong
//! checksum) is a finding, collected and reported by object; an error that
//! stops the command from looking (no network, a bad address) is a
//! [`RestoreError`], mapped to an exit code by [`RestoreError::exit`].

pub mod commands;
pub mod drill;
pub mod engine;
pub mod export;
pub mod headers;
pub mod pipeline;
pub mod store;
pub mod verify;

use std::path::Path;

use crate::aws::AwsClients;
use crate::config::{Config, ConfigError};
use crate::exit::Exit;
use crate::openpgp::GpgError;
use store::{Backup, StoreError};

/// A restore command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gpg(#[from] GpgError),
    #[error("{0}")]
    Failed(String),
    /// `--latest`/`--random` could not pick a backup.
    #[error(transparent)]
    Pick(#[from] crate::lifecycle::LifecycleError),
    #[error("an internal task stopped unexpectedly: {0}")]
    Crashed(String),
}

impl RestoreError {
    /// The documented exit code for this outcome.
    pub fn exit(&self) -> Exit {
        match self {
            RestoreError::Config(_) | RestoreError::Usage(_) => Exit::Config,
            RestoreError::Store(StoreError::BadAddress(_)) => Exit::Config,
            RestoreError::Crashed(_) => Exit::Internal,
            RestoreError::Pick(err) => err.exit(),
            _ => Exit::Unrestorable,
        }
    }

    fn crashed(err: tokio::task::JoinError) -> RestoreError {
        RestoreError::Crashed(err.to_string())
    }
}

/// Opens the backup at `address` in S3, with the AWS settings and storage
/// prefix of `config` when given (otherwise the standard AWS chain).
pub async fn open(address: &str, config: Option<&Path>) -> Result<Backup, RestoreError> {
    let config = config.map(Config::load).transpose()?;
    let (region, endpoint, prefix) = match &config {
        Some(c) => (
            c.aws.region.as_deref(),
            c.aws.endpoint_url.as_deref(),
            Some(c.storage.prefix.as_str()),
        ),
        None => (None, None, None),
    };
    let clients = AwsClients::load(region, endpoint).await;
    // Objects are checked against the manifest's SHA-256 here; the SDK's
    // own response checksums cannot check multipart objects and only warn.
    let s3 = aws_sdk_s3::Client::from_conf(
        clients
            .s3
            .config()
            .to_builder()
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build(),
    );
    Ok(Backup::in_s3(s3, address, prefix)?)
}

/// Opens either `address` in S3 or the offline copy in `dir`.
pub async fn open_either(
    address: Option<&str>,
    dir: Option<&Path>,
    config: Option<&Path>,
) -> Result<Backup, RestoreError> {
    match (address, dir) {
        (Some(address), None) => open(address, config).await,
        (None, Some(dir)) => Ok(Backup::in_dir(dir).await?.0),
        _ => Err(RestoreError::Usage("give a backup address or --dir")),
    }
}
