//! `export`: copies a backup — encrypted objects, manifest and the
//! recipients' public keys — onto offline media, where `verify --dir` can
//! check it with no network.
//!
//! Media fail and copies get interrupted, so every file is written under a
//! temporary name, synced, checked against the manifest's SHA-256 and only
//! then renamed into place: a good file is never replaced by a bad one, and
//! a rerun skips every file already present and verified. The manifest is
//! written last, as in S3, so a copy without one is visibly incomplete.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::pipeline::TempFile;
use super::store::{Backup, StoreError};
use super::RestoreError;
use crate::layout::{COPY_PUBLIC_KEYS, MANIFEST_NAME};

/// What an export did.
#[derive(Debug, Default)]
pub struct Exported {
    pub copied: Vec<String>,
    pub already_present: Vec<String>,
    pub bytes_copied: u64,
}

/// Copies `backup` into `dir`.
pub async fn export(backup: &Backup, dir: &Path) -> Result<Exported, RestoreError> {
    let manifest_key = backup.manifest_key();
    let manifest_bytes = backup.store.read_all(&manifest_key).await?;
    let manifest =
        super::store::parse_manifest(&backup.store.location(&manifest_key), &manifest_bytes)?;
    let existing = dir.join(MANIFEST_NAME);
    if let Ok(present) = std::fs::read(&existing) {
        if present != manifest_bytes {
            return Err(RestoreError::Failed(format!(
                "{} belongs to another backup (or was altered); export into an empty folder",
                existing.display()
            )));
        }
    }
    let mut exported = Exported::default();
    for object in &manifest.objects {
        let name = backup
            .name_of(&object.key)
            .ok_or_else(|| RestoreError::Failed(format!("{}: outside the backup", object.key)))?;
        let path = dir.join(name);
        if file_matches(&path, object.size, &object.sha256)? {
            exported.already_present.push(name.to_owned());
            continue;
        }
        exported.bytes_copied +=
            copy_verified(backup, &object.key, &path, object.size, &object.sha256).await?;
        exported.copied.push(name.to_owned());
    }
    for (key, data) in backup.public_keys().await? {
        let file = key.rsplit('/').next().unwrap_or(&key);
        let path = dir.join(COPY_PUBLIC_KEYS).join(file);
        let name = format!("{COPY_PUBLIC_KEYS}/{file}");
        if std::fs::read(&path).ok().as_deref() == Some(&data[..]) {
            exported.already_present.push(name);
        } else {
            write_file(&path, &data)?;
            exported.copied.push(name);
        }
    }
    if std::fs::read(&existing).ok().as_deref() == Some(&manifest_bytes[..]) {
        exported.already_present.push(MANIFEST_NAME.to_owned());
    } else {
        write_file(&existing, &manifest_bytes)?;
        exported.copied.push(MANIFEST_NAME.to_owned());
    }
    Ok(exported)
}

/// Whether `path` exists with exactly this size and SHA-256.
fn file_matches(path: &Path, size: u64, sha256: &str) -> Result<bool, RestoreError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == size => {}
        _ => return Ok(false),
    }
    let mut file = std::fs::File::open(path)
        .map_err(|e| RestoreError::Failed(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| RestoreError::Failed(format!("{}: {e}", path.display())))?;
    Ok(hex::encode(hasher.finalize()).eq_ignore_ascii_case(sha256))
}

/// Downloads `key` to a temporary file, syncs it, re-reads it from the
/// medium to check it, and renames it to `path`. Returns the bytes copied.
async fn copy_verified(
    backup: &Backup,
    key: &str,
    path: &Path,
    size: u64,
    sha256: &str,
) -> Result<u64, RestoreError> {
    let mut reader = backup.store.open(key, 0, None).await?;
    let temp = TempFile::create(path)?;
    let fail = |e: std::io::Error| RestoreError::Failed(format!("{}: {e}", path.display()));
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, &temp.file);
    let mut buffer = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = reader
            .read(&mut buffer)
            .await
            .map_err(|e| StoreError::Read {
                location: backup.store.location(key),
                reason: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
        writer.write_all(&buffer[..n]).map_err(fail)?;
        copied += n as u64;
    }
    writer.flush().map_err(fail)?;
    drop(writer);
    temp.file.sync_all().map_err(fail)?;
    // what counts is what the medium holds, not what passed through memory
    if !file_matches(temp.temp_path(), size, sha256)? {
        return Err(RestoreError::Failed(format!(
            "{} does not match the manifest (size {size}, SHA-256 {sha256}); nothing was replaced: run verify",
            backup.store.location(key)
        )));
    }
    temp.keep(true)?;
    Ok(copied)
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), RestoreError> {
    let temp = TempFile::create(path)?;
    (&temp.file)
        .write_all(data)
        .map_err(|e| RestoreError::Failed(format!("{}: {e}", path.display())))?;
    temp.keep(true)
}
