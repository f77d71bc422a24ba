//! The reading side of OpenPGP: recipients' key ids from public keys,
//! session keys recovered from header packets, and streams decrypted with
//! a keyring or with a session key alone.
//!
//! GPGME's Rust wrapper has no accessor for session keys, so the context
//! flag GPGME documents does it: `export-session-key` makes the decrypt
//! result carry it (read through gpgme-sys). Streams are decrypted by the
//! gpg GPGME names, through its own pipes ([`super::stream`] says
//! why); with a session key alone, in a throwaway home with no keys, the
//! session key handed to gpg through a pipe of its own
//! (`--override-session-key-fd`), so it is on no command line and in no
//! file.
//!
//! Facts checked with gpg 2.2.40 / GPGME 1.18 (and pinned by tests): gpg
//! reports a session key only once it reaches an encrypted data packet;
//! given the PKESK packets alone it exits 0 and reports nothing. So the key
//! holder's side appends [`STUB_DATA_PACKET`] — zeros, no backup data —
//! and reads the key from the (failing) decryption of that stub.
//!
//! Everything here blocks: run it on a blocking thread.

use std::collections::BTreeMap;
use std::ffi::{CStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use gpgme::Context;

use super::packets::STUB_DATA_PACKET;
use super::stream::{self, StreamError};
use super::TempHome;
use crate::secret::Secret;

/// GPGME failed.
#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    #[error("cannot set up gpg: {0}")]
    Setup(gpgme::Error),
    #[error("cannot create a temporary gpg home: {0}")]
    TempHome(std::io::Error),
    #[error("{name}: not an OpenPGP public key ({source})")]
    Import { name: String, source: gpgme::Error },
    #[error("{name}: holds secret key material; only public keys belong there")]
    SecretKey { name: String },
    #[error("no secret key here decrypts the session key ({0})")]
    NoSessionKey(String),
    #[error("gpg decryption failed: {0}")]
    Decrypt(#[from] StreamError),
    /// The value is not shown: a near-miss is most of a secret.
    #[error("a session key of {chars} characters is not ALGO:HEX (e.g. 9:0123…)")]
    BadSessionKey { chars: usize },
}

/// A GPGME OpenPGP context; `home` overrides GNUPGHOME.
fn context(home: Option<&Path>) -> Result<Context, GpgError> {
    super::context(home).map_err(GpgError::Setup)
}

/// A throwaway home for one operation.
fn temp_home() -> Result<TempHome, GpgError> {
    TempHome::new().map_err(GpgError::TempHome)
}

/// The configured recipients: primary fingerprint → key ids (16 upper-case
/// hex digits) of its encryption-capable subkeys.
pub type Recipients = BTreeMap<String, Vec<String>>;

/// Imports `keys` (name, contents) into a throwaway keyring and returns
/// who they are. Problems are per key object.
pub fn recipients(keys: &[(String, Vec<u8>)]) -> Result<(Recipients, Vec<GpgError>), GpgError> {
    let home = temp_home()?;
    let mut context = context(Some(home.path()))?;
    let mut recipients = Recipients::new();
    let mut problems = Vec::new();
    for (name, data) in keys {
        let result = match context.import(&data[..]) {
            Ok(result) => result,
            Err(source) => {
                problems.push(GpgError::Import {
                    name: name.clone(),
                    source,
                });
                continue;
            }
        };
        if result.secret_considered() > 0 {
            problems.push(GpgError::SecretKey { name: name.clone() });
            continue;
        }
        if result.imports().next().is_none() {
            problems.push(GpgError::Import {
                name: name.clone(),
                source: gpgme::Error::NO_DATA,
            });
        }
        for import in result.imports() {
            let Ok(fingerprint) = import.fingerprint() else {
                continue;
            };
            let Ok(key) = context.get_key(fingerprint) else {
                continue;
            };
            let ids = key
                .subkeys()
                .filter(|s| s.can_encrypt())
                .filter_map(|s| s.id().ok().map(str::to_ascii_uppercase))
                .collect();
            recipients.insert(fingerprint.to_ascii_uppercase(), ids);
        }
    }
    Ok((recipients, problems))
}

/// Recovers the session key (`ALGO:HEX`) from `pkesks` (PKESK packets only)
/// with a secret key in `home` (`None`: GNUPGHOME). Only the key packets
/// and [`STUB_DATA_PACKET`] ever reach gpg.
pub fn session_key(home: Option<&Path>, pkesks: &[u8]) -> Result<String, GpgError> {
    let mut context = context(home)?;
    context
        .set_flag("export-session-key", "1")
        .map_err(GpgError::Setup)?;
    let mut input = pkesks.to_vec();
    input.extend_from_slice(&STUB_DATA_PACKET);
    let mut output = Vec::new();
    // The stub is not real ciphertext, so decryption fails after gpg has
    // reported the session key: the error is expected, the key is the result.
    let outcome = context.decrypt(&input[..], &mut output);
    // SAFETY: the context is alive and has just run a decrypt operation, so
    // GPGME's result (or null) is valid until the next operation on it;
    // the string is copied out at once.
    let key = unsafe {
        let result = gpgme_sys::gpgme_op_decrypt_result(context.as_raw());
        if result.is_null() || (*result).session_key.is_null() {
            None
        } else {
            Some(
                CStr::from_ptr((*result).session_key)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    match key {
        Some(key) if check_session_key(&key).is_ok() => Ok(key),
        _ => Err(GpgError::NoSessionKey(match outcome {
            Err(err) => err.to_string(),
            Ok(_) => "gpg reported none".to_owned(),
        })),
    }
}

/// Checks the `ALGO:HEX` form gpg uses.
pub fn check_session_key(key: &str) -> Result<(), GpgError> {
    let ok = key.split_once(':').is_some_and(|(algo, hex)| {
        !algo.is_empty()
            && algo.bytes().all(|b| b.is_ascii_digit())
            && hex.len() >= 16
            && hex.len() % 2 == 0
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(GpgError::BadSessionKey {
            chars: key.chars().count(),
        })
    }
}

/// How to decrypt. Its `Debug` never shows a session key.
#[derive(Debug, Clone)]
pub enum Decryptor {
    /// With a secret key from the keyring (GNUPGHOME, or this home).
    Keyring(Option<PathBuf>),
    /// With a session key alone (`ALGO:HEX`), in a throwaway home holding
    /// no key.
    SessionKey(Secret),
}

/// Decrypts `ciphertext` into `plaintext`, streaming.
pub fn decrypt<R, W>(decryptor: &Decryptor, ciphertext: R, plaintext: W) -> Result<(), GpgError>
where
    R: Read + Send,
    W: Write + Send,
{
    let temp;
    let mut args = Vec::<OsString>::new();
    let mut passed = None;
    let home = match decryptor {
        Decryptor::Keyring(home) => home.clone(),
        Decryptor::SessionKey(key) => {
            // checked to be ALGO:HEX, so it cannot smuggle anything else
            check_session_key(key.expose())?;
            temp = temp_home()?;
            // handed over through a pipe: on no command line, in no file
            let (reader, mut writer) = std::io::pipe().map_err(GpgError::TempHome)?;
            writer
                .write_all(format!("{}\n", key.expose()).as_bytes())
                .map_err(GpgError::TempHome)?;
            drop(writer);
            args.push("--override-session-key-fd".into());
            args.push(reader.as_raw_fd().to_string().into());
            passed = Some(OwnedFd::from(reader));
            Some(temp.to_path_buf())
        }
    };
    let gpg = stream::engine(&context(home.as_deref())?)?;
    if let Some(home) = &home {
        args.extend(["--homedir".into(), home.into()]);
    }
    args.extend(["--output".into(), "-".into(), "--decrypt".into()]);
    stream::run_passing(&gpg, args, passed, ciphertext, plaintext)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openpgp::packets::parse_complete_header;
    use crate::openpgp::packets::tests::Gpg;

    #[test]
    fn the_key_holder_gets_the_session_key_from_the_key_packets_alone() {
        let holder = Gpg::new();
        holder.generate("H <h@x>", "future-default");
        let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let ciphertext = holder.encrypt(&["h@x"], &plaintext, &[]);
        let header = parse_complete_header(&ciphertext).unwrap();
        let pkesks = &ciphertext[..header.data_offset];

        let key = session_key(Some(holder.home.path()), pkesks).unwrap();
        let stock = String::from_utf8(holder.run(
            &[
                "--status-fd",
                "1",
                "--show-session-key",
                "--output",
                "/dev/null",
                "--decrypt",
            ],
            &ciphertext,
        ))
        .unwrap();
        assert!(
            stock.contains(&format!("SESSION_KEY {key}\n")),
            "{stock}\n{key}"
        );

        // and the operator decrypts with it, in a home with no key at all
        let mut out = Vec::new();
        decrypt(
            &Decryptor::SessionKey(key.clone().into()),
            &ciphertext[..],
            &mut out,
        )
        .unwrap();
        assert!(out == plaintext);

        // a wrong session key fails; a home without the secret key has none
        let wrong = format!(
            "{}{}",
            &key[..key.len() - 2],
            if key.ends_with('0') { "1" } else { "0" }
        );
        assert!(decrypt(
            &Decryptor::SessionKey(wrong.into()),
            &ciphertext[..],
            std::io::sink()
        )
        .is_err());
        let stranger = Gpg::new();
        assert!(matches!(
            session_key(Some(stranger.home.path()), pkesks),
            Err(GpgError::NoSessionKey(_))
        ));
    }

    #[test]
    fn recipients_are_read_from_public_keys() {
        let source = Gpg::new();
        let fingerprint = source.generate("A <a@x>", "future-default");
        let public = source.run(&["--armor", "--export", &fingerprint], b"");
        let (recipients, problems) = recipients(&[
            ("a.asc".into(), public),
            ("junk.txt".into(), b"not a key".to_vec()),
        ])
        .unwrap();
        assert_eq!(
            recipients.get(&fingerprint),
            Some(&vec![source.encryption_key_id("a@x")])
        );
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].to_string().starts_with("junk.txt: "),
            "{}",
            problems[0]
        );
        assert!(check_session_key("9:00112233445566778899AABBCCDDEEFF").is_ok());
        let near_miss = "9:00112233445566778899AABBCCDDEEF";
        let err = check_session_key(near_miss).unwrap_err().to_string();
        assert!(!err.contains("0011223344"), "{err}");
        let shown = format!("{:?}", Decryptor::SessionKey(near_miss.into()));
        assert!(!shown.contains("0011223344"), "{shown}");
        for bad in ["", "9", "x:00", "9:zz", "9:0011"] {
            assert!(check_session_key(bad).is_err(), "{bad}");
        }
    }
}
