//! Checkpoints of a node's whole store in an object store, and the restore of the newest one
//! into an empty data directory: how a node's state outlives its machine, and how another
//! node takes it over (then replays Kafka from the source offsets the checkpoint holds, which
//! live in the store beside the sketches they produced).
//!
//! Layout under the checkpoint URL (`file:///dir`, `memory:///` in tests):
//!
//! ```text
//! objects/<sha256 of the content>      immutable file contents, shared by every checkpoint
//! checkpoints/<seq, 20 digits>.json    one manifest per checkpoint: file name → object
//! ```
//!
//! A save makes a RocksDB checkpoint in a scratch directory beside the store (hard links to
//! the SST files, memtables flushed first), uploads the files whose content is not stored yet
//! — SST files are immutable, so a checkpoint after a 15-minute window uploads the few files
//! written since the last one — and writes the manifest last, refusing to overwrite one: a
//! manifest names only objects that are complete, and a save cut short leaves no manifest.
//! Old manifests beyond `keep` are deleted, then every object no kept manifest names.
//!
//! One node saves under a URL at a time (the owner of the state); two nodes saving under one
//! URL would race on the manifest number, and the second is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use driftdb_storage::Store;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

mod manifest;
pub use manifest::{FORMAT, FileEntry, Manifest};

/// Manifests kept by default.
pub const DEFAULT_KEEP: usize = 4;

/// What a save did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saved {
    /// The manifest's number (the newest one's when nothing was saved).
    pub seq: u64,
    /// False when nothing was written to the store since this node's last save.
    pub saved: bool,
    /// Every write up to this RocksDB sequence number is in the newest checkpoint.
    pub store_sequence: u64,
    /// Files in the checkpoint and their bytes.
    pub files: usize,
    /// Bytes of the checkpoint.
    pub bytes: u64,
    /// Bytes uploaded (content not stored by an earlier checkpoint).
    pub uploaded_bytes: u64,
    /// Manifests deleted because more than `keep` were kept.
    pub pruned: usize,
    /// Objects deleted because no kept manifest names them.
    pub objects_deleted: usize,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restored {
    /// The manifest restored.
    pub seq: u64,
    /// Its files and their bytes.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Counters of `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    saved: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    uploaded_bytes: AtomicU64,
    last_seq: AtomicU64,
    last_success_ms: AtomicI64,
}

/// Holds webhook deliveries until a checkpoint holds the alert that asked for them, so a node
/// that takes the state over (restoring the newest checkpoint) never fires an alert the old
/// owner already delivered: either the checkpoint holds the alert (and its rule state), or the
/// alert was never delivered. The delivery worker asks for a save; each save (or a save that
/// found nothing new) moves `covered`. A delivery held longer than `hold_max` (the checkpoint
/// store is down) is sent anyway, counted and logged: late is worse than twice.
#[derive(Debug)]
pub struct DeliveryGate {
    covered: tokio::sync::watch::Sender<u64>,
    wanted: tokio::sync::Notify,
    hold_max: Duration,
    released_unsaved: AtomicU64,
}

impl DeliveryGate {
    /// A gate nothing covers yet; deliveries wait for it at most `hold_max`. Besides
    /// checkpoints, a cluster's membership record holds deliveries the same way
    /// (the `cluster` module).
    pub fn new(hold_max: Duration) -> DeliveryGate {
        DeliveryGate {
            covered: tokio::sync::watch::channel(0).0,
            wanted: tokio::sync::Notify::new(),
            hold_max,
            released_unsaved: AtomicU64::new(0),
        }
    }

    /// Every write up to this RocksDB sequence number is in a saved checkpoint.
    pub fn covered(&self) -> u64 {
        *self.covered.borrow()
    }

    /// Follows [`DeliveryGate::covered`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.covered.subscribe()
    }

    /// Asks for a save soon (requests while one runs make one more save, not many).
    pub fn want(&self) {
        self.wanted.notify_one();
    }

    /// The longest a delivery waits for a checkpoint.
    pub fn hold_max(&self) -> Duration {
        self.hold_max
    }

    /// Counts a delivery sent after `hold_max` without a checkpoint holding its alert.
    pub fn released_unsaved(&self) {
        self.released_unsaved.fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries sent after `hold_max` without this gate covering their alert.
    pub fn released_unsaved_total(&self) -> u64 {
        self.released_unsaved.load(Ordering::Relaxed)
    }

    /// Resolves when a held delivery asks for the gate to move ([`DeliveryGate::want`]).
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Every write up to store sequence `seq` is now held where a successor finds it.
    pub fn cover(&self, seq: u64) {
        self.covered.send_if_modified(|c| {
            let moved = seq > *c;
            if moved {
                *c = seq;
            }
            moved
        });
    }
}

/// A node's checkpoints under one URL.
#[derive(Debug)]
pub struct Checkpoints {
    os: Arc<dyn ObjectStore>,
    root: ObjPath,
    url: String,
    keep: usize,
    every: Option<Duration>,
    /// Scratch space on the store's file system (its RocksDB checkpoints are hard links).
    work: PathBuf,
    /// One save at a time; the store sequence of this node's last save.
    last: tokio::sync::Mutex<Option<u64>>,
    counters: Arc<Counters>,
    gate: Option<Arc<DeliveryGate>>,
}

fn os_err(what: &str) -> impl Fn(object_store::Error) -> Error + '_ {
    move |e| Error::Internal(format!("checkpoint store: {what}: {e}"))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn sha256_hex(digest: &[u8]) -> String {
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// SHA-256 and length of the file at `path`.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).map_err(io_err(path))?;
        if got == 0 {
            break;
        }
        ctx.update(&buf[..got]);
        n += got as u64;
    }
    Ok((sha256_hex(ctx.finish().as_ref()), n))
}

fn manifest_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

impl Checkpoints {
    /// Checkpoints under `url` (`file:///absolute/dir`; `memory:///` keeps them in this
    /// process, for tests), keeping the newest `keep`, saved every `every` by
    /// [`run_checkpoints`] (never when `None`), with scratch space in `work` — a directory on
    /// the store's file system, created when needed.
    pub fn open(
        url: &str,
        keep: usize,
        every: Option<Duration>,
        work: PathBuf,
    ) -> Result<Checkpoints> {
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::Invalid(format!(
                "checkpoint URL {url:?}: {e} (write file:///absolute/dir)"
            ))
        })?;
        let (os, root) = match parsed.scheme() {
            "file" | "memory" => object_store::parse_url(&parsed)
                .map_err(|e| Error::Invalid(format!("checkpoint URL {url:?}: {e}")))?,
            other => {
                return Err(Error::Invalid(format!(
                    "checkpoint URL {url:?}: scheme {other:?} is not supported by this build \
                     (file:// is; S3 and GCS are not built in yet)"
                )));
            }
        };
        if keep == 0 {
            return Err(Error::Invalid(
                "checkpoint keep must be at least 1".to_string(),
            ));
        }
        if every.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err(Error::Invalid(
                "checkpoint every must be at least 1s".to_string(),
            ));
        }
        Ok(Checkpoints {
            os: Arc::from(os),
            root,
            url: url.to_string(),
            keep,
            every,
            work,
            last: tokio::sync::Mutex::new(None),
            counters: Arc::new(Counters::default()),
            gate: None,
        })
    }

    /// These checkpoints with a [`DeliveryGate`]: webhook deliveries wait (at most
    /// `hold_max`) until a saved checkpoint holds their alert.
    pub fn with_delivery_gate(mut self, hold_max: Duration) -> Checkpoints {
        self.gate = Some(Arc::new(DeliveryGate::new(hold_max)));
        self
    }

    /// The delivery gate, when deliveries wait for checkpoints.
    pub fn gate(&self) -> Option<Arc<DeliveryGate>> {
        self.gate.clone()
    }

    /// The URL they live under.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How often [`run_checkpoints`] saves.
    pub fn every(&self) -> Option<Duration> {
        self.every
    }

    fn child(&self, parts: &[&str]) -> ObjPath {
        parts
            .iter()
            .fold(self.root.clone(), |p, part| p.join(*part))
    }

    /// Names under `dir` (`checkpoints` or `objects`), the last path segment of each object.
    async fn names(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self.sizes(dir).await?.into_iter().map(|(n, _)| n).collect())
    }

    /// Names under `dir` with their sizes.
    async fn sizes(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = self.child(&[dir]);
        let mut out = Vec::new();
        let mut list = self.os.list(Some(&prefix));
        while let Some(item) = list.next().await {
            match item {
                Ok(meta) => {
                    if let Some(name) = meta.location.filename() {
                        out.push((name.to_string(), meta.size));
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_err("list")(e)),
            }
        }
        Ok(out)
    }

    /// The numbers of the stored manifests, oldest first.
    pub async fn seqs(&self) -> Result<Vec<u64>> {
        let mut seqs: Vec<u64> = self
            .names("checkpoints")
            .await?
            .iter()
            .filter_map(|n| n.strip_suffix(".json")?.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Manifest `seq`, checked: its format, its number, its file names.
    pub async fn manifest(&self, seq: u64) -> Result<Manifest> {
        let path = self.child(&["checkpoints", &manifest_name(seq)]);
        let bytes = self
            .os
            .get(&path)
            .await
            .map_err(os_err("read manifest"))?
            .bytes()
            .await
            .map_err(os_err("read manifest"))?;
        Manifest::parse(&bytes, seq).map_err(|detail| Error::Corruption {
            what: "checkpoint manifest",
            detail: format!("{path}: {detail}"),
        })
    }

    /// The newest manifest, if any.
    pub async fn latest(&self) -> Result<Option<Manifest>> {
        match self.seqs().await?.last() {
            Some(&seq) => Ok(Some(self.manifest(seq).await?)),
            None => Ok(None),
        }
    }

    /// Saves a checkpoint of `store` (unless nothing was written since this node's last save)
    /// and prunes old ones. `now_ms` stamps the manifest.
    pub async fn save(&self, store: &Arc<Store>, now_ms: i64) -> Result<Saved> {
        let res = self.save_inner(store, now_ms).await;
        let c = &self.counters;
        if let (Ok(s), Some(g)) = (&res, &self.gate) {
            g.cover(s.store_sequence);
        }
        match &res {
            Ok(s) if s.saved => {
                c.saved.fetch_add(1, Ordering::Relaxed);
                c.uploaded_bytes
                    .fetch_add(s.uploaded_bytes, Ordering::Relaxed);
                c.last_seq.store(s.seq, Ordering::Relaxed);
                c.last_success_ms.store(now_ms, Ordering::Relaxed);
            }
            Ok(_) => {
                c.skipped.fetch_add(1, Ordering::Relaxed);
                c.last_success_ms.store(now_ms, Ordering::Relaxed);
            }
            Err(_) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        res
    }

    async fn save_inner(&self, store: &Arc<Store>, now_ms: i64) -> Result<Saved> {
        let mut last = self.last.lock().await;
        let seqs = self.seqs().await?;
        let newest = seqs.last().copied().unwrap_or(0);
        let store_sequence = store.latest_sequence();
        if *last == Some(store_sequence) {
            return Ok(Saved {
                seq: newest,
                saved: false,
                store_sequence,
                files: 0,
                bytes: 0,
                uploaded_bytes: 0,
                pruned: 0,
                objects_deleted: 0,
            });
        }
        let seq = newest + 1;
        std::fs::create_dir_all(&self.work).map_err(io_err(&self.work))?;
        let scratch = self.work.join(format!("save-{seq}"));
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(io_err(&scratch))?;
        }
        // The copy and the hashes: blocking file work.
        let st = Arc::clone(store);
        let dir = scratch.clone();
        let (files, copied_sequence) = tokio::task::spawn_blocking(move || {
            // Read before the copy: every write up to it is in the copy (later ones may be).
            let at = st.latest_sequence();
            st.checkpoint(&dir)?;
            let mut names = Vec::new();
            for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let e = e.map_err(io_err(&dir))?;
                if e.file_type().map_err(io_err(&dir))?.is_file() {
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
            }
            names.sort();
            let mut files = Vec::with_capacity(names.len());
            for name in names {
                let (sha256, bytes) = hash_file(&dir.join(&name))?;
                files.push(FileEntry {
                    name,
                    bytes,
                    sha256,
                });
            }
            Ok::<_, Error>((files, at))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let result = self
            .upload(&scratch, seq, now_ms, copied_sequence, files)
            .await;
        if let Err(e) = std::fs::remove_dir_all(&scratch) {
            tracing::warn!(dir = %scratch.display(), error = %e, "checkpoint: cannot remove the scratch copy");
        }
        let mut saved = result?;
        *last = Some(copied_sequence);
        let (pruned, deleted) = self.prune().await?;
        saved.pruned = pruned;
        saved.objects_deleted = deleted;
        Ok(saved)
    }

    async fn upload(
        &self,
        scratch: &Path,
        seq: u64,
        now_ms: i64,
        store_sequence: u64,
        files: Vec<FileEntry>,
    ) -> Result<Saved> {
        // An object of the same content and length is reused; one whose length is off (cut
        // short, or damaged) is uploaded again over it.
        let mut stored: BTreeMap<String, u64> = self.sizes("objects").await?.into_iter().collect();
        let mut uploaded_bytes = 0;
        for f in &files {
            if stored.get(&f.sha256) == Some(&f.bytes) {
                continue;
            }
            let path = scratch.join(&f.name);
            let mut src = tokio::fs::File::open(&path).await.map_err(io_err(&path))?;
            let mut dst = object_store::buffered::BufWriter::new(
                Arc::clone(&self.os),
                self.child(&["objects", &f.sha256]),
            );
            let n = tokio::io::copy(&mut src, &mut dst).await.map_err(|e| {
                Error::Internal(format!("checkpoint store: upload {}: {e}", f.name))
            })?;
            dst.shutdown().await.map_err(|e| {
                Error::Internal(format!("checkpoint store: upload {}: {e}", f.name))
            })?;
            if n != f.bytes {
                return Err(Error::Internal(format!(
                    "checkpoint: {} changed while it was uploaded ({} bytes hashed, {n} sent)",
                    f.name, f.bytes
                )));
            }
            uploaded_bytes += n;
            stored.insert(f.sha256.clone(), n);
        }
        let manifest = Manifest {
            format: FORMAT,
            seq,
            created_ms: now_ms,
            store_sequence,
            files,
        };
        let body =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .os
            .put_opts(
                &self.child(&["checkpoints", &manifest_name(seq)]),
                PutPayload::from(body),
                opts,
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::Invalid(format!(
                    "checkpoint {seq} under {} was saved by someone else meanwhile: one node \
                     saves under a checkpoint URL at a time",
                    self.url
                )));
            }
            Err(e) => return Err(os_err("write manifest")(e)),
        }
        Ok(Saved {
            seq,
            saved: true,
            store_sequence,
            files: manifest.files.len(),
            bytes: manifest.bytes(),
            uploaded_bytes,
            pruned: 0,
            objects_deleted: 0,
        })
    }

    /// Deletes manifests beyond the newest `keep`, then the objects no kept manifest names.
    async fn prune(&self) -> Result<(usize, usize)> {
        let seqs = self.seqs().await?;
        if seqs.len() <= self.keep {
            return Ok((0, 0));
        }
        let cut = seqs.len() - self.keep;
        let mut keep = BTreeSet::new();
        for &seq in &seqs[cut..] {
            for f in self.manifest(seq).await?.files {
                keep.insert(f.sha256);
            }
        }
        for &seq in &seqs[..cut] {
            self.os
                .delete(&self.child(&["checkpoints", &manifest_name(seq)]))
                .await
                .map_err(os_err("delete manifest"))?;
        }
        let mut deleted = 0;
        for name in self.names("objects").await? {
            if !keep.contains(&name) {
                self.os
                    .delete(&self.child(&["objects", &name]))
                    .await
                    .map_err(os_err("delete object"))?;
                deleted += 1;
            }
        }
        Ok((cut, deleted))
    }

    /// Restores the newest checkpoint into `dir`, which must hold no store (other files, such
    /// as a key file, may be there). Every file is checked against its length and SHA-256
    /// before the store's files appear in `dir`. `None` when there is no checkpoint.
    pub async fn restore(&self, dir: &Path) -> Result<Option<Restored>> {
        if dir.join("CURRENT").exists() {
            return Err(Error::Invalid(format!(
                "{} already holds a store: a checkpoint is restored into an empty data directory only",
                dir.display()
            )));
        }
        let Some(m) = self.latest().await? else {
            return Ok(None);
        };
        let tmp = dir.join(".restoring");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        for f in &m.files {
            self.download(f, &tmp.join(&f.name)).await?;
        }
        // Every file is complete and checked: move them in, CURRENT last (RocksDB opens
        // nothing without it).
        let mut order: Vec<&FileEntry> = m.files.iter().collect();
        order.sort_by_key(|f| f.name == "CURRENT");
        for f in order {
            let from = tmp.join(&f.name);
            std::fs::rename(&from, dir.join(&f.name)).map_err(io_err(&from))?;
        }
        std::fs::remove_dir(&tmp).map_err(io_err(&tmp))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        Ok(Some(Restored {
            seq: m.seq,
            files: m.files.len(),
            bytes: m.bytes(),
        }))
    }

    async fn download(&self, f: &FileEntry, to: &Path) -> Result<()> {
        let got = self
            .os
            .get(&self.child(&["objects", &f.sha256]))
            .await
            .map_err(os_err("read object"))?;
        let mut stream = got.into_stream();
        let mut out = tokio::fs::File::create(to).await.map_err(io_err(to))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(os_err("read object"))?;
            ctx.update(&chunk);
            n += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(io_err(to))?;
        }
        out.sync_all().await.map_err(io_err(to))?;
        let sha = sha256_hex(ctx.finish().as_ref());
        if n != f.bytes || sha != f.sha256 {
            return Err(Error::Corruption {
                what: "checkpoint object",
                detail: format!(
                    "{}: {n} bytes with SHA-256 {sha}, the manifest says {} bytes with {}",
                    f.name, f.bytes, f.sha256
                ),
            });
        }
        Ok(())
    }

    /// The checkpoint series of `/metrics`.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.counters;
        let mut s = String::new();
        let head = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
        };
        head(
            &mut s,
            "driftdb_checkpoints_total",
            "counter",
            "Checkpoint saves by result (skipped: nothing written since the last).",
        );
        for (name, v) in [
            ("saved", &c.saved),
            ("skipped", &c.skipped),
            ("failed", &c.failed),
        ] {
            let _ = writeln!(
                s,
                "driftdb_checkpoints_total{{result=\"{name}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let last_success = c.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        for (name, kind, help, value) in [
            (
                "driftdb_checkpoint_uploaded_bytes_total",
                "counter",
                "Bytes uploaded to the checkpoint store.",
                c.uploaded_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "driftdb_checkpoint_deliveries_unheld_total",
                "counter",
                "Webhook deliveries sent after waiting the longest for a checkpoint that never came.",
                self.gate.as_ref().map_or(0, |g| g.released_unsaved_total()) as f64,
            ),
            (
                "driftdb_checkpoint_last_seq",
                "gauge",
                "Number of the last checkpoint this node saved.",
                c.last_seq.load(Ordering::Relaxed) as f64,
            ),
            (
                "driftdb_checkpoint_last_success_timestamp_seconds",
                "gauge",
                "When the last save succeeded (or found nothing new).",
                last_success,
            ),
        ] {
            head(&mut s, name, kind, help);
            let _ = writeln!(s, "{name} {value}");
        }
        s
    }
}

/// Saves a checkpoint every [`Checkpoints::every`], whenever a held delivery asks
/// ([`DeliveryGate::want`]) and once more when `stop` turns true; a failed save is logged, counted and tried again at
/// the next tick or request. Like the server's other tasks it ends only when stopped.
pub async fn run_checkpoints(
    store: Arc<Store>,
    checkpoints: Arc<Checkpoints>,
    clock: Arc<dyn driftdb_engine::time::Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut tick = checkpoints.every().map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let gate = checkpoints.gate();
    loop {
        let ticked = async {
            match tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let wanted = async {
            match &gate {
                Some(g) => g.wanted().await,
                None => std::future::pending::<()>().await,
            }
        };
        let stopping = tokio::select! {
            () = ticked => false,
            () = wanted => false,
            _ = stop.wait_for(|v| *v) => true,
        };
        if stopping {
            // A last save on a graceful stop: a node moved on purpose hands over its whole
            // state and its successor replays nothing.
            match checkpoints.save(&store, clock.now().millis()).await {
                Ok(s) if s.saved => tracing::info!(seq = s.seq, "checkpoint saved at shutdown"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint at shutdown failed; the newest saved one stands")
                }
            }
            return Ok(());
        }
        match checkpoints.save(&store, clock.now().millis()).await {
            Ok(s) if s.saved => tracing::info!(
                seq = s.seq,
                files = s.files,
                bytes = s.bytes,
                uploaded = s.uploaded_bytes,
                "checkpoint saved"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, url = checkpoints.url(), "checkpoint failed; trying again at the next tick or request");
                // A held delivery asks again at once: do not spin on a store that is down.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|v| *v) => return Ok(()),
                }
            }
        }
    }
}
