//! Split knowledge: the operator's headers archive and the key holder's
//! session keys.
//!
//! Key holders keep private keys offline and never see backup data;
//! operators handle backup data and never hold private keys. So the
//! operator (`headers`) extracts exactly the PKESK packets of every object
//! — found by parsing, fetched with ranged GETs — into a tar archive; the
//! key holder (`session-keys`, offline) recovers one session key per object
//! from it; and the operator decrypts with those keys alone (`decrypt`).
//!
//! The archive is a plain ustar file so stock tools open it: `index.json`
//! names the backup and its objects, `<object>.pkesk` holds the object's
//! key packets and nothing else, and `stub-data-packet.bin` holds
//! [`STUB_DATA_PACKET`], which stock `gpg --show-session-key` needs after
//! the key packets (see `gpg.rs`). The key holder's side refuses any entry
//! that is not exactly that, so no ciphertext can reach it through here.
//!
//! The session keys file is text, one `ALGO:HEX  OBJECT-KEY` line per
//! object, the form `gpg --show-session-key` prints and
//! `gpg --override-session-key` takes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::store::Backup;
use super::RestoreError;
use crate::openpgp::decrypt;
use crate::openpgp::packets::{self, Parsed, STUB_DATA_PACKET};

const INDEX: &str = "index.json";
const STUB: &str = "stub-data-packet.bin";
const FORMAT: &str = "backup-cloud-headers";
/// The first ranged GET of an object's head; more only if the head is longer.
const FIRST_RANGE: u64 = 4096;

/// The archive's table of contents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Index {
    pub format: String,
    pub version: u32,
    pub backup: String,
    pub objects: Vec<IndexObject>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexObject {
    pub key: String,
    /// The archive entry holding its PKESK packets.
    pub header: String,
    /// Key ids the object is encrypted to.
    pub recipients: Vec<String>,
}

/// Reads the head of every object with ranged GETs and returns the archive.
pub async fn headers(backup: &Backup) -> Result<Vec<u8>, RestoreError> {
    let manifest = backup.manifest().await?;
    let mut entries = Vec::new();
    let mut index = Index {
        format: FORMAT.to_owned(),
        version: 1,
        backup: backup.store.location(&backup.prefix),
        objects: Vec::new(),
    };
    for object in &manifest.objects {
        let name = backup.name_of(&object.key).ok_or_else(|| {
            RestoreError::Failed(format!("{}: outside the backup's prefix", object.key))
        })?;
        let mut head = backup.store.read_range(&object.key, 0, FIRST_RANGE).await?;
        let header = loop {
            let parsed = packets::parse_header(&head)
                .map_err(|err| RestoreError::Failed(format!("{name}: {err}")))?;
            match parsed {
                Parsed::Complete(header) => break header,
                Parsed::NeedBytes(n) => {
                    let have = head.len() as u64;
                    let more = (n as u64).saturating_sub(have).max(FIRST_RANGE);
                    let next = backup.store.read_range(&object.key, have, more).await?;
                    if next.is_empty() {
                        return Err(RestoreError::Failed(format!(
                            "{name}: {}",
                            packets::PacketError::Truncated(head.len())
                        )));
                    }
                    head.extend_from_slice(&next);
                }
            }
        };
        let entry = format!("{name}.pkesk");
        index.objects.push(IndexObject {
            key: object.key.clone(),
            header: entry.clone(),
            recipients: header.pkesks.iter().map(|p| p.key_id_hex()).collect(),
        });
        entries.push((entry, head[..header.data_offset].to_vec()));
    }
    let index_json = serde_json::to_vec_pretty(&index).expect("the index serialises");
    let mut files: Vec<(&str, &[u8])> = vec![(INDEX, &index_json), (STUB, &STUB_DATA_PACKET)];
    files.extend(
        entries
            .iter()
            .map(|(name, data)| (name.as_str(), &data[..])),
    );
    write_archive(&files)
}

/// The key holder's side: recovers every object's session key from the
/// archive with the secret keys in `gnupg_home` (`None`: GNUPGHOME).
/// Returns the session keys file. Blocking.
pub fn session_keys(archive: &[u8], gnupg_home: Option<&Path>) -> Result<String, RestoreError> {
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, data) in read_archive(archive)? {
        if entries.insert(name.clone(), data).is_some() {
            return Err(RestoreError::Failed(format!(
                "headers archive holds {name} twice"
            )));
        }
    }
    let index: Index = entries
        .remove(INDEX)
        .ok_or_else(|| RestoreError::Failed(format!("headers archive has no {INDEX}")))
        .and_then(|data| {
            serde_json::from_slice(&data)
                .map_err(|e| RestoreError::Failed(format!("headers archive {INDEX}: {e}")))
        })?;
    if index.format != FORMAT || index.version != 1 {
        return Err(RestoreError::Failed(format!(
            "not a headers archive this version reads ({} v{})",
            index.format, index.version
        )));
    }
    if entries.remove(STUB).as_deref() != Some(&STUB_DATA_PACKET[..]) {
        return Err(RestoreError::Failed(format!(
            "headers archive's {STUB} is missing or not the zero stub"
        )));
    }
    let mut out = format!(
        "# backup-cloud session keys for {}\n# ALGO:HEX  OBJECT-KEY\n",
        index.backup
    );
    for object in &index.objects {
        let data = entries.remove(&object.header).ok_or_else(|| {
            RestoreError::Failed(format!("headers archive lacks {}", object.header))
        })?;
        // Only key packets: anything else (ciphertext above all) is refused.
        packets::parse_pkesk_sequence(&data)
            .map_err(|err| RestoreError::Failed(format!("{}: {err}", object.header)))?;
        let key = decrypt::session_key(gnupg_home, &data)
            .map_err(|err| RestoreError::Failed(format!("{}: {err}", object.key)))?;
        out.push_str(&format!("{key}  {}\n", object.key));
    }
    if let Some(extra) = entries.keys().next() {
        return Err(RestoreError::Failed(format!(
            "headers archive holds an unexpected entry {extra}"
        )));
    }
    Ok(out)
}

/// Parses a session keys file into object key → session key.
pub fn parse_session_keys(text: &str) -> Result<BTreeMap<String, String>, RestoreError> {
    let mut keys = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            RestoreError::Failed(format!(
                "session keys line {}: expected `ALGO:HEX OBJECT-KEY`",
                number + 1
            ))
        };
        let (key, object) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let key = key.trim_matches('\'');
        decrypt::check_session_key(key).map_err(|_| bad())?;
        keys.insert(object.trim().to_owned(), key.to_owned());
    }
    Ok(keys)
}

/// Writes the archive: a ustar entry per `(name, data)`, mode 0644, no
/// owner or time. A name that would need a GNU or PAX extension (100
/// bytes or more), or that leaves the archive's folder, is refused.
fn write_archive(entries: &[(&str, &[u8])]) -> Result<Vec<u8>, RestoreError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let refused =
            || RestoreError::Failed(format!("{name}: cannot be named in a headers archive"));
        if name.len() > 99 || name.starts_with('/') || name.split('/').any(|s| s == "..") {
            return Err(refused());
        }
        let mut header = tar::Header::new_ustar();
        header.set_path(name).map_err(|_| refused())?;
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append(&header, *data)
            .map_err(|e| RestoreError::Failed(format!("{name}: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| RestoreError::Failed(format!("headers archive: {e}")))
}

/// Every entry of the archive, each a regular file in a ustar header;
/// anything else (links, folders, a damaged header, an entry cut short)
/// is refused. A long name in a GNU or PAX extension is read as the
/// entry's name: names only look entries up, and the key holder's side
/// takes exactly the entries the index lists.
fn read_archive(archive: &[u8]) -> Result<Vec<(String, Vec<u8>)>, RestoreError> {
    let bad = |what: String| RestoreError::Failed(format!("not a headers archive: {what}"));
    let mut entries = Vec::new();
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let header = entry.header();
        if header.as_ustar().is_none() {
            return Err(bad("an entry without a ustar header".to_owned()));
        }
        if header.entry_type() != tar::EntryType::Regular {
            return Err(bad("an entry that is not a plain file".to_owned()));
        }
        let name = std::str::from_utf8(&entry.path_bytes())
            .map_err(|_| bad("a name that is not UTF-8".to_owned()))?
            .to_owned();
        let size = entry.size();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| bad(e.to_string()))?;
        if data.len() as u64 != size {
            return Err(bad(format!("{name} ends early")));
        }
        entries.push((name, data));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_tar_reads_what_we_write_and_we_read_it_back() {
        let archive =
            write_archive(&[("index.json", b"{}"), ("dir/a.pkesk", &[7u8; 1000])]).unwrap();
        let entries = read_archive(&archive).unwrap();
        assert_eq!(entries[1], ("dir/a.pkesk".to_owned(), vec![7u8; 1000]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.tar");
        std::fs::write(&path, &archive).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read(dir.path().join("dir/a.pkesk")).unwrap(),
            vec![7u8; 1000]
        );
        let mut corrupted = archive.clone();
        corrupted[3] ^= 1;
        assert!(read_archive(&corrupted).is_err());
        assert!(read_archive(&archive[..600]).is_err());
        assert!(read_archive(&archive[..1024 + 700]).is_err());
        for refused in ["../x", "/x", &"n".repeat(100)] {
            assert!(write_archive(&[(refused, b"")]).is_err(), "{refused}");
        }
    }
}
