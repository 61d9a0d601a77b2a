//! The last-known-good file: the store sources' last good rules, written after a change that
//! reached the snapshot (at most every [`super::LAST_KNOWN_GOOD_INTERVAL`], and at shutdown)
//! and read at start-up for a store that cannot be reached, so a restart during a database
//! outage still serves known customers.
//!
//! JSON (serde), one object: a format tag, the edge's group, the time it was written and one
//! [`RuleSet`] per store source. Written to a sibling file, synced, then renamed over the old
//! one, so a crash mid-write leaves the previous file whole. It never holds the trunks file's
//! rules (that file is local and always readable).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::acl::RuleSet;
use crate::config::SourceKind;

/// Bumped when the layout changes; a file of another format is ignored with a warning.
pub const FORMAT: &str = "warp-edge-acl-lkg/1";

#[derive(Debug, thiserror::Error)]
pub enum LkgError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not a last-known-good file: {message}")]
    Format { file: PathBuf, message: String },
}

#[derive(Debug, Deserialize, Serialize)]
struct LkgFile {
    format: String,
    group: u32,
    written_at_unix: u64,
    /// By source name (`postgres`, `redis`).
    sources: BTreeMap<String, RuleSet>,
}

/// What a last-known-good file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LastKnownGood {
    pub group: u32,
    pub written_at_unix: u64,
    pub sources: Vec<(SourceKind, RuleSet)>,
}

/// Writes `sources` to `file` atomically (sibling file, fsync, rename).
pub fn write(file: &Path, group: u32, sources: &[(SourceKind, &RuleSet)]) -> Result<(), LkgError> {
    let io = |source| LkgError::Io {
        file: file.to_owned(),
        source,
    };
    let body = LkgFileRef {
        format: FORMAT,
        group,
        written_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        sources: sources.iter().map(|(k, r)| (k.as_str(), *r)).collect(),
    };
    let staging = staging_path(file);
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&staging)?);
        serde_json::to_writer(&mut out, &body).map_err(std::io::Error::other)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        drop(out);
        std::fs::rename(&staging, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result.map_err(io)
}

/// Reads `file`; `Ok(None)` when it does not exist.
pub fn read(file: &Path) -> Result<Option<LastKnownGood>, LkgError> {
    let text = match std::fs::read(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LkgError::Io {
                file: file.to_owned(),
                source,
            })
        }
    };
    let parsed: LkgFile = serde_json::from_slice(&text).map_err(|e| LkgError::Format {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    if parsed.format != FORMAT {
        return Err(LkgError::Format {
            file: file.to_owned(),
            message: format!("format {:?}, expected {FORMAT:?}", parsed.format),
        });
    }
    let mut sources = Vec::new();
    for (name, rules) in parsed.sources {
        let kind = SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| LkgError::Format {
                file: file.to_owned(),
                message: format!("unknown source {name:?}"),
            })?;
        sources.push((kind, rules));
    }
    Ok(Some(LastKnownGood {
        group: parsed.group,
        written_at_unix: parsed.written_at_unix,
        sources,
    }))
}

/// The borrowed twin of [`LkgFile`], so writing copies no rules.
#[derive(Serialize)]
struct LkgFileRef<'a> {
    format: &'static str,
    group: u32,
    written_at_unix: u64,
    sources: BTreeMap<&'static str, &'a RuleSet>,
}

fn staging_path(file: &Path) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".new");
    file.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclEntry, Customer, CustomerStatus, Proto};

    #[test]
    fn written_file_reads_back_the_same_rules() {
        let dir = std::env::temp_dir().join(format!("warp-edge-lkg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("acl.json");
        assert_eq!(read(&file).unwrap(), None, "a missing file is not an error");
        let rules = RuleSet {
            customers: vec![Customer {
                ban: "100001".to_owned(),
                name: "Demo \"quoted\"\n".to_owned(),
                status: CustomerStatus::Suspended,
            }],
            entries: vec![AclEntry {
                origin: "postgres trunk_ips 1".into(),
                group: 1,
                network: "2001:db8::/48".parse().unwrap(),
                port: 5060,
                proto: Proto::Tls,
                ban: "100001".into(),
                trunk_group: Some(7),
            }],
            ..RuleSet::default()
        };
        write(&file, 1, &[(SourceKind::Postgres, &rules)]).unwrap();
        let back = read(&file).unwrap().unwrap();
        assert_eq!(back.group, 1);
        assert_eq!(back.sources, vec![(SourceKind::Postgres, rules)]);
        std::fs::write(&file, b"{\"format\":\"other\"}").unwrap();
        assert!(read(&file).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
