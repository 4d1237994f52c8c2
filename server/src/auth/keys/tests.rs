use driftdb_engine::time::ManualClock;
use driftdb_storage::StoreConfig;

use super::*;
use crate::auth::Scope;

fn open(dir: &std::path::Path) -> KeyStore {
    let clock = Arc::new(ManualClock::new(Timestamp(1_000)));
    let store = Arc::new(Store::open(dir, StoreConfig::default(), clock).unwrap());
    KeyStore::load(store).unwrap()
}

fn spec(team: Option<&str>, scopes: &[Scope]) -> KeySpec {
    KeySpec {
        name: "test".into(),
        team: team.map(str::to_string),
        scopes: Scopes::of(scopes),
        created_by: None,
    }
}

#[test]
fn tokens_verify_until_revoked_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys = open(dir.path());
    assert!(keys.is_empty());
    let k = keys
        .create(spec(Some("fraud"), &[Scope::Read]), Timestamp(5))
        .unwrap();
    assert!(parse_token(&k.token).is_some(), "{}", k.token);
    assert_eq!(k.token.len(), 4 + 16 + 1 + 43);
    let rec = keys.verify(&k.token).unwrap();
    assert_eq!(rec.team.as_deref(), Some("fraud"));
    assert!(rec.scopes.contains(Scope::Read));
    assert!(!rec.scopes.contains(Scope::Admin));
    // A changed secret, a changed id and garbage do not verify.
    let mut bad = k.token.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert!(keys.verify(&bad).is_none());
    assert!(
        keys.verify(&k.token.replacen(&k.record.id, "0000000000000000", 1))
            .is_none()
    );
    assert!(keys.verify("ddb_").is_none());
    assert!(keys.verify("").is_none());
    drop(keys);
    let keys = open(dir.path());
    assert_eq!(keys.verify(&k.token).unwrap().id, k.record.id);
    keys.revoke(&k.record.id, Timestamp(9)).unwrap();
    assert!(keys.verify(&k.token).is_none());
    drop(keys);
    let keys = open(dir.path());
    assert!(keys.verify(&k.token).is_none(), "revocation is durable");
    assert_eq!(keys.list()[0].revoked_at_ms, Some(9));
    assert!(matches!(
        keys.revoke("ffffffffffffffff", Timestamp(9)),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn the_store_holds_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let keys = open(dir.path());
    let k = keys
        .create(spec(None, &[Scope::Admin]), Timestamp(5))
        .unwrap();
    let (_, secret) = parse_token(&k.token).unwrap();
    let stored = keys
        .store
        .family(Family::Meta)
        .get(&key_of(&k.record.id))
        .unwrap()
        .unwrap();
    let text = String::from_utf8(stored.payload.to_vec()).unwrap();
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains(&sha256_hex(secret)), "{text}");
}

#[test]
fn bad_specs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = open(dir.path());
    assert!(keys.create(spec(Some("t"), &[]), Timestamp(1)).is_err());
    assert!(
        keys.create(spec(Some(""), &[Scope::Read]), Timestamp(1))
            .is_err()
    );
    let mut s = spec(None, &[Scope::Read]);
    s.name = "a\nb".into();
    assert!(keys.create(s, Timestamp(1)).is_err());
    assert!(keys.is_empty());
}

#[test]
fn a_corrupt_record_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = open(dir.path());
    let k = keys
        .create(spec(None, &[Scope::Admin]), Timestamp(5))
        .unwrap();
    let db = keys.store.raw_db();
    let cf = db.cf_handle(layout::CF_META).unwrap();
    let mut v = db.get_cf(cf, key_of(&k.record.id)).unwrap().unwrap();
    let mid = v.len() / 2;
    v[mid] ^= 0x20;
    db.put_cf(cf, key_of(&k.record.id), v).unwrap();
    drop(keys);
    let keys = open(dir.path());
    assert!(keys.verify(&k.token).is_none());
    assert!(keys.list().is_empty());
}
