//! `verify`: proves, without any private key, that a backup is whole and
//! that the configured key holders — and only they — can open it.
//!
//! Every problem is collected and reported against the object it concerns
//! (a scheduler's alert must say which object is damaged, not merely that
//! something is): a missing or unreadable manifest, a missing, truncated or
//! altered object, an object encrypted to other keys than the configured
//! ones, and anything under the backup's prefix the manifest does not list.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::store::{Backup, StoreError};
use super::RestoreError;
use crate::layout::{self, MANIFEST_NAME};
use crate::openpgp::decrypt::{self, Recipients};
use crate::openpgp::packets::{self, Parsed};
use crate::schema::{Manifest, ManifestObject};

/// How many objects are checked at once.
const PARALLEL_OBJECTS: usize = 4;

/// One problem with one object (or the manifest, or the keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub object: String,
    pub problem: String,
}

/// What verify found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Objects that passed every check, by name.
    pub good: Vec<String>,
    pub problems: Vec<Problem>,
    /// Ciphertext bytes read and hashed.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// The configured recipients and what is wrong with their keys.
async fn configured_recipients(
    backup: &Backup,
    problems: &mut Vec<Problem>,
) -> Result<Recipients, RestoreError> {
    let keys = backup.public_keys().await?;
    if keys.is_empty() {
        problems.push(Problem {
            object: backup.store.location(&backup.public_keys_prefix),
            problem: "no public keys: no recipient to check against".to_owned(),
        });
        return Ok(Recipients::new());
    }
    let (recipients, key_problems) =
        tokio::task::spawn_blocking(move || decrypt::recipients(&keys))
            .await
            .map_err(RestoreError::crashed)??;
    problems.extend(key_problems.into_iter().map(|p| Problem {
        object: "public keys".to_owned(),
        problem: p.to_string(),
    }));
    Ok(recipients)
}

/// Verifies `backup`.
pub async fn verify(backup: &Backup) -> Result<VerifyReport, RestoreError> {
    let started = Instant::now();
    let mut report = VerifyReport::default();
    let manifest = match backup.manifest().await {
        Ok(manifest) => manifest,
        Err(err @ (StoreError::NotFound { .. } | StoreError::BadManifest { .. })) => {
            report.problems.push(Problem {
                object: MANIFEST_NAME.to_owned(),
                problem: match err {
                    StoreError::NotFound { .. } => {
                        "missing: the backup is incomplete or not a backup".to_owned()
                    }
                    other => other.to_string(),
                },
            });
            return Ok(report);
        }
        Err(err) => return Err(err.into()),
    };
    let recipients = configured_recipients(backup, &mut report.problems).await?;
    check_manifest(backup, &manifest, &recipients, &mut report.problems);
    check_listing(backup, &manifest, &mut report.problems).await?;

    let mut tasks = tokio::task::JoinSet::new();
    let mut outcomes = BTreeMap::new();
    for (index, object) in manifest.objects.iter().enumerate() {
        if tasks.len() >= PARALLEL_OBJECTS {
            if let Some(done) = tasks.join_next().await {
                let (index, outcome) = done.map_err(RestoreError::crashed)?;
                outcomes.insert(index, outcome);
            }
        }
        let backup = backup.clone();
        let object = object.clone();
        let recipients = recipients.clone();
        tasks.spawn(async move { (index, check_object(&backup, &object, &recipients).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (index, outcome) = done.map_err(RestoreError::crashed)?;
        outcomes.insert(index, outcome);
    }
    for (index, outcome) in outcomes {
        let object = &manifest.objects[index];
        let name = backup
            .name_of(&object.key)
            .unwrap_or(&object.key)
            .to_owned();
        let (bytes, problems) = outcome?;
        report.bytes += bytes;
        if problems.is_empty() {
            report.good.push(name);
        } else {
            report
                .problems
                .extend(problems.into_iter().map(|problem| Problem {
                    object: name.clone(),
                    problem,
                }));
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The manifest against itself and the configured keys.
fn check_manifest(
    backup: &Backup,
    manifest: &Manifest,
    recipients: &Recipients,
    problems: &mut Vec<Problem>,
) {
    let mut problem = |text: String| {
        problems.push(Problem {
            object: MANIFEST_NAME.to_owned(),
            problem: text,
        })
    };
    if manifest.objects.is_empty() {
        problem("lists no object".to_owned());
    }
    let mut seen = BTreeSet::new();
    for object in &manifest.objects {
        if backup.name_of(&object.key).is_none() {
            problem(format!(
                "lists {} outside the backup's prefix {}",
                object.key, backup.prefix
            ));
        }
        if !seen.insert(&object.key) {
            problem(format!("lists {} twice", object.key));
        }
        if object.sha256.len() != 64 || !object.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            problem(format!(
                "{}: sha256 {:?} is not a SHA-256",
                object.key, object.sha256
            ));
        }
    }
    if !recipients.is_empty() {
        let listed: BTreeSet<String> = manifest
            .recipients
            .iter()
            .map(|r| r.to_ascii_uppercase())
            .collect();
        let configured: BTreeSet<String> = recipients.keys().cloned().collect();
        for missing in configured.difference(&listed) {
            problem(format!("does not list configured recipient {missing}"));
        }
        for extra in listed.difference(&configured) {
            problem(format!(
                "lists recipient {extra}, which is not a configured key"
            ));
        }
    }
}

/// Nothing lies under the backup's prefix but the manifest and its objects,
/// and check records (and, in an offline copy, the public keys).
async fn check_listing(
    backup: &Backup,
    manifest: &Manifest,
    problems: &mut Vec<Problem>,
) -> Result<(), RestoreError> {
    let expected: BTreeSet<&str> = manifest.objects.iter().map(|o| o.key.as_str()).collect();
    let manifest_key = backup.manifest_key();
    let keys_in_copy = layout::copy_public_keys(&backup.prefix);
    for key in backup.store.list(&backup.prefix).await? {
        let is_copy_key = matches!(backup.store, super::store::Store::Dir { .. })
            && key.starts_with(&keys_in_copy);
        if key != manifest_key
            && !expected.contains(key.as_str())
            && !is_copy_key
            && !layout::is_check_record(&backup.prefix, &key)
        {
            problems.push(Problem {
                object: backup.name_of(&key).unwrap_or(&key).to_owned(),
                problem: "unexpected: not listed in the manifest".to_owned(),
            });
        }
    }
    Ok(())
}

/// Streams one object, hashing it and reading its recipients; returns the
/// bytes read and its problems.
async fn check_object(
    backup: &Backup,
    object: &ManifestObject,
    recipients: &Recipients,
) -> Result<(u64, Vec<String>), RestoreError> {
    let mut problems = Vec::new();
    let store = &backup.store;
    let mut reader = match store.open(&object.key, 0, None).await {
        Ok(reader) => reader,
        Err(StoreError::NotFound { .. }) => return Ok((0, vec!["missing".to_owned()])),
        Err(err) => return Err(err.into()),
    };
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut header = None;
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buffer)
            .await
            .map_err(|err| StoreError::Read {
                location: store.location(&object.key),
                reason: err.to_string(),
            })?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
        if header.is_none() && head.len() <= packets::MAX_HEADER_BYTES {
            head.extend_from_slice(&buffer[..n]);
            match packets::parse_header(&head) {
                Ok(Parsed::Complete(parsed)) => header = Some(Ok(parsed)),
                Ok(Parsed::NeedBytes(_)) => {}
                Err(err) => header = Some(Err(err)),
            }
        }
    }
    if size != object.size {
        problems.push(if size < object.size {
            format!(
                "truncated: {size} bytes stored, the manifest says {}",
                object.size
            )
        } else {
            format!("{size} bytes stored, the manifest says {}", object.size)
        });
    }
    let sha256 = hex::encode(hasher.finalize());
    if !sha256.eq_ignore_ascii_case(&object.sha256) {
        problems.push(format!(
            "SHA-256 {sha256} does not match the manifest's {}",
            object.sha256
        ));
    }
    let header = header.unwrap_or(Err(packets::PacketError::Truncated(head.len())));
    match header {
        Err(err) => problems.push(format!("not an encrypted object backup-cloud reads: {err}")),
        Ok(header) => check_recipients(&header.pkesks, recipients, &mut problems),
    }
    Ok((size, problems))
}

/// The object's key packets name exactly one encryption subkey of each
/// configured key, and nothing else.
fn check_recipients(
    pkesks: &[packets::Pkesk],
    recipients: &Recipients,
    problems: &mut Vec<String>,
) {
    let owner = |id: &str| {
        recipients
            .iter()
            .find(|(_, ids)| ids.iter().any(|i| i == id))
            .map(|(fingerprint, _)| fingerprint.as_str())
    };
    let mut covered = BTreeMap::new();
    for pkesk in pkesks {
        let id = pkesk.key_id_hex();
        match owner(&id) {
            Some(fingerprint) => *covered.entry(fingerprint).or_insert(0) += 1,
            None => problems.push(format!(
                "encrypted to key {id}, which is not an encryption key of any configured recipient"
            )),
        }
    }
    for fingerprint in recipients.keys() {
        match covered.get(fingerprint.as_str()) {
            None => problems.push(format!(
                "not encrypted to configured recipient {fingerprint}"
            )),
            Some(n) if *n > 1 => problems.push(format!(
                "encrypted {n} times to configured recipient {fingerprint}"
            )),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openpgp::packets::Pkesk;

    fn pkesk(id: &str) -> Pkesk {
        Pkesk {
            raw: Vec::new(),
            version: 3,
            key_id: Some(hex::decode(id).unwrap().try_into().unwrap()),
            algorithm: 18,
        }
    }

    #[test]
    fn recipients_must_match_exactly() {
        let recipients: Recipients = [
            ("AAAA".to_owned(), vec!["1111111111111111".to_owned()]),
            (
                "BBBB".to_owned(),
                vec!["2222222222222222".to_owned(), "3333333333333333".to_owned()],
            ),
        ]
        .into();
        let check = |ids: &[&str]| {
            let mut problems = Vec::new();
            let pkesks: Vec<_> = ids.iter().map(|i| pkesk(i)).collect();
            check_recipients(&pkesks, &recipients, &mut problems);
            problems
        };
        assert!(check(&["1111111111111111", "3333333333333333"]).is_empty());
        let missing = check(&["1111111111111111"]);
        assert_eq!(missing, ["not encrypted to configured recipient BBBB"]);
        let stranger = check(&["1111111111111111", "2222222222222222", "9999999999999999"]);
        assert_eq!(stranger.len(), 1);
        assert!(stranger[0].contains("9999999999999999"), "{stranger:?}");
        let twice = check(&["1111111111111111", "2222222222222222", "3333333333333333"]);
        assert_eq!(twice, ["encrypted 2 times to configured recipient BBBB"]);
    }
}
