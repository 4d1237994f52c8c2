use driftdb_engine::rules::Action;
use driftdb_engine::time::ManualClock;
use driftdb_storage::StoreConfig;

use super::*;

const RULE: &str = r#"{"id": "r1", "model": "m", "kind": "event", "event": "release",
    "severity": "low", "actions": [
      {"kind": "pagerduty", "routing_key": "PDKEY"},
      {"kind": "slack", "url": "https://hooks.slack.com/services/T/B/SLACKSECRET"},
      {"kind": "jira", "url": "https://x.atlassian.net/rest/api/2/issue", "project": "ML", "token": "JIRATOKEN"},
      {"kind": "webhook", "url": "https://ci.example.com/run?key=QUERYSECRET"},
      {"kind": "retrain", "url": "https://ml.example.com/retrain"}]}"#;

const SECRETS: [&str; 4] = ["PDKEY", "SLACKSECRET", "JIRATOKEN", "QUERYSECRET"];

fn store(dir: &std::path::Path) -> Arc<Store> {
    let clock = Arc::new(ManualClock::new(Timestamp(1_000)));
    Arc::new(Store::open(dir, StoreConfig::default(), clock).unwrap())
}

fn texts(store: &Store, prefix: u8) -> Vec<String> {
    store
        .family(Family::Meta)
        .scan_prefix(&[prefix])
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().payload).into_owned())
        .collect()
}

#[test]
fn split_and_join_are_inverse() {
    let def = RuleDef::from_json(RULE).unwrap();
    let full = def.to_json();
    let (redacted, secrets) = split_secrets(&full);
    let text = redacted.to_string();
    for s in SECRETS {
        assert!(!text.contains(s), "{s} in {text}");
    }
    assert_eq!(redacted["actions"][1]["url"], "https://hooks.slack.com/***");
    assert_eq!(
        redacted["actions"][3]["url"],
        "https://ci.example.com/run?***"
    );
    assert_eq!(
        redacted["actions"][4]["url"], "https://ml.example.com/retrain",
        "a URL without secret parts is shown whole"
    );
    assert!(!secrets.contains_key("4"));
    assert!(missing_secrets(&redacted));
    let mut joined = redacted.clone();
    join_secrets(&mut joined, &secrets);
    assert_eq!(joined, full);
    assert!(!missing_secrets(&joined));
    assert_eq!(redacted_json(&def), redacted);
}

#[test]
fn stored_rules_hold_no_secret_and_load_whole() {
    let dir = tempfile::tempdir().unwrap();
    let def = RuleDef::from_json(RULE).unwrap();
    {
        let book = RuleBook::load(store(dir.path())).unwrap();
        book.put(def.clone(), None, Timestamp(5)).unwrap();
        for t in texts(&book.store, layout::META_RULE)
            .into_iter()
            .chain(texts(&book.store, layout::META_RULE_VERSION))
        {
            for s in SECRETS {
                assert!(!t.contains(s), "{s} in {t}");
            }
        }
        assert_eq!(texts(&book.store, layout::META_RULE_SECRET).len(), 1);
        let (_, _, v) = book.history("r1").unwrap().pop().unwrap();
        assert!(!v.to_string().contains("PDKEY"));
    }
    let book = RuleBook::load(store(dir.path())).unwrap();
    assert_eq!(
        book.get("r1").unwrap().def,
        def,
        "secrets joined back on load"
    );
    assert_eq!(book.error("r1"), None);
    book.delete("r1", Timestamp(6)).unwrap();
    assert!(texts(&book.store, layout::META_RULE_SECRET).is_empty());
}

#[test]
fn rules_stored_in_clear_are_split_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let def = RuleDef::from_json(RULE).unwrap();
    {
        // What an older build wrote: the whole rule, secrets included, current and version.
        let s = store(dir.path());
        let rec =
            json!({"version": 1, "updated_at_ms": 5, "deleted": false, "rule": def.to_json()});
        let bytes = serde_json::to_vec(&rec).unwrap();
        let mut ws = WriteSet::new();
        ws.put(
            Family::Meta,
            current_key("r1"),
            crate::records::RecordKind::Rule.byte(),
            &bytes,
        );
        ws.put(
            Family::Meta,
            version_key("r1", 1),
            crate::records::RecordKind::Rule.byte(),
            &bytes,
        );
        s.write(&ws).unwrap();
        assert!(texts(&s, layout::META_RULE)[0].contains("PDKEY"));
    }
    let book = RuleBook::load(store(dir.path())).unwrap();
    assert_eq!(book.get("r1").unwrap().def, def);
    for t in texts(&book.store, layout::META_RULE)
        .into_iter()
        .chain(texts(&book.store, layout::META_RULE_VERSION))
    {
        for s in SECRETS {
            assert!(!t.contains(s), "{s} still in {t}");
        }
    }
    drop(book);
    let book = RuleBook::load(store(dir.path())).unwrap();
    assert_eq!(
        book.get("r1").unwrap().def,
        def,
        "and found again after the split"
    );
}

#[test]
fn a_rule_whose_secrets_are_lost_says_so() {
    let dir = tempfile::tempdir().unwrap();
    {
        let book = RuleBook::load(store(dir.path())).unwrap();
        book.put(RuleDef::from_json(RULE).unwrap(), None, Timestamp(5))
            .unwrap();
        let mut ws = WriteSet::new();
        ws.delete(Family::Meta, secrets_key("r1"));
        book.store.write(&ws).unwrap();
    }
    let book = RuleBook::load(store(dir.path())).unwrap();
    let r = book.get("r1").unwrap();
    assert!(
        matches!(&r.def.actions[0].action, Action::Pagerduty { routing_key, .. } if routing_key == "***")
    );
    assert!(
        book.error("r1").is_some_and(|e| e.contains("secrets")),
        "{:?}",
        book.error("r1")
    );
}
