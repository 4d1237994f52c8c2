//! Checkpoints of a node's store in an object store (a local directory through `object_store`)
//! and their restore into an empty data directory: byte-for-byte equal families, incremental
//! uploads, pruning, and refusals (a corrupt object, a torn manifest, a non-empty target, an
//! unsupported URL); the operator routes on a real HTTP server.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use driftdb_engine::ErrorKind;
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_server::auth::{AuthMode, Principal};
use driftdb_server::checkpoint::Checkpoints;
use driftdb_server::node::Node;
use driftdb_storage::layout::ALL_CFS;
use driftdb_storage::{Store, StoreConfig};
use serde_json::Value;

use crate::ingest::{TestServer, file_batches, golden, t0};

fn url_of(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// A family's name and its keys and values, in order.
type Family = (&'static str, Vec<(Box<[u8]>, Box<[u8]>)>);

/// Every family's keys and values.
fn dump(store: &Store) -> Vec<Family> {
    let db = store.raw_db();
    ALL_CFS
        .iter()
        .map(|name| {
            let cf = db.cf_handle(name).unwrap();
            let kvs = db
                .iterator_cf(&cf, driftdb_storage::rocksdb::IteratorMode::Start)
                .map(Result::unwrap)
                .collect();
            (*name, kvs)
        })
        .collect()
}

fn objects(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

async fn count(node: &Node) -> f64 {
    let out = node
        .query(
            &Principal::unrestricted(),
            "count(fraud.amount) from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z".into(),
        )
        .await
        .unwrap();
    let rows = out.table.to_json();
    rows[0]["value"].as_f64().unwrap()
}

fn open_node(dir: &Path) -> Node {
    let clock = ManualClock::new(Timestamp(t0().0 + 86_400_000));
    Node::open(
        dir,
        StoreConfig::default(),
        Arc::new(clock),
        AuthMode::Disabled,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_checkpoint_is_the_store_byte_for_byte() {
    let mut s = TestServer::start().await;
    let def = s.create_golden_model().await;
    s.load_reference(&def).await;
    let batches = file_batches(&def, &golden("windows.jsonl"), false, 1000);
    let (first, second) = batches.split_at(8);
    s.ingest(first.to_vec()).await.unwrap();

    let cp_dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let cps =
        Checkpoints::open(&url_of(cp_dir.path()), 2, None, work.path().join("scratch")).unwrap();
    assert!(cps.latest().await.unwrap().is_none());
    let now = t0().0 + 86_400_000;

    // The first save uploads everything; a second with no write in between saves nothing.
    let one = cps.save(&s.node.store, now).await.unwrap();
    assert_eq!((one.seq, one.saved), (1, true));
    assert!(one.bytes > 0 && one.files >= 4, "{one:?}");
    assert_eq!(one.uploaded_bytes, one.bytes);
    let again = cps.save(&s.node.store, now).await.unwrap();
    assert_eq!(
        (again.seq, again.saved, again.uploaded_bytes),
        (1, false, 0)
    );
    // The scratch copy is gone.
    assert_eq!(
        std::fs::read_dir(work.path().join("scratch"))
            .unwrap()
            .count(),
        0
    );

    // The rest of the rows: the second checkpoint uploads only what changed (the SST files of
    // the first are immutable and already stored).
    s.ingest(second.to_vec()).await.unwrap();
    let two = cps.save(&s.node.store, now + 1).await.unwrap();
    assert_eq!((two.seq, two.saved), (2, true));
    assert!(
        two.uploaded_bytes < two.bytes,
        "every byte uploaded again: {two:?}"
    );
    let m2 = cps.manifest(2).await.unwrap();
    assert_eq!(m2.bytes(), two.bytes);
    assert_eq!(m2.created_ms, now + 1);

    // Restore into an empty directory (a key file there is fine) and compare every family.
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("admin.key"), "kept").unwrap();
    let r = cps.restore(target.path()).await.unwrap().unwrap();
    assert_eq!((r.seq, r.files, r.bytes), (2, m2.files.len(), m2.bytes()));
    assert_eq!(
        std::fs::read_to_string(target.path().join("admin.key")).unwrap(),
        "kept"
    );
    assert!(!target.path().join(".restoring").exists());
    let want = dump(&s.node.store);
    let restored = open_node(target.path());
    let got = dump(&restored.store);
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        assert_eq!(g.len(), w.len(), "family {name}: key count");
        assert!(g == w, "family {name}: keys or values differ");
    }
    assert!(want.iter().map(|(_, kv)| kv.len()).sum::<usize>() > 1000);
    // ... and it answers queries as the original does.
    assert_eq!(count(&restored).await, 16_000.0);
    assert_eq!(count(&s.node).await, 16_000.0);
    drop(restored);

    // A store is never restored over.
    let e = cps.restore(target.path()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("already holds a store"), "{e}");

    // A third checkpoint prunes the first (keep 2) and the objects only it named.
    let m1_objects: BTreeSet<String> = cps
        .manifest(1)
        .await
        .unwrap()
        .files
        .into_iter()
        .map(|f| f.sha256)
        .collect();
    s.ingest(vec![crate::ingest::small_batch(
        &["late-1"],
        t0().0 + 60_000,
        vec![1.5],
    )])
    .await
    .unwrap();
    let three = cps.save(&s.node.store, now + 2).await.unwrap();
    assert_eq!((three.seq, three.pruned), (3, 1));
    assert_eq!(cps.seqs().await.unwrap(), vec![2, 3]);
    let mut named = BTreeSet::new();
    for seq in [2, 3] {
        for f in cps.manifest(seq).await.unwrap().files {
            named.insert(f.sha256);
        }
    }
    assert_eq!(objects(cp_dir.path()), named);
    assert!(
        m1_objects.difference(&named).count() == three.objects_deleted && three.objects_deleted > 0,
        "{three:?}"
    );

    // A corrupt object: the restore stops before the store appears.
    let m3 = cps.manifest(3).await.unwrap();
    let sst = m3.files.iter().find(|f| f.name.ends_with(".sst")).unwrap();
    let obj = cp_dir.path().join("objects").join(&sst.sha256);
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&obj, &bytes).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let e = cps.restore(fresh.path()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corruption);
    assert!(e.to_string().contains(&sst.name), "{e}");
    assert!(!fresh.path().join("CURRENT").exists());

    // An object cut short is uploaded again by the next save (same content, right length).
    std::fs::write(&obj, &bytes[..bytes.len() / 2]).unwrap();
    s.ingest(vec![crate::ingest::small_batch(
        &["late-2"],
        t0().0 + 60_000,
        vec![2.5],
    )])
    .await
    .unwrap();
    let four = cps.save(&s.node.store, now + 3).await.unwrap();
    assert!(four.uploaded_bytes >= sst.bytes, "{four:?}");
    let healed = tempfile::tempdir().unwrap();
    assert_eq!(cps.restore(healed.path()).await.unwrap().unwrap().seq, 4);
    // (A flipped byte keeps the length: the restore is what catches it, above.)

    // A torn manifest is refused loudly, not skipped for an older one.
    std::fs::write(
        cp_dir.path().join("checkpoints/00000000000000000005.json"),
        b"{\"format\":1,\"se",
    )
    .unwrap();
    let e = cps.restore(fresh.path()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corruption);
    assert!(e.to_string().contains("checkpoint manifest"), "{e}");
}

#[tokio::test]
async fn checkpoint_urls_and_settings_are_checked() {
    let work = std::env::temp_dir().join("unused");
    for (url, want) in [
        ("s3://bucket/driftdb", "not supported by this build"),
        ("relative/dir", "write file:///absolute/dir"),
        ("gs://bucket/x", "not supported by this build"),
    ] {
        let e = Checkpoints::open(url, 4, None, work.clone()).unwrap_err();
        assert!(e.to_string().contains(want), "{url}: {e}");
    }
    let e = Checkpoints::open("memory:///", 0, None, work.clone()).unwrap_err();
    assert!(e.to_string().contains("keep"), "{e}");
    let e = Checkpoints::open(
        "memory:///",
        1,
        Some(std::time::Duration::from_millis(10)),
        work,
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 1s"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_save_and_list_checkpoints_over_http() {
    let data = tempfile::tempdir().unwrap();
    let cp_dir = tempfile::tempdir().unwrap();
    let node = open_node(data.path());
    // Without a checkpoint store the route says how to get one.
    let bare = driftdb_server::serve::start(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/admin/checkpoint", bare.bound.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("--checkpoint-url"),
        "{body}"
    );
    bare.shutdown().await.unwrap();

    let cps = Checkpoints::open(
        &url_of(cp_dir.path()),
        4,
        None,
        data.path().join(".checkpoint-work"),
    )
    .unwrap();
    let node = node.with_checkpoints(cps);
    let running = driftdb_server::serve::start(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.bound.http);
    let saved: Value = http
        .post(format!("{base}/admin/checkpoint"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["seq"], 1, "{saved}");
    assert_eq!(saved["saved"], true, "{saved}");
    let list: Value = http
        .get(format!("{base}/admin/checkpoints"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["url"], url_of(cp_dir.path()));
    assert_eq!(list["checkpoints"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["checkpoints"][0]["seq"], 1);
    assert_eq!(list["checkpoints"][0]["bytes"], saved["bytes"]);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("driftdb_checkpoints_total{result=\"saved\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("driftdb_checkpoint_last_seq 1\n"),
        "{metrics}"
    );
    // A graceful stop saves once more when something was written since.
    let def = serde_json::from_slice(&std::fs::read(golden("model.json")).unwrap()).unwrap();
    node.create_model(&Principal::unrestricted(), def).unwrap();
    running.shutdown().await.unwrap();
    let cps = node.checkpoints.clone().unwrap();
    assert_eq!(cps.seqs().await.unwrap(), vec![1, 2]);
    let target = tempfile::tempdir().unwrap();
    cps.restore(target.path()).await.unwrap().unwrap();
    let restored = open_node(target.path());
    assert!(restored.registry.get("fraud").is_ok());
}
