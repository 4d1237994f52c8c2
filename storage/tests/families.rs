//! The sealed get/put/delete/scan helpers of the non-window families.

use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::layout::{CF_DEDUP, DEDUP_REQUEST, KeyWriter, META_MODEL};
use driftdb_storage::{Family, WriteSet};

use crate::common::*;

#[test]
fn sealed_records_round_trip_and_detect_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let store = open(dir.path(), &clock, config());
    let meta = store.family(Family::Meta);
    let k = |m: &str| KeyWriter::with_prefix(META_MODEL).str(m).finish();
    meta.put(&k("fraud"), 1, b"{\"id\":\"fraud\"}").unwrap();
    meta.put(&k("churn"), 1, b"{\"id\":\"churn\"}").unwrap();
    meta.put(&k("fraud2"), 2, b"x").unwrap();
    let e = meta.get(&k("fraud")).unwrap().unwrap();
    assert_eq!(
        (e.kind, e.payload.as_slice()),
        (1, &b"{\"id\":\"fraud\"}"[..])
    );
    let all: Vec<_> = meta
        .scan_prefix(&[META_MODEL])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].key, k("churn"));
    meta.delete(&k("churn")).unwrap();
    assert!(meta.get(&k("churn")).unwrap().is_none());

    // A dedup record written atomically with a sketch delta.
    let s = series("fraud", "v1", "amount", None);
    let rid = KeyWriter::with_prefix(DEDUP_REQUEST)
        .str("fraud")
        .str("req-1")
        .finish();
    let mut set = WriteSet::new();
    set.merge(&s, Resolution::M15, Timestamp(T0), &numeric(&[1.0]));
    set.put(Family::Dedup, rid.clone(), 7, &T0.to_be_bytes());
    store.write(&set).unwrap();
    assert_eq!(
        store.family(Family::Dedup).get(&rid).unwrap().unwrap().kind,
        7
    );
    assert_eq!(all_windows(&store, &s, Resolution::M15).len(), 1);

    // A flipped byte is a Corruption error, in get and in scans.
    let db = store.raw_db();
    let cf = db.cf_handle(CF_DEDUP).unwrap();
    let mut v = db.get_cf(cf, &rid).unwrap().unwrap();
    v[2] ^= 1;
    db.put_cf(cf, &rid, &v).unwrap();
    let err = store.family(Family::Dedup).get(&rid).unwrap_err();
    assert_eq!(err.kind(), driftdb_engine::ErrorKind::Corruption);
    let items: Vec<_> = store
        .family(Family::Dedup)
        .scan_prefix(&[])
        .unwrap()
        .collect();
    assert_eq!(items.len(), 1);
    assert!(items[0].is_err());
}

#[test]
fn get_many_answers_in_the_order_asked_whatever_the_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = clock_at(T0);
    let store = open(dir.path(), &clock, config());
    let meta = store.family(Family::Meta);
    let k = |m: &str| KeyWriter::with_prefix(META_MODEL).str(m).finish();
    for (i, m) in ["b", "d", "a", "c"].iter().enumerate() {
        meta.put(&k(m), i as u8 + 1, m.as_bytes()).unwrap();
    }
    // Unsorted, with absent keys and a key asked twice; one of them flushed to an SST so
    // the answers come from both the memtable and a file.
    store
        .raw_db()
        .flush_cf(
            store
                .raw_db()
                .cf_handle(driftdb_storage::layout::CF_META)
                .unwrap(),
        )
        .unwrap();
    meta.put(&k("e"), 9, b"e").unwrap();
    let asked = ["d", "zz", "a", "e", "d", "0", "c", "b"];
    let keys: Vec<Vec<u8>> = asked.iter().map(|m| k(m)).collect();
    let got: Vec<Option<(u8, Vec<u8>)>> = meta
        .get_many(&keys)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().map(|e| (e.kind, e.payload)))
        .collect();
    let want: Vec<Option<(u8, Vec<u8>)>> = asked
        .iter()
        .map(|m| meta.get(&k(m)).unwrap().map(|e| (e.kind, e.payload)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0], Some((2, b"d".to_vec())));
    assert_eq!(got[1], None);
    assert_eq!(got[3], Some((9, b"e".to_vec())));
    assert_eq!(got[4], got[0]);
    assert_eq!(meta.get_many::<Vec<u8>>(&[]).unwrap().len(), 0);
}
