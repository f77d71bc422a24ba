//! Just enough of the OpenPGP packet grammar (RFC 4880 / RFC 9580) to read
//! the head of an encrypted object: the public-key encrypted session key
//! packets (PKESK) that say who can decrypt it, up to the first byte of the
//! encrypted data packet.
//!
//! `verify` reads the recipients from here without any key, and `headers`
//! hands key holders exactly these packets. Both must find them by parsing,
//! never by cutting a fixed number of bytes: a future gpg with bigger
//! headers (post-quantum keys, more recipients) must neither break the cut
//! nor leak ciphertext through it. So the parser is strict: old and new
//! packet framing, every length encoding, partial lengths only where the
//! standard allows them, and anything other than PKESK packets before the
//! encrypted data packet is refused.

/// OpenPGP packet tags this module cares about.
const TAG_PKESK: u8 = 1;
/// Symmetrically encrypted integrity protected data (gpg's default).
const TAG_SEIPD: u8 = 18;
/// GnuPG's AEAD encrypted data packet.
const TAG_AEAD: u8 = 20;

/// The head of an object may not exceed this: thousands of PKESKs.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// The head of an encrypted object is not what backup-cloud writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("byte {offset} is not an OpenPGP packet header (0x{byte:02x})")]
    NotAPacket { offset: usize, byte: u8 },
    #[error("unexpected {what} (packet tag {tag}) at byte {offset} before the encrypted data")]
    Unexpected {
        offset: usize,
        tag: u8,
        what: &'static str,
    },
    #[error("packet at byte {offset} uses a partial or indeterminate length, which a key packet may not")]
    BadLength { offset: usize },
    #[error("session key packet at byte {offset} is malformed: {reason}")]
    MalformedPkesk { offset: usize, reason: &'static str },
    #[error("no session key packet before the encrypted data")]
    NoRecipients,
    #[error("the object ends after {0} bytes, before its encrypted data")]
    Truncated(usize),
    #[error("more than {MAX_HEADER_BYTES} bytes before the encrypted data")]
    TooLong,
}

/// One public-key encrypted session key packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkesk {
    /// The packet exactly as it appears in the object, header included.
    pub raw: Vec<u8>,
    pub version: u8,
    /// The recipient's (encryption sub)key id; `None` for an anonymous
    /// ("wildcard") recipient.
    pub key_id: Option<[u8; 8]>,
    pub algorithm: u8,
}

impl Pkesk {
    /// The key id as gpg prints it: 16 upper-case hex digits, or
    /// `anonymous`.
    pub fn key_id_hex(&self) -> String {
        match self.key_id {
            Some(id) => hex::encode_upper(id),
            None => "anonymous".to_owned(),
        }
    }
}

/// The parsed head of an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub pkesks: Vec<Pkesk>,
    /// Offset of the encrypted data packet's first byte.
    pub data_offset: usize,
}

/// What [`parse_header`] made of a prefix of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Complete(Header),
    /// The head goes on past the bytes given: at least this many are needed.
    NeedBytes(usize),
}

/// A packet's framing.
struct Framing {
    tag: u8,
    header_len: usize,
    /// `None`: partial or indeterminate length.
    body_len: Option<usize>,
}

/// Reads the framing of the packet at `offset`; `Ok(None)` if `buf` ends
/// inside its header.
fn framing(buf: &[u8], offset: usize) -> Result<Option<Framing>, PacketError> {
    let Some(&ctb) = buf.get(offset) else {
        return Ok(None);
    };
    if ctb & 0x80 == 0 {
        return Err(PacketError::NotAPacket { offset, byte: ctb });
    }
    let rest = &buf[offset + 1..];
    if ctb & 0x40 == 0 {
        // old format: tag in bits 5..2, length type in bits 1..0
        let tag = (ctb >> 2) & 0x0f;
        let (header_len, body_len) = match ctb & 0x03 {
            0 => match rest.first() {
                Some(&b) => (2, Some(usize::from(b))),
                None => return Ok(None),
            },
            1 => match rest.get(..2) {
                Some(b) => (3, Some(usize::from(u16::from_be_bytes([b[0], b[1]])))),
                None => return Ok(None),
            },
            2 => match rest.get(..4) {
                Some(b) => (
                    5,
                    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
                ),
                None => return Ok(None),
            },
            _ => (1, None),
        };
        return Ok(Some(Framing {
            tag,
            header_len,
            body_len,
        }));
    }
    let tag = ctb & 0x3f;
    let Some(&first) = rest.first() else {
        return Ok(None);
    };
    let (header_len, body_len) = match first {
        0..=191 => (2, Some(usize::from(first))),
        192..=223 => match rest.get(1) {
            Some(&second) => (
                3,
                Some(((usize::from(first) - 192) << 8) + usize::from(second) + 192),
            ),
            None => return Ok(None),
        },
        255 => match rest.get(1..5) {
            Some(b) => (
                6,
                Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
            ),
            None => return Ok(None),
        },
        _ => (2, None), // 224..=254: partial body length
    };
    Ok(Some(Framing {
        tag,
        header_len,
        body_len,
    }))
}

fn tag_name(tag: u8) -> &'static str {
    match tag {
        2 => "signature packet",
        3 => "symmetric-key encrypted session key (a passphrase)",
        4 => "one-pass signature packet",
        5 | 7 => "secret key packet",
        6 | 14 => "public key packet",
        8 => "compressed data packet",
        9 => "legacy encrypted data packet without integrity protection",
        10 => "marker packet",
        11 => "literal (unencrypted) data packet",
        12 => "trust packet",
        13 => "user id packet",
        17 => "user attribute packet",
        19 => "modification detection code packet",
        _ => "packet",
    }
}

/// Parses the head of an encrypted object from `buf`, a prefix of it.
/// Returns the PKESK packets and where the encrypted data starts, or how
/// many bytes are needed to get there.
pub fn parse_header(buf: &[u8]) -> Result<Parsed, PacketError> {
    let mut offset = 0;
    let mut pkesks = Vec::new();
    loop {
        if offset > MAX_HEADER_BYTES {
            return Err(PacketError::TooLong);
        }
        let Some(framing) = framing(buf, offset)? else {
            return Ok(Parsed::NeedBytes(offset + 6));
        };
        match framing.tag {
            TAG_SEIPD | TAG_AEAD => {
                if pkesks.is_empty() {
                    return Err(PacketError::NoRecipients);
                }
                return Ok(Parsed::Complete(Header {
                    pkesks,
                    data_offset: offset,
                }));
            }
            TAG_PKESK => {
                let body_len = framing.body_len.ok_or(PacketError::BadLength { offset })?;
                let end = offset + framing.header_len + body_len;
                if end > MAX_HEADER_BYTES {
                    return Err(PacketError::TooLong);
                }
                let Some(packet) = buf.get(offset..end) else {
                    return Ok(Parsed::NeedBytes(end));
                };
                pkesks.push(pkesk(offset, packet, framing.header_len)?);
                offset = end;
            }
            tag => {
                return Err(PacketError::Unexpected {
                    offset,
                    tag,
                    what: tag_name(tag),
                })
            }
        }
    }
}

/// Like [`parse_header`] on a complete input: running out of bytes is an
/// error.
pub fn parse_complete_header(buf: &[u8]) -> Result<Header, PacketError> {
    match parse_header(buf)? {
        Parsed::Complete(header) => Ok(header),
        Parsed::NeedBytes(_) => Err(PacketError::Truncated(buf.len())),
    }
}

/// Parses a sequence of PKESK packets and nothing else (a header as
/// `headers` stores it).
pub fn parse_pkesk_sequence(buf: &[u8]) -> Result<Vec<Pkesk>, PacketError> {
    let mut offset = 0;
    let mut pkesks = Vec::new();
    while offset < buf.len() {
        let framing = framing(buf, offset)?.ok_or(PacketError::Truncated(buf.len()))?;
        if framing.tag != TAG_PKESK {
            return Err(PacketError::Unexpected {
                offset,
                tag: framing.tag,
                what: tag_name(framing.tag),
            });
        }
        let body_len = framing.body_len.ok_or(PacketError::BadLength { offset })?;
        let end = offset + framing.header_len + body_len;
        let packet = buf
            .get(offset..end)
            .ok_or(PacketError::Truncated(buf.len()))?;
        pkesks.push(pkesk(offset, packet, framing.header_len)?);
        offset = end;
    }
    if pkesks.is_empty() {
        return Err(PacketError::NoRecipients);
    }
    Ok(pkesks)
}

/// Reads the fields of a PKESK packet (`packet` includes its header).
fn pkesk(offset: usize, packet: &[u8], header_len: usize) -> Result<Pkesk, PacketError> {
    let malformed = |reason| PacketError::MalformedPkesk { offset, reason };
    let body = &packet[header_len..];
    let version = *body.first().ok_or_else(|| malformed("empty"))?;
    let (key_id, algorithm) = match version {
        3 => {
            let id: [u8; 8] = body
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| malformed("too short"))?;
            let algorithm = *body.get(9).ok_or_else(|| malformed("too short"))?;
            (if id == [0; 8] { None } else { Some(id) }, algorithm)
        }
        6 => {
            // RFC 9580: a length octet, then key version + fingerprint
            let count = usize::from(*body.get(1).ok_or_else(|| malformed("too short"))?);
            let recipient = body
                .get(2..2 + count)
                .ok_or_else(|| malformed("too short"))?;
            let algorithm = *body.get(2 + count).ok_or_else(|| malformed("too short"))?;
            let key_id = match recipient {
                [] => None,
                [4, fingerprint @ ..] if fingerprint.len() == 20 => {
                    fingerprint[12..].try_into().ok()
                }
                [6, fingerprint @ ..] if fingerprint.len() == 32 => {
                    fingerprint[..8].try_into().ok()
                }
                _ => return Err(malformed("unknown recipient key version")),
            };
            (key_id, algorithm)
        }
        _ => return Err(malformed("unknown version")),
    };
    Ok(Pkesk {
        raw: packet.to_vec(),
        version,
        key_id,
        algorithm,
    })
}

/// A stand-in encrypted data packet holding no data: a version-1 SEIPD
/// packet of zeros. gpg reports the session key only once it reaches an
/// encrypted data packet (and needs a cipher block plus two bytes of it),
/// so key holders append this to the PKESK packets instead of any real
/// ciphertext. It decrypts to garbage and always fails, after the session
/// key has been reported.
pub const STUB_DATA_PACKET: [u8; 25] = {
    let mut stub = [0u8; 25];
    stub[0] = 0xc0 | TAG_SEIPD; // new format, tag 18
    stub[1] = 23; // one-octet length
    stub[2] = 1; // SEIPD version 1; the other 22 bytes stay zero
    stub
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// A gpg home with keys, for producing real inputs.
    pub(crate) struct Gpg {
        pub home: tempfile::TempDir,
    }

    impl Gpg {
        pub fn new() -> Gpg {
            Gpg {
                home: tempfile::Builder::new().prefix("gpgp").tempdir().unwrap(),
            }
        }

        pub fn run(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
            run_gpg(self.home.path(), args, stdin)
        }

        /// Generates a key and returns its fingerprint.
        pub fn generate(&self, uid: &str, algo: &str) -> String {
            let usage = if algo.starts_with("rsa") {
                "cert,sign,encr"
            } else {
                "default"
            };
            self.run(
                &[
                    "--passphrase",
                    "",
                    "--quick-gen-key",
                    uid,
                    algo,
                    usage,
                    "never",
                ],
                b"",
            );
            let listing =
                String::from_utf8(self.run(&["--with-colons", "--list-keys", uid], b"")).unwrap();
            listing
                .lines()
                .find(|l| l.starts_with("fpr:"))
                .and_then(|l| l.split(':').nth(9))
                .unwrap()
                .to_owned()
        }

        /// Key ids of the encryption subkeys of `uid`.
        pub fn encryption_key_id(&self, uid: &str) -> String {
            let listing =
                String::from_utf8(self.run(&["--with-colons", "--list-keys", uid], b"")).unwrap();
            listing
                .lines()
                .find(|l| l.starts_with("sub:") && l.split(':').nth(11).unwrap().contains('e'))
                .and_then(|l| l.split(':').nth(4))
                .unwrap()
                .to_owned()
        }

        /// Encrypts `plaintext` from a pipe (streamed, as GPGME does).
        pub fn encrypt(&self, recipients: &[&str], plaintext: &[u8], extra: &[&str]) -> Vec<u8> {
            let mut args = vec!["--trust-model", "always", "--compress-algo", "none"];
            for r in recipients {
                args.extend(["--recipient", r]);
            }
            args.extend_from_slice(extra);
            args.push("--encrypt");
            self.run(&args, plaintext)
        }
    }

    impl Drop for Gpg {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(self.home.path())
                .args(["--kill", "all"])
                .status();
        }
    }

    pub(crate) fn run_gpg(home: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(
            output.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn complete(buf: &[u8]) -> Header {
        parse_complete_header(buf).unwrap()
    }

    /// Re-frames an old-format packet in the new format with a 2-octet
    /// (192..8383) or 5-octet length.
    fn reframe_new(packet: &[u8], five_octet: bool) -> Vec<u8> {
        let framing = framing(packet, 0).unwrap().unwrap();
        let body = &packet[framing.header_len..];
        let mut out = vec![0xc0 | framing.tag];
        if five_octet {
            out.push(255);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        } else {
            assert!(body.len() < 192);
            out.push(body.len() as u8);
        }
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn gpg_output_from_a_pipe_and_from_a_file_parses() {
        let gpg = Gpg::new();
        gpg.generate("A <a@x>", "future-default");
        gpg.generate("B <b@x>", "future-default");
        let plaintext = vec![42u8; 100_000];
        // from a pipe: new-format SEIPD with partial lengths
        let piped = gpg.encrypt(&["a@x", "b@x"], &plaintext, &[]);
        let header = complete(&piped);
        assert_eq!(header.pkesks.len(), 2);
        let mut ids: Vec<_> = header.pkesks.iter().map(Pkesk::key_id_hex).collect();
        ids.sort();
        let mut expected = vec![gpg.encryption_key_id("a@x"), gpg.encryption_key_id("b@x")];
        expected.sort();
        assert_eq!(ids, expected);
        let data_ctb = piped[header.data_offset];
        assert_eq!(data_ctb, 0xd2, "new-format SEIPD");
        assert!(
            (224..255).contains(&piped[header.data_offset + 1]),
            "partial length"
        );
        let concatenated: Vec<u8> = header.pkesks.iter().flat_map(|p| p.raw.clone()).collect();
        assert_eq!(concatenated, piped[..header.data_offset]);

        // from a file: a definite length
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, &plaintext).unwrap();
        let output = dir.path().join("out.gpg");
        gpg.run(
            &[
                "--trust-model",
                "always",
                "-r",
                "a@x",
                "-o",
                output.to_str().unwrap(),
                "-e",
                input.to_str().unwrap(),
            ],
            b"",
        );
        let filed = std::fs::read(&output).unwrap();
        let header = complete(&filed);
        assert_eq!(header.pkesks.len(), 1);
        assert_eq!(header.pkesks[0].key_id_hex(), gpg.encryption_key_id("a@x"));
    }

    #[test]
    fn an_rsa_key_needs_a_two_octet_old_length_and_bytes_are_asked_for() {
        let gpg = Gpg::new();
        gpg.generate("R <r@x>", "rsa3072");
        let ciphertext = gpg.encrypt(&["r@x"], b"hello", &[]);
        assert_eq!(ciphertext[0], 0x85, "old format, tag 1, two-octet length");
        let header = complete(&ciphertext);
        assert_eq!(header.pkesks[0].algorithm, 1);
        assert!(header.data_offset > 384);
        // every prefix short of the data packet asks for more, never panics
        for cut in 0..header.data_offset + 2 {
            match parse_header(&ciphertext[..cut]).unwrap() {
                Parsed::NeedBytes(n) => assert!(n > cut, "{cut} → {n}"),
                Parsed::Complete(h) => assert_eq!(h, header),
            }
        }
        assert_eq!(
            parse_complete_header(&ciphertext[..100]),
            Err(PacketError::Truncated(100))
        );
    }

    #[test]
    fn new_format_key_packets_parse_the_same() {
        let gpg = Gpg::new();
        gpg.generate("A <a@x>", "future-default");
        let ciphertext = gpg.encrypt(&["a@x"], b"x", &[]);
        let header = complete(&ciphertext);
        let rest = &ciphertext[header.data_offset..];
        for five in [false, true] {
            let mut reframed = reframe_new(&header.pkesks[0].raw, five);
            reframed.extend_from_slice(rest);
            let again = complete(&reframed);
            assert_eq!(again.pkesks[0].key_id, header.pkesks[0].key_id);
            assert_eq!(again.pkesks[0].raw, reframed[..again.data_offset]);
        }
    }

    #[test]
    fn anything_but_key_packets_before_the_data_is_refused() {
        let gpg = Gpg::new();
        gpg.generate("A <a@x>", "future-default");
        // a passphrase-encrypted message: SKESK
        let symmetric = gpg.run(
            &[
                "--passphrase",
                "pw",
                "--symmetric",
                "--compress-algo",
                "none",
            ],
            b"x",
        );
        assert!(matches!(
            parse_header(&symmetric),
            Err(PacketError::Unexpected { tag: 3, .. })
        ));
        // plaintext in the clear: a literal data packet
        let stored = gpg.run(&["--store", "--compress-algo", "none"], b"secret");
        assert!(matches!(
            parse_header(&stored),
            Err(PacketError::Unexpected { tag: 11, .. })
        ));
        let compressed = gpg.run(&["--store"], b"secret");
        assert!(matches!(
            parse_header(&compressed),
            Err(PacketError::Unexpected { tag: 8, .. })
        ));
        // a signed and encrypted message with compression is fine outside
        // (the signature is inside the encrypted data) ...
        let signed = gpg.run(&["-r", "a@x", "--trust-model", "always", "-s", "-e"], b"x");
        assert_eq!(complete(&signed).pkesks.len(), 1);
        // ... but a clear signature in front is not
        let detached = gpg.run(&["-s"], b"x");
        assert!(parse_header(&detached).is_err());
        // a key packet with a partial length
        let encrypted = gpg.encrypt(&["a@x"], b"x", &[]);
        let header = complete(&encrypted);
        let mut partial = vec![0xc1, 0xe1];
        partial.extend_from_slice(&header.pkesks[0].raw[2..]);
        assert_eq!(
            parse_header(&partial),
            Err(PacketError::BadLength { offset: 0 })
        );
        // the encrypted data with no key packet in front
        assert_eq!(
            parse_header(&encrypted[header.data_offset..]),
            Err(PacketError::NoRecipients)
        );
        // garbage, armour and an empty input
        assert!(matches!(
            parse_header(b"-----BEGIN PGP MESSAGE-----"),
            Err(PacketError::NotAPacket { offset: 0, .. })
        ));
        assert_eq!(parse_header(b""), Ok(Parsed::NeedBytes(6)));
        let mut noise = header.pkesks[0].raw.clone();
        noise.extend_from_slice(&[0x13, 0x37, 0x00]);
        assert!(matches!(
            parse_header(&noise),
            Err(PacketError::NotAPacket { .. })
        ));
        // an absurd length never makes it read past the cap
        let mut huge = vec![0xc1, 0xff];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_header(&huge), Err(PacketError::TooLong));
    }

    #[test]
    fn a_pkesk_sequence_holds_nothing_else() {
        let gpg = Gpg::new();
        gpg.generate("A <a@x>", "future-default");
        let encrypted = gpg.encrypt(&["a@x"], b"data", &[]);
        let header = complete(&encrypted);
        let raw = header.pkesks[0].raw.clone();
        assert_eq!(parse_pkesk_sequence(&raw).unwrap().len(), 1);
        assert!(parse_pkesk_sequence(&encrypted).is_err());
        assert!(parse_pkesk_sequence(&raw[..raw.len() - 1]).is_err());
        assert_eq!(parse_pkesk_sequence(b""), Err(PacketError::NoRecipients));
    }

    #[test]
    fn stock_gpg_reports_the_session_key_only_with_a_data_packet() {
        let gpg = Gpg::new();
        gpg.generate("A <a@x>", "future-default");
        let encrypted = gpg.encrypt(&["a@x"], b"the backup", &[]);
        let header = complete(&encrypted);
        let pkesk = &encrypted[..header.data_offset];
        let show = |input: &[u8]| {
            let mut child = Command::new("gpg")
                .arg("--homedir")
                .arg(gpg.home.path())
                .args(["--batch", "--status-fd", "1", "--show-session-key"])
                .args(["--output", "/dev/null", "--decrypt"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
            let out = child.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(
            !show(pkesk).contains("SESSION_KEY"),
            "gpg changed: PKESK alone now suffices"
        );
        let mut with_stub = pkesk.to_vec();
        with_stub.extend_from_slice(&STUB_DATA_PACKET);
        let status = show(&with_stub);
        assert!(status.contains("[GNUPG:] SESSION_KEY 9:"), "{status}");
        assert!(status.contains("DECRYPTION_FAILED"), "{status}");
        // No PLAINTEXT check: the stub's zeros decrypt under the (random)
        // session key to random bytes, which now and then parse as a
        // literal-data header, so gpg may report a PLAINTEXT of garbage
        // before the integrity check fails. It carries no backup data.
        assert_eq!(
            complete(&with_stub).pkesks,
            header.pkesks,
            "the stub parses as a data packet"
        );
    }

    /// Property tests: the parser never panics, reads back every header
    /// it could be given in any framing, and never reads past the start
    /// of the encrypted data.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// One PKESK packet: version 3 or 6, a key id (zeros: anonymous)
        /// and an algorithm, then key material.
        fn pkesk_body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                (
                    any::<[u8; 8]>(),
                    any::<u8>(),
                    prop::collection::vec(any::<u8>(), 0..300)
                )
                    .prop_map(|(id, algorithm, material)| {
                        let mut body = vec![3];
                        body.extend_from_slice(&id);
                        body.push(algorithm);
                        body.extend(material);
                        body
                    }),
                (
                    any::<[u8; 20]>(),
                    any::<u8>(),
                    prop::collection::vec(any::<u8>(), 0..300)
                )
                    .prop_map(|(fingerprint, algorithm, material)| {
                        let mut body = vec![6, 21, 4];
                        body.extend_from_slice(&fingerprint);
                        body.push(algorithm);
                        body.extend(material);
                        body
                    }),
            ]
        }

        /// `body` framed as a packet with `tag`, in one of the framings
        /// the standard allows for a definite length.
        fn frame(tag: u8, body: &[u8], framing: u8) -> Vec<u8> {
            let len = body.len();
            let mut packet = match framing % 5 {
                0 if len < 192 => vec![0xc0 | tag, len as u8],
                1 if (192..8384).contains(&len) => {
                    let l = len - 192;
                    vec![0xc0 | tag, (l >> 8) as u8 + 192, l as u8]
                }
                2 => {
                    let mut p = vec![0xc0 | tag, 255];
                    p.extend_from_slice(&(len as u32).to_be_bytes());
                    p
                }
                3 if len < 256 && tag < 16 => vec![0x80 | (tag << 2), len as u8],
                4 if tag < 16 => {
                    let mut p = vec![0x80 | (tag << 2) | 2];
                    p.extend_from_slice(&(len as u32).to_be_bytes());
                    p
                }
                _ => {
                    let mut p = vec![0xc0 | tag, 255];
                    p.extend_from_slice(&(len as u32).to_be_bytes());
                    p
                }
            };
            packet.extend_from_slice(body);
            packet
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse_header(&bytes);
                let _ = parse_complete_header(&bytes);
                let _ = parse_pkesk_sequence(&bytes);
            }

            #[test]
            fn framed_headers_read_back_whole_and_in_pieces(
                bodies in prop::collection::vec((pkesk_body(), any::<u8>()), 1..6),
                data in prop::collection::vec(any::<u8>(), 0..64),
                data_tag in prop_oneof![Just(TAG_SEIPD), Just(TAG_AEAD)],
            ) {
                let mut object = Vec::new();
                let mut raws = Vec::new();
                for (body, framing) in &bodies {
                    let packet = frame(TAG_PKESK, body, *framing);
                    object.extend_from_slice(&packet);
                    raws.push(packet);
                }
                let data_offset = object.len();
                object.extend(frame(data_tag, &data, 0));

                let header = parse_complete_header(&object).unwrap();
                prop_assert_eq!(header.data_offset, data_offset);
                let found: Vec<Vec<u8>> = header.pkesks.iter().map(|p| p.raw.clone()).collect();
                prop_assert_eq!(&found, &raws);
                prop_assert_eq!(
                    parse_pkesk_sequence(&object[..data_offset]).unwrap(),
                    header.pkesks.clone()
                );

                // every prefix short of the data packet's header asks for
                // more, never for fewer bytes than it has, and never errs
                for cut in 0..data_offset {
                    match parse_header(&object[..cut]).unwrap() {
                        Parsed::NeedBytes(n) => prop_assert!(n > cut, "{} at {}", n, cut),
                        Parsed::Complete(_) => prop_assert!(false, "complete at {}", cut),
                    }
                }
            }

            #[test]
            fn any_other_packet_after_a_key_packet_is_refused(
                body in pkesk_body(),
                tag in (2u8..64).prop_filter("not a key or data packet", |t| {
                    ![TAG_PKESK, TAG_SEIPD, TAG_AEAD].contains(t)
                }),
                other in prop::collection::vec(any::<u8>(), 0..100),
            ) {
                let mut object = frame(TAG_PKESK, &body, 2);
                let offset = object.len();
                object.extend(frame(tag, &other, 2));
                object.extend_from_slice(&STUB_DATA_PACKET);
                let refused = matches!(
                    parse_header(&object),
                    Err(PacketError::Unexpected { offset: o, tag: t, .. }) if o == offset && t == tag
                );
                prop_assert!(refused);
            }
        }
    }
}
