//! The agent's encryption stage on its own, for `make bench`.
//!
//! The benchmark compares the stage (gpg encryption, SHA-256 and cutting
//! the ciphertext into upload parts) with `gpg --encrypt` alone on the same
//! input. To measure the real thing rather than a copy of it, the hidden
//! `backup-cloud bench-encrypt` subcommand runs exactly the calls
//! `stream_dump` makes, with stdin in place of the dump tool and a
//! consumer that drops each part where the upload would send it.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use super::encrypt::{CountingReader, PartWriter};
use super::keys::{self, PublicKeyObject};
use super::part_size::PartSizer;
use super::{EncryptError, KeyError, Workspace};
use crate::openpgp::Encryptor;

/// The benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot read stdin: {0}")]
    Stdin(io::Error),
    #[error("cannot read the public key {path}: {source}")]
    PublicKey { path: PathBuf, source: io::Error },
    #[error("cannot prepare the private working directory: {0}")]
    Workspace(io::Error),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
    #[error("cannot hand the ciphertext to the part consumer: {0}")]
    Sink(io::Error),
    #[error("the encryption stage stopped unexpectedly: {0}")]
    Crashed(String),
}

/// What one run of the stage did, printed as JSON.
#[derive(Debug, Serialize)]
pub struct EncryptReport {
    pub plaintext_bytes: u64,
    pub ciphertext_bytes: u64,
    pub parts: u64,
    pub sha256: String,
    /// Wall time of the stage alone: from starting the encryption to the
    /// last part handed over (key import excluded, as in a backup it
    /// happens once, before the dump).
    pub seconds: f64,
}

/// Encrypts stdin to the key(s) in `public_key` through the agent's stage
/// with parts of `part_size` bytes, dropping the parts.
pub async fn bench_encrypt(public_key: &Path, part_size: u64) -> Result<EncryptReport, BenchError> {
    let data = std::fs::read(public_key).map_err(|source| BenchError::PublicKey {
        path: public_key.to_owned(),
        source,
    })?;
    let workspace = Workspace::create().map_err(BenchError::Workspace)?;
    let gnupg_home = workspace.gnupg_home();
    let objects = vec![PublicKeyObject {
        key: public_key.display().to_string(),
        data: Bytes::from(data),
    }];
    let encryptor = tokio::task::spawn_blocking(move || {
        let recipients = keys::import_recipients(&gnupg_home, &objects)?;
        Ok::<_, BenchError>(Encryptor::new(&gnupg_home, &recipients)?)
    })
    .await
    .map_err(|err| BenchError::Crashed(err.to_string()))??;

    // clap bounds it to S3's part sizes
    let (part_sender, mut part_receiver) = mpsc::channel::<Bytes>(1);
    let consumer = tokio::spawn(async move {
        let mut parts = 0u64;
        while part_receiver.recv().await.is_some() {
            parts += 1;
        }
        parts
    });
    let stdin = std::fs::File::from(
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(BenchError::Stdin)?,
    );
    let plaintext_bytes = Arc::new(AtomicU64::new(0));
    let counter = plaintext_bytes.clone();
    let started = Instant::now();
    let stage = tokio::task::spawn_blocking(move || {
        let mut writer = PartWriter::new(PartSizer::new(part_size, None), part_sender);
        encryptor.encrypt(CountingReader::new(stdin, counter), &mut writer)?;
        writer.finish().map_err(BenchError::Sink)
    });
    let summary = stage
        .await
        .map_err(|err| BenchError::Crashed(err.to_string()))??;
    let parts = consumer
        .await
        .map_err(|err| BenchError::Crashed(err.to_string()))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(EncryptReport {
        plaintext_bytes: plaintext_bytes.load(Ordering::Relaxed),
        ciphertext_bytes: summary.bytes,
        parts,
        sha256: summary.sha256,
        seconds,
    })
}
