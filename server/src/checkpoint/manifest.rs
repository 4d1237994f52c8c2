//! A checkpoint's manifest: which files make the store, with their lengths and SHA-256, and its
//! number. It is read back from the object store, so [`Manifest::parse`] checks everything a
//! restore relies on (a fuzz target, `server/fuzz`, feeds it arbitrary bytes).

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the store's directory (no directories: a RocksDB checkpoint is flat).
    pub name: String,
    /// Its length.
    pub bytes: u64,
    /// SHA-256 of its content, lowercase hex; also its object's name.
    pub sha256: String,
}

/// What one checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Its number: one more than the newest before it.
    pub seq: u64,
    /// When it was saved, ms since the epoch.
    pub created_ms: i64,
    /// RocksDB's last sequence number in the copy (every write up to it is in).
    pub store_sequence: u64,
    /// Its files.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Bytes of all its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

impl Manifest {
    /// Reads manifest `seq` from its JSON, checked: the format, its number, plain and distinct
    /// file names, lowercase SHA-256 hex digests, and a `CURRENT` file (RocksDB opens nothing
    /// without it). The error says what is wrong.
    pub fn parse(bytes: &[u8], seq: u64) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.format != FORMAT {
            return Err(format!("format {} (this build reads {FORMAT})", m.format));
        }
        if m.seq != seq {
            return Err(format!("it says it is checkpoint {}", m.seq));
        }
        let mut names = std::collections::BTreeSet::new();
        for f in &m.files {
            let hex = f.sha256.len() == 64
                && f.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !plain_name(&f.name) || !hex {
                return Err(format!("bad file entry {:?}", f.name));
            }
            if !names.insert(f.name.as_str()) {
                return Err(format!("file {:?} is listed twice", f.name));
            }
        }
        if !names.contains("CURRENT") {
            return Err("no CURRENT file: not a RocksDB checkpoint".to_string());
        }
        Ok(m)
    }
}

/// A checkpoint file name is a plain name: no separators, no `..`, not empty.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(seq: u64, files: &[(&str, &str)]) -> String {
        let files: Vec<serde_json::Value> = files
            .iter()
            .map(|(n, h)| serde_json::json!({"name": n, "bytes": 3, "sha256": h}))
            .collect();
        serde_json::json!({"format": 1, "seq": seq, "created_ms": 5, "store_sequence": 9,
                           "files": files})
        .to_string()
    }

    #[test]
    fn a_manifest_parses_only_when_a_restore_can_trust_it() {
        let h = "ab".repeat(32);
        let ok = Manifest::parse(
            json(3, &[("CURRENT", &h), ("000009.sst", &h)]).as_bytes(),
            3,
        )
        .unwrap();
        assert_eq!((ok.seq, ok.files.len(), ok.bytes()), (3, 2, 6));
        let upper = "AB".repeat(32);
        for (text, seq, want) in [
            (json(3, &[("CURRENT", &h)]), 4, "it says it is checkpoint 3"),
            (json(3, &[("000009.sst", &h)]), 3, "no CURRENT"),
            (
                json(3, &[("CURRENT", &h), ("../x", &h)]),
                3,
                "bad file entry",
            ),
            (
                json(3, &[("CURRENT", &h), ("a/b", &h)]),
                3,
                "bad file entry",
            ),
            (json(3, &[("CURRENT", &h), ("..", &h)]), 3, "bad file entry"),
            (json(3, &[("CURRENT", &h), ("", &h)]), 3, "bad file entry"),
            (json(3, &[("CURRENT", &upper)]), 3, "bad file entry"),
            (json(3, &[("CURRENT", "abc")]), 3, "bad file entry"),
            (
                json(3, &[("CURRENT", &h), ("CURRENT", &h)]),
                3,
                "listed twice",
            ),
            (
                json(3, &[("CURRENT", &h)]).replace("\"format\":1", "\"format\":2"),
                3,
                "format 2",
            ),
            ("{\"format\":1,\"se".to_string(), 3, "EOF"),
        ] {
            let e = Manifest::parse(text.as_bytes(), seq).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
