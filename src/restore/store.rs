//! Where a backup is read from: S3, or an offline copy in a directory that
//! `export` made. Everything in `restore` reads through [`Store`], so
//! `verify --dir` runs the very same checks as `verify s3://…`, with no
//! network at all.
//!
//! Keys are always the backup's S3 keys; a directory maps the backup's
//! prefix to its root, and the public keys to `public-keys/`.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client as S3Client;
use tokio::io::AsyncReadExt;

use crate::layout::{self, MANIFEST_NAME};
use crate::s3::{Bucket, S3Error};
use crate::schema::{parse_document, Manifest};

/// Reading a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location} does not exist")]
    NotFound { location: String },
    #[error("cannot read {location}: {reason}")]
    Read { location: String, reason: String },
    #[error("cannot read {location}: {source}")]
    S3Read { location: String, source: S3Error },
    #[error("cannot list {location}: {reason}")]
    List { location: String, reason: String },
    #[error("cannot list {location}: {source}")]
    S3List { location: String, source: S3Error },
    #[error("{location} is not a manifest this version reads: {reason}")]
    BadManifest { location: String, reason: String },
    #[error("{0} is not a backup address: expected s3://BUCKET/PREFIX/backup/JOB/TIMESTAMP/ or s3://BUCKET/…/manifest.json")]
    BadAddress(String),
}

/// A backup's storage.
#[derive(Debug, Clone)]
pub enum Store {
    S3(Bucket),
    /// An offline copy: `root` holds what lies under `prefix` in S3.
    Dir {
        root: PathBuf,
        prefix: String,
    },
}

pub use crate::s3::ObjectReader;

impl Store {
    /// How a key is named in messages.
    pub fn location(&self, key: &str) -> String {
        match self {
            Store::S3(bucket) => bucket.location(key),
            Store::Dir { .. } => match self.path(key) {
                Some(path) => path.display().to_string(),
                None => format!("{key} (outside the copied backup)"),
            },
        }
    }

    /// The file holding `key` in an offline copy.
    fn path(&self, key: &str) -> Option<PathBuf> {
        match self {
            Store::S3(_) => None,
            Store::Dir { root, prefix } => {
                let name = key.strip_prefix(prefix.as_str())?;
                if name.is_empty() || name.split('/').any(|s| s.is_empty() || s == "..") {
                    return None;
                }
                Some(root.join(name))
            }
        }
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            location: self.location(key),
        }
    }

    /// A failed S3 read: a finding when the object is missing.
    fn s3_read_error(&self, key: &str, source: S3Error) -> StoreError {
        if source.is_not_found() {
            self.not_found(key)
        } else {
            StoreError::S3Read {
                location: self.location(key),
                source,
            }
        }
    }

    /// Size of an object, `None` if it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Store::S3(bucket) => bucket
                .size(key)
                .await
                .map_err(|source| self.s3_read_error(key, source)),
            Store::Dir { .. } => {
                let Some(path) = self.path(key) else {
                    return Ok(None);
                };
                match tokio::fs::metadata(&path).await {
                    Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
                    Ok(_) => Ok(None),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(err) => Err(StoreError::Read {
                        location: self.location(key),
                        reason: err.to_string(),
                    }),
                }
            }
        }
    }

    /// Streams an object from byte `start`, `len` bytes or to its end.
    pub async fn open(
        &self,
        key: &str,
        start: u64,
        len: Option<u64>,
    ) -> Result<ObjectReader, StoreError> {
        match self {
            Store::S3(bucket) => bucket
                .read(key, start, len)
                .await
                .map_err(|source| self.s3_read_error(key, source)),
            Store::Dir { .. } => {
                use tokio::io::AsyncSeekExt;
                let path = self.path(key).ok_or_else(|| self.not_found(key))?;
                let mut file = tokio::fs::File::open(&path).await.map_err(|err| {
                    if err.kind() == std::io::ErrorKind::NotFound {
                        self.not_found(key)
                    } else {
                        StoreError::Read {
                            location: self.location(key),
                            reason: err.to_string(),
                        }
                    }
                })?;
                if start > 0 {
                    file.seek(std::io::SeekFrom::Start(start))
                        .await
                        .map_err(|err| StoreError::Read {
                            location: self.location(key),
                            reason: err.to_string(),
                        })?;
                }
                Ok(match len {
                    Some(len) => Box::new(file.take(len)),
                    None => Box::new(file),
                })
            }
        }
    }

    /// Reads a whole small object.
    pub async fn read_all(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.read_from(key, 0, None).await
    }

    /// Reads bytes `start..start+len` (fewer at the end of the object).
    pub async fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.read_from(key, start, Some(len)).await
    }

    async fn read_from(
        &self,
        key: &str,
        start: u64,
        len: Option<u64>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut reader = self.open(key, start, len).await?;
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .await
            .map_err(|err| StoreError::Read {
                location: self.location(key),
                reason: err.to_string(),
            })?;
        Ok(data)
    }

    /// Every key under `prefix`, with folder markers, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = match self {
            Store::S3(bucket) => {
                bucket
                    .list(prefix)
                    .await
                    .map_err(|source| StoreError::S3List {
                        location: self.location(prefix),
                        source,
                    })?
            }
            Store::Dir { root, prefix: own } => {
                let mut keys = Vec::new();
                list_dir(root, root, &mut keys).map_err(|err| StoreError::List {
                    location: root.display().to_string(),
                    reason: err.to_string(),
                })?;
                keys.into_iter()
                    .map(|name| format!("{own}{name}"))
                    .filter(|key| key.starts_with(prefix))
                    .collect()
            }
        };
        keys.sort();
        Ok(keys)
    }
}

/// Relative paths of every file under `dir`, `/`-separated.
fn list_dir(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list_dir(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// One backup: its storage, its prefix and where its public keys are.
#[derive(Debug, Clone)]
pub struct Backup {
    pub store: Store,
    /// `<prefix>/backup/<job>/<timestamp>/`
    pub prefix: String,
    /// Where the recipients' public keys lie (in S3, or the copy's folder).
    pub public_keys_prefix: String,
}

impl Backup {
    /// The backup at `address` (`s3://bucket/…/manifest.json` or
    /// `s3://bucket/<prefix>/backup/<job>/<timestamp>/`). `storage_prefix`
    /// is the configured prefix (`None`: taken from the address).
    pub fn in_s3(
        s3: S3Client,
        address: &str,
        storage_prefix: Option<&str>,
    ) -> Result<Backup, StoreError> {
        let bad = || StoreError::BadAddress(address.to_owned());
        let rest = address.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
        let prefix = match key.strip_suffix(MANIFEST_NAME) {
            Some(prefix) => prefix.to_owned(),
            None if key.ends_with('/') => key.to_owned(),
            None => format!("{key}/"),
        };
        let parsed = layout::parse_backup(&prefix).filter(|_| !bucket.is_empty());
        let storage = parsed.ok_or_else(bad)?.prefix;
        let storage = storage_prefix.unwrap_or(&storage);
        Ok(Backup {
            store: Store::S3(Bucket::new(s3, bucket)),
            prefix,
            public_keys_prefix: layout::public_keys(storage),
        })
    }

    /// An offline copy in `dir` made by `export`; its manifest tells which
    /// backup it is.
    pub async fn in_dir(dir: &Path) -> Result<(Backup, Manifest), StoreError> {
        let location = dir.join(MANIFEST_NAME).display().to_string();
        let data = tokio::fs::read(dir.join(MANIFEST_NAME))
            .await
            .map_err(|err| {
                if err.kind() == std::io::ErrorKind::NotFound {
                    StoreError::NotFound {
                        location: location.clone(),
                    }
                } else {
                    StoreError::Read {
                        location: location.clone(),
                        reason: err.to_string(),
                    }
                }
            })?;
        let manifest = parse_manifest(&location, &data)?;
        let prefix = manifest
            .objects
            .first()
            .and_then(|o| layout::backup_of_object(&manifest.job_name, &o.key))
            .map(str::to_owned)
            .ok_or_else(|| StoreError::BadManifest {
                location: location.clone(),
                reason: format!(
                    "its objects do not lie under backup/{}/TIMESTAMP/",
                    manifest.job_name
                ),
            })?;
        let backup = Backup {
            store: Store::Dir {
                root: dir.to_owned(),
                prefix: prefix.clone(),
            },
            public_keys_prefix: layout::copy_public_keys(&prefix),
            prefix,
        };
        Ok((backup, manifest))
    }

    pub fn manifest_key(&self) -> String {
        layout::manifest(&self.prefix)
    }

    /// The name of `key` inside the backup (the file name in a copy).
    pub fn name_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())
            .filter(|n| !n.is_empty() && !n.split('/').any(|s| s.is_empty() || s == ".."))
    }

    /// Reads and parses the manifest.
    pub async fn manifest(&self) -> Result<Manifest, StoreError> {
        let key = self.manifest_key();
        let data = self.store.read_all(&key).await?;
        parse_manifest(&self.store.location(&key), &data)
    }

    /// The recipients' public keys: (key, contents), folder markers skipped.
    pub async fn public_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut keys = Vec::new();
        for key in self.store.list(&self.public_keys_prefix).await? {
            if key.ends_with('/') {
                continue;
            }
            let data = self.store.read_all(&key).await?;
            keys.push((key, data));
        }
        Ok(keys)
    }
}

/// Parses a manifest, refusing versions this build does not know.
pub fn parse_manifest(location: &str, data: &[u8]) -> Result<Manifest, StoreError> {
    parse_document(data).map_err(|err| StoreError::BadManifest {
        location: location.to_owned(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> S3Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        S3Client::from_conf(config)
    }

    #[test]
    fn addresses_name_the_backup_prefix_and_the_keys() {
        for (address, prefix, keys) in [
            (
                "s3://b/prod/db/backup/orders/20260101T000000Z/manifest.json",
                "prod/db/backup/orders/20260101T000000Z/",
                "prod/db/config/public-keys/",
            ),
            (
                "s3://b/prod/backup/orders/20260101T000000Z/",
                "prod/backup/orders/20260101T000000Z/",
                "prod/config/public-keys/",
            ),
            (
                "s3://b/backup/orders/20260101T000000Z",
                "backup/orders/20260101T000000Z/",
                "config/public-keys/",
            ),
        ] {
            let backup = Backup::in_s3(client(), address, None).unwrap();
            assert_eq!(backup.prefix, prefix, "{address}");
            assert_eq!(backup.public_keys_prefix, keys, "{address}");
        }
        let configured = Backup::in_s3(client(), "s3://b/x/backup/j/t/", Some("y")).unwrap();
        assert_eq!(configured.public_keys_prefix, "y/config/public-keys/");
        for bad in [
            "b/backup/j/t/",
            "s3://b/",
            "s3://b/nothing/here/",
            "s3://b/prod/notbackup/j/t/",
        ] {
            assert!(Backup::in_s3(client(), bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_copy_never_reaches_outside_its_folder() {
        let store = Store::Dir {
            root: "/media/copy".into(),
            prefix: "p/backup/j/t/".into(),
        };
        assert_eq!(
            store.path("p/backup/j/t/a.gpg"),
            Some(PathBuf::from("/media/copy/a.gpg"))
        );
        assert_eq!(store.path("p/backup/j/t/../../x"), None);
        assert_eq!(store.path("q/elsewhere"), None);
        assert_eq!(store.path("p/backup/j/t/"), None);
    }
}
