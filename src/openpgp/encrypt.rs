//! Encrypting a stream to the backup's recipients.
//!
//! GPGME opens the keyring, finds every recipient (imported and checked by
//! the agent) and names the gpg engine; the bytes go through that gpg's
//! pipes ([`super::stream`] says why not through GPGME's). Optionally
//! zstd-compresses the plaintext first.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::stream::{self, StreamError};

/// The encryption could not be set up or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("cannot open the private keyring: {0}")]
    Keyring(gpgme::Error),
    #[error("recipient {fingerprint} is not in the private keyring: {source}")]
    MissingRecipient {
        fingerprint: String,
        source: gpgme::Error,
    },
    #[error("gpg encryption: {0}")]
    Stream(#[from] StreamError),
    #[error("cannot set up zstd compression: {0}")]
    Compression(io::Error),
}

/// What the stage encrypts with, resolved once per backup: the gpg GPGME
/// names for the keyring, and the recipients GPGME found in it.
/// Encryptions are to every recipient (trusted because the operator put
/// them there), without gpg's own compression (the agent compresses with
/// zstd first, faster) and unsigned (the instance holds no key worth
/// trusting), as binary OpenPGP.
#[derive(Debug, Clone)]
pub struct Encryptor {
    gpg: PathBuf,
    /// gpg's arguments: the keyring, those choices, the recipients.
    args: Vec<OsString>,
}

impl Encryptor {
    /// Finds every key in `fingerprints` in the keyring at `gnupg_home`.
    /// Blocking (GPGME lists keys through gpg).
    pub fn new(gnupg_home: &Path, fingerprints: &[String]) -> Result<Encryptor, EncryptError> {
        let mut context = super::context(Some(gnupg_home)).map_err(EncryptError::Keyring)?;
        for fingerprint in fingerprints {
            context
                .get_key(fingerprint)
                .map_err(|source| EncryptError::MissingRecipient {
                    fingerprint: fingerprint.clone(),
                    source,
                })?;
        }
        let mut args = vec![
            OsString::from("--homedir"),
            gnupg_home.into(),
            "--no-options".into(),
            "--trust-model".into(),
            "always".into(),
            "--compress-algo".into(),
            "none".into(),
            "--output".into(),
            "-".into(),
            "--encrypt".into(),
        ];
        for fingerprint in fingerprints {
            args.push("--recipient".into());
            args.push(fingerprint.into());
        }
        Ok(Encryptor {
            gpg: stream::engine(&context)?,
            args,
        })
    }

    /// Encrypts everything `plaintext` yields into `ciphertext`. Succeeds
    /// only if the whole plaintext was read, gpg exited cleanly and every
    /// ciphertext byte was written. Blocking: run it on a blocking thread.
    pub fn encrypt<R, W>(&self, plaintext: R, ciphertext: W) -> Result<(), EncryptError>
    where
        R: Read + Send,
        W: Write + Send,
    {
        stream::run(&self.gpg, &self.args, plaintext, ciphertext)?;
        Ok(())
    }

    /// Like [`Encryptor::encrypt`], but compresses the plaintext with zstd
    /// at `level` first (with `workers` extra threads; 0 compresses on this
    /// one), unless `level` is 0, storing what does not compress
    /// ([`crate::compression`]). For dumps the tool leaves uncompressed:
    /// SQL text shrinks several times, so less is encrypted, uploaded and
    /// stored.
    pub fn encrypt_maybe_compressed<R, W>(
        &self,
        plaintext: R,
        level: i32,
        workers: u32,
        ciphertext: W,
    ) -> Result<(), EncryptError>
    where
        R: Read + Send,
        W: Write + Send,
    {
        if level == 0 {
            return self.encrypt(plaintext, ciphertext);
        }
        let compressed = crate::compression::Compressor::new(plaintext, level, workers)
            .map_err(EncryptError::Compression)?;
        self.encrypt(compressed, ciphertext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openpgp::TempHome;

    #[test]
    fn an_unknown_recipient_is_named() {
        let keyring = TempHome::new().unwrap();
        let missing = "0123456789ABCDEF0123456789ABCDEF01234567".to_owned();
        let err = Encryptor::new(keyring.path(), std::slice::from_ref(&missing)).unwrap_err();
        assert!(err.to_string().contains(&missing), "{err}");
    }
}
