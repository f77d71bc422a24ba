//! The recipients: every OpenPGP public key the operator put under
//! `<prefix>/config/public-keys/`, imported into a private keyring and
//! checked before a single byte is dumped.
//!
//! A backup nobody can decrypt is worse than no backup, and a backup that
//! silently leaves out a recipient surprises exactly the person who needs
//! it. So every object must hold at least one key, every key must be able
//! to encrypt today, and any problem fails the job, naming the object.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use gpgme::Key;

use crate::layout;
use crate::openpgp;
use crate::s3::{Bucket, S3Error};

/// The recipients could not be established.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot list public keys under s3://{bucket}/{prefix}: {source}")]
    List {
        bucket: String,
        prefix: String,
        source: S3Error,
    },
    #[error("cannot read public key s3://{bucket}/{key}: {source}")]
    Fetch {
        bucket: String,
        key: String,
        source: S3Error,
    },
    #[error(
        "no public keys under s3://{bucket}/{prefix}: refusing to take a backup nobody could decrypt"
    )]
    NoKeys { bucket: String, prefix: String },
    #[error("unusable public keys: {}", .problems.join("; "))]
    Unusable { problems: Vec<String> },
    #[error("cannot open the private keyring: {0}")]
    Keyring(gpgme::Error),
}

/// One object from the public-keys folder.
#[derive(Debug, Clone)]
pub struct PublicKeyObject {
    /// Its S3 key, which is how problems are reported.
    pub key: String,
    pub data: Bytes,
}

/// Downloads every object under the public-keys prefix. Folder markers
/// (keys ending in `/`) are not keys and are passed over; everything else
/// must be a key.
pub async fn fetch_public_keys(
    bucket: &Bucket,
    prefix: &str,
) -> Result<Vec<PublicKeyObject>, KeyError> {
    let keys_prefix = layout::public_keys(prefix);
    let names: Vec<String> = bucket
        .list(&keys_prefix)
        .await
        .map_err(|source| KeyError::List {
            bucket: bucket.name().to_owned(),
            prefix: keys_prefix.clone(),
            source,
        })?
        .into_iter()
        .filter(|key| !key.ends_with('/'))
        .collect();
    if names.is_empty() {
        return Err(KeyError::NoKeys {
            bucket: bucket.name().to_owned(),
            prefix: keys_prefix,
        });
    }
    let mut objects = Vec::with_capacity(names.len());
    for key in names {
        let data = bucket
            .get(&key)
            .await
            .map_err(|source| KeyError::Fetch {
                bucket: bucket.name().to_owned(),
                key: key.clone(),
                source,
            })?
            .body;
        objects.push(PublicKeyObject { key, data });
    }
    Ok(objects)
}

/// Imports every object into the keyring at `gnupg_home` and returns the
/// primary-key fingerprints (upper-case hex, as gpg prints them) of all
/// keys, sorted and without duplicates. Fails listing every object that is
/// not a public key or holds a key that cannot encrypt. Blocking.
pub fn import_recipients(
    gnupg_home: &Path,
    objects: &[PublicKeyObject],
) -> Result<Vec<String>, KeyError> {
    let mut context = openpgp::context(Some(gnupg_home)).map_err(KeyError::Keyring)?;
    let mut fingerprints = BTreeSet::new();
    let mut problems = Vec::new();
    for object in objects {
        match import_object(&mut context, object) {
            Ok(found) => fingerprints.extend(found),
            Err(problem) => problems.push(format!("{}: {problem}", object.key)),
        }
    }
    if problems.is_empty() {
        Ok(fingerprints.into_iter().collect())
    } else {
        Err(KeyError::Unusable { problems })
    }
}

/// Imports one object and checks each key in it; the error says what is
/// wrong, without the object's name.
fn import_object(
    context: &mut gpgme::Context,
    object: &PublicKeyObject,
) -> Result<Vec<String>, String> {
    let result = context
        .import(&object.data[..])
        .map_err(|err| format!("not an OpenPGP public key ({err})"))?;
    if result.secret_considered() > 0 {
        return Err("contains secret key material; only public keys belong here".to_owned());
    }
    let mut found = Vec::new();
    for import in result.imports() {
        if let Err(err) = import.result() {
            return Err(format!("gpg could not import a key from it ({err})"));
        }
        let fingerprint = import
            .fingerprint()
            .map_err(|_| "gpg reported a key without a fingerprint".to_owned())?
            .to_ascii_uppercase();
        let key = context
            .get_key(fingerprint.as_str())
            .map_err(|err| format!("key {fingerprint} vanished after import ({err})"))?;
        check_can_encrypt(&key).map_err(|problem| format!("key {fingerprint} {problem}"))?;
        found.push(fingerprint);
    }
    if found.is_empty() {
        return Err("contains no OpenPGP public key".to_owned());
    }
    Ok(found)
}

/// Whether `key` can be encrypted to today; the error completes
/// "key FINGERPRINT …".
fn check_can_encrypt(key: &Key) -> Result<(), &'static str> {
    if key.is_revoked() {
        return Err("is revoked");
    }
    if key.is_expired() {
        return Err("has expired");
    }
    if key.is_disabled() {
        return Err("is disabled");
    }
    if key.is_invalid() {
        return Err("is invalid");
    }
    let usable_subkey = key.subkeys().any(|subkey| {
        subkey.can_encrypt()
            && !subkey.is_revoked()
            && !subkey.is_expired()
            && !subkey.is_disabled()
            && !subkey.is_invalid()
    });
    if usable_subkey {
        Ok(())
    } else {
        Err("has no valid encryption subkey")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::encrypt::tests::{gpg, TestKeyring};

    fn object(name: &str, data: Vec<u8>) -> PublicKeyObject {
        PublicKeyObject {
            key: format!("config/public-keys/{name}"),
            data: Bytes::from(data),
        }
    }

    #[test]
    fn good_keys_are_accepted_and_bad_ones_named() {
        let source = TestKeyring::new();
        let good = source.generate(
            "Good <good@example.org>",
            &["future-default", "default", "never"],
        );
        // created three days ago with a one-day lifetime: expired now
        gpg(
            &source.home(),
            &[
                "--faked-system-time",
                &format!(
                    "{}!",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        - 3 * 86_400
                ),
                "--quick-gen-key",
                "Expired <expired@example.org>",
                "future-default",
                "default",
                "1d",
            ],
        );
        let expired = source.fingerprint("Expired <expired@example.org>");
        let signing = source.generate("Signer <signer@example.org>", &["ed25519", "sign", "never"]);

        let agent_home = TestKeyring::new();
        let accepted = import_recipients(
            &agent_home.home(),
            &[object("good.asc", source.export(&good))],
        )
        .unwrap();
        assert_eq!(accepted, vec![good.clone()]);

        let agent_home = TestKeyring::new();
        let err = import_recipients(
            &agent_home.home(),
            &[
                object("good.asc", source.export(&good)),
                object("expired.asc", source.export(&expired)),
                object("signing-only.asc", source.export(&signing)),
                object(
                    "notes.txt",
                    b"these are not the keys you are looking for".to_vec(),
                ),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("good.asc"), "{err}");
        assert!(
            err.contains(&format!(
                "config/public-keys/expired.asc: key {expired} has expired"
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "config/public-keys/signing-only.asc: key {signing} has no valid encryption subkey"
            )),
            "{err}"
        );
        assert!(err.contains("config/public-keys/notes.txt: "), "{err}");
    }

    #[test]
    fn secret_keys_are_refused() {
        let source = TestKeyring::new();
        let fingerprint = source.generate(
            "Secret <s@example.org>",
            &["future-default", "default", "never"],
        );
        let secret = gpg(
            &source.home(),
            &["--armor", "--export-secret-keys", &fingerprint],
        );
        let agent_home = TestKeyring::new();
        let err = import_recipients(&agent_home.home(), &[object("oops.asc", secret)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("oops.asc: contains secret key material"),
            "{err}"
        );
    }
}
