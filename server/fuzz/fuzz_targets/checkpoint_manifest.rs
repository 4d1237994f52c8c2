//! A checkpoint manifest as a restore reads it from the object store: the first 8 bytes are the
//! number the restore expects, the rest the manifest's JSON (`Manifest::parse`). A manifest that
//! parses names only plain, distinct files with lowercase SHA-256 digests and a `CURRENT`, and
//! written back as JSON it parses to the same manifest. Errors are fine; panics are findings.
#![no_main]

use driftdb_server_fuzz::checkpoint_manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, json) = data.split_at(8);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(head);
    let seq = u64::from_le_bytes(seq) % 4;
    let Ok(m) = Manifest::parse(json, seq) else {
        return;
    };
    assert_eq!(m.seq, seq);
    assert!(m.files.iter().any(|f| f.name == "CURRENT"));
    for f in &m.files {
        assert!(!f.name.contains('/') && f.name != ".." && f.name != ".");
        assert_eq!(f.sha256.len(), 64);
    }
    let again = serde_json::to_vec(&m).expect("a parsed manifest serializes");
    assert_eq!(Manifest::parse(&again, seq).expect("it parses again"), m);
});
