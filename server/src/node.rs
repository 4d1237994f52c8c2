//! A running driftdb node: the store, the model registry, ingest, rules and alerts, API keys,
//! the clock and the counters, and the API the transports call.
//!
//! The node's API takes and returns engine and query types (model definitions, inference
//! batches, label rows, tables); protobuf and JSON live in the transports (`crate::grpc`,
//! `crate::http`, converted by `crate::convert`). Data flows one way: the transports depend on
//! the node, never the reverse, and the modules the node is made of (registry, ingest, rules,
//! auth, maintenance) never name the node either (a test checks the module graph).

use std::path::Path;
use std::sync::Arc;

use driftdb_engine::ingest::InferenceBatch;
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{ReferenceBuilder, ReferenceProfile};
use driftdb_engine::time::{Clock, Timestamp};
use driftdb_query::{Context, QueryOutput};
use driftdb_storage::{Store, StoreConfig};

use crate::auth::admin::KeyRequest;
use crate::auth::{Auth, AuthMode, KeyRecord, NewKey, Principal};
use crate::error::{Error, Result};
use crate::ingest::{BatchAck, Ingest, LabelAck, LabelIn, Source};
use crate::limits::{Gates, Limits};
use crate::metrics::Metrics;
use crate::registry::{ModelEntry, Registry};
use crate::rules::{AlertFilter, AlertRecord, DeliveryRecord, Rules, RulesConfig, StoredRule};

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct Node {
    /// The store.
    pub store: Arc<Store>,
    /// Models and references.
    pub registry: Arc<Registry>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Ingest requests allowed in flight before RESOURCE_EXHAUSTED.
    pub ingest_permits: Arc<tokio::sync::Semaphore>,
    /// Rules, alert log and webhook outbox.
    pub rules: Arc<Rules>,
    /// API keys and whether they are required.
    pub auth: Arc<Auth>,
    /// Bounds on requests held at once.
    pub limits: Limits,
    /// The semaphores enforcing `limits`.
    pub gates: Arc<Gates>,
    /// External sources' counters, lag and rejected records (the Kafka consumer).
    pub sources: Arc<crate::sources::Sources>,
    /// Where the store is checkpointed, if anywhere (`serve --checkpoint-url`).
    pub checkpoints: Option<Arc<crate::checkpoint::Checkpoints>>,
    /// Membership and request routing when the node is one of several (`serve --cluster`).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Node {
    /// Opens the store under `dir` and loads the registry, with default rule settings. `auth`
    /// says whether callers need API keys: there is no default, every caller states it.
    pub fn open(
        dir: &Path,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        auth: AuthMode,
    ) -> Result<Node> {
        Node::open_with(dir, config, RulesConfig::default(), clock, auth)
    }

    /// Opens the store under `dir` and loads the registry, rules, alert log and API keys.
    pub fn open_with(
        dir: &Path,
        config: StoreConfig,
        rules: RulesConfig,
        clock: Arc<dyn Clock>,
        auth: AuthMode,
    ) -> Result<Node> {
        let store = Arc::new(Store::open(dir, config, Arc::clone(&clock))?);
        let registry = Arc::new(Registry::load(Arc::clone(&store))?);
        let rules = Arc::new(Rules::open(
            Arc::clone(&store),
            Arc::clone(&registry),
            Arc::clone(&clock),
            rules,
        )?);
        let auth = Arc::new(Auth::open(Arc::clone(&store), auth)?);
        if auth.mode() == AuthMode::Disabled {
            tracing::warn!(
                "authentication is switched off: every caller is an operator with every scope (local use only)"
            );
        }
        let limits = Limits::default();
        Ok(Node {
            store,
            registry,
            clock,
            metrics: Arc::new(Metrics::default()),
            ingest_permits: Arc::new(tokio::sync::Semaphore::new(limits.ingest_concurrency)),
            rules,
            auth,
            gates: Arc::new(Gates::new(&limits)),
            limits,
            sources: Arc::new(crate::sources::Sources::default()),
            checkpoints: None,
            cluster: None,
        })
    }

    /// The node with its store checkpointed by `checkpoints` (call before serving).
    /// When they carry a delivery gate, webhook deliveries wait for a checkpoint that holds
    /// their alert.
    pub fn with_checkpoints(mut self, checkpoints: crate::checkpoint::Checkpoints) -> Node {
        if let Some(g) = checkpoints.gate() {
            self.rules.hold_deliveries(g);
        }
        self.checkpoints = Some(Arc::new(checkpoints));
        self
    }

    /// The node as a member of a cluster (call before serving).
    ///
    /// Its rules are evaluated only for the models it serves, starting where a model's
    /// previous owner left off, and webhook deliveries wait for the membership record that
    /// holds their rule state (docs/SCALE_OUT.md, "Alerts across a handover between nodes").
    pub fn with_cluster(mut self, cluster: crate::cluster::Cluster) -> Node {
        let cluster = Arc::new(cluster);
        self.rules
            .set_ownership(Arc::clone(&cluster) as Arc<dyn crate::rules::Ownership>);
        self.rules.hold_deliveries(cluster.gate());
        self.cluster = Some(cluster);
        self
    }

    /// The rule [`crate::rules::Handover`] of each of `models` (what a cluster member
    /// publishes for the models it serves).
    pub fn rule_handover(
        &self,
        models: &[String],
    ) -> Result<std::collections::BTreeMap<String, crate::rules::Handover>> {
        crate::rules::handover_of(&self.rules, models)
    }

    /// The partitions of Kafka topic `topic` each model's inferences came from (see
    /// [`crate::ingest::kafka_partitions`]).
    pub fn kafka_partitions(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<String, std::collections::BTreeSet<i32>>> {
        crate::ingest::kafka_partitions(&self.store, topic)
    }

    /// Saves a checkpoint now (`POST /admin/checkpoint`).
    pub async fn save_checkpoint(&self) -> Result<crate::checkpoint::Saved> {
        let Some(c) = &self.checkpoints else {
            return Err(Error::Invalid(
                "this node has no checkpoint store (serve --checkpoint-url)".to_string(),
            ));
        };
        c.save(&self.store, self.clock.now().millis()).await
    }

    /// The node with other limits (fresh gates; call before serving).
    pub fn with_limits(mut self, limits: Limits) -> Node {
        self.ingest_permits = Arc::new(tokio::sync::Semaphore::new(
            limits.ingest_concurrency.max(1),
        ));
        self.gates = Arc::new(Gates::new(&limits));
        self.limits = limits;
        self
    }

    fn ingest(&self) -> Ingest {
        Ingest {
            store: Arc::clone(&self.store),
            registry: Arc::clone(&self.registry),
            clock: Arc::clone(&self.clock),
            metrics: Arc::clone(&self.metrics),
        }
    }

    // ---- models and references ----

    /// Registers a model for `caller` (a team key's models belong to its team).
    pub fn create_model(&self, caller: &Principal, def: ModelDef) -> Result<Arc<ModelEntry>> {
        let def = crate::auth::own_model(caller, def)?;
        self.registry.create(def)
    }

    /// A model `caller` may see; NOT_FOUND otherwise (another team's model does not exist for
    /// it).
    pub fn model(&self, caller: &Principal, id: &str) -> Result<Arc<ModelEntry>> {
        crate::auth::visible_model(&self.registry, caller, id)
    }

    /// The models `caller` may see, by id.
    pub fn models(&self, caller: &Principal) -> Result<Vec<Arc<ModelEntry>>> {
        Ok(self
            .registry
            .list()?
            .into_iter()
            .filter(|m| caller.sees_model(&m.def))
            .collect())
    }

    /// Starts a reference upload for `caller`: the model and a builder for its version.
    pub fn reference_builder(
        &self,
        caller: &Principal,
        model: &str,
        version: &str,
    ) -> Result<(Arc<ModelEntry>, ReferenceBuilder)> {
        let entry = self.model(caller, model)?;
        let builder = ReferenceBuilder::new(&entry.def, version)?;
        Ok((entry, builder))
    }

    /// Finishes a reference upload and stores the profile (refusing to overwrite an existing
    /// version unless `replace`). Runs on the blocking pool.
    pub async fn finish_reference(
        &self,
        model: Arc<ModelEntry>,
        builder: ReferenceBuilder,
        replace: bool,
    ) -> Result<()> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let profile: ReferenceProfile = builder.finish(node.clock.now())?;
            node.registry.put_reference(&model, profile, replace)
        })
        .await
        .map_err(|e| Error::Internal(format!("reference task: {e}")))?
    }

    // ---- ingest ----

    /// Ingests one inference batch of `model` (already checked visible to the caller); the ack
    /// comes after the durable write. Wakes the rule scheduler when the batch moved the model's
    /// event time.
    pub async fn ingest_inferences(
        &self,
        model: Arc<ModelEntry>,
        batch: InferenceBatch,
        source: Source,
    ) -> Result<BatchAck> {
        let id = model.def.id.clone();
        let ack = crate::ingest::ingest_inferences(&self.ingest(), model, batch, source).await?;
        if let Some((newest, versions)) = &ack.observed {
            self.rules.observe(&id, *newest, versions.iter().cloned());
        }
        Ok(ack)
    }

    /// The ordered first half of [`Node::ingest_inferences`] (schema check, replay and dedup,
    /// segment admission, a place in the model's write order); [`Node::write_staged`] does
    /// the rest. A stream stages its next batch while the previous one is written.
    pub async fn stage_inferences(
        &self,
        model: Arc<ModelEntry>,
        batch: InferenceBatch,
        source: Source,
    ) -> Result<crate::ingest::StagedBatch> {
        crate::ingest::stage_inference_batch(&self.ingest(), model, batch, source).await
    }

    /// Folds and durably writes a batch of `model_id` staged by [`Node::stage_inferences`]
    /// (`broken`: see [`crate::ingest::write_staged`]).
    pub async fn write_staged(
        &self,
        model_id: &str,
        staged: crate::ingest::StagedBatch,
        broken: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<BatchAck> {
        let ack = crate::ingest::write_staged(&self.ingest(), staged, broken).await?;
        if let Some((newest, versions)) = &ack.observed {
            self.rules
                .observe(model_id, *newest, versions.iter().cloned());
        }
        Ok(ack)
    }

    /// The last sequence of `producer` applied to `model`'s `stream`, if any.
    pub fn applied_sequence(
        &self,
        stream: crate::ingest::Stream,
        model: &str,
        producer: &str,
    ) -> Result<Option<u64>> {
        crate::ingest::applied_sequence(&self.ingest(), stream, model, producer)
    }

    /// A source's saved checkpoint (see [`crate::ingest::source_checkpoint`]).
    pub fn source_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        crate::ingest::source_checkpoint(&self.ingest(), name)
    }

    /// Saves a source's checkpoint durably.
    pub fn save_source_checkpoint(&self, name: &str, value: u64) -> Result<()> {
        crate::ingest::save_source_checkpoint(&self.ingest(), name, value)
    }

    /// Ingests one label batch of `model`; the ack comes after the durable write.
    pub async fn ingest_labels(
        &self,
        model: Arc<ModelEntry>,
        labels: Vec<LabelIn>,
        source: Source,
    ) -> Result<LabelAck> {
        crate::ingest::ingest_labels(&self.ingest(), model, labels, source).await
    }

    // ---- queries ----

    /// Runs `f` on the blocking pool with a query context over this node as `caller` sees it.
    pub async fn with_query_context<T, F>(&self, caller: &Principal, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Context<'_>) -> Result<T> + Send + 'static,
    {
        crate::query::with_context(
            &self.store,
            &self.registry,
            &self.clock,
            &self.gates.queries,
            caller,
            f,
        )
        .await
    }

    /// Parses, plans and runs one DriftQL statement as `caller`.
    pub async fn query(&self, caller: &Principal, text: String) -> Result<QueryOutput> {
        self.with_query_context(caller, move |ctx| Ok(driftdb_query::run(ctx, &text)?))
            .await
    }

    /// The drift summary of a model as `caller` sees it.
    pub async fn drift_summary(
        &self,
        caller: &Principal,
        model: String,
        version: Option<String>,
        from: Option<crate::query::TimeArg>,
        to: Option<crate::query::TimeArg>,
    ) -> Result<driftdb_query::DriftSummary> {
        self.with_query_context(caller, move |ctx| {
            let now = ctx.now;
            Ok(driftdb_query::drift_summary(
                ctx,
                &model,
                version.as_deref(),
                from.map(|t| t.resolve(now)),
                to.map(|t| t.resolve(now)),
            )
            .map_err(crate::query::without_placeholder_pos)?)
        })
        .await
    }

    /// The report of a model over a range as `caller` sees it (`driftdb report`, `/ui`):
    /// `from` defaults to 24 hours before `to`, `to` to the end of the current window.
    pub async fn report(
        &self,
        caller: &Principal,
        req: ReportArgs,
    ) -> Result<driftdb_report::Report> {
        self.with_query_context(caller, move |ctx| {
            let now = ctx.now;
            let to = req.to.map_or(now, |t| t.resolve(now));
            let from = req
                .from
                .map_or(to.saturating_add_ms(-86_400_000), |t| t.resolve(now));
            if from >= to {
                return Err(Error::Invalid(
                    "empty range: `from` must be before `to`".into(),
                ));
            }
            let request = driftdb_report::build::Request {
                model: req.model,
                version: req.version,
                from,
                to,
                step_ms: req.step_ms,
                by: req.by,
                source: req.source,
                generated_at_ms: now.0,
            };
            Ok(driftdb_report::build::build(ctx, &request)
                .map_err(crate::query::without_placeholder_pos)?)
        })
        .await
    }

    // ---- rules and alerts ----

    /// Stores a rule given as JSON text for `caller` (see [`crate::rules::create_rule`]).
    pub fn create_rule(&self, caller: &Principal, json: &str) -> Result<Arc<StoredRule>> {
        crate::rules::create_rule(&self.rules, caller, json)
    }

    /// Deletes rule `id` for `caller`.
    pub fn delete_rule(&self, caller: &Principal, id: &str) -> Result<()> {
        crate::rules::delete_rule(&self.rules, caller, id)
    }

    /// Acknowledges firing `seq` for `caller`.
    pub fn acknowledge_alert(
        &self,
        caller: &Principal,
        seq: u64,
        by: &str,
        comment: &str,
    ) -> Result<AlertRecord> {
        crate::rules::acknowledge_alert(&self.rules, caller, seq, by, comment)
    }

    /// Creates a silence from its JSON text for `caller`.
    pub fn create_silence(
        &self,
        caller: &Principal,
        json: &str,
    ) -> Result<crate::rules::StoredSilence> {
        crate::rules::create_silence(&self.rules, caller, json)
    }

    /// Ends silence `id` now for `caller`.
    pub fn expire_silence(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<crate::rules::StoredSilence> {
        crate::rules::expire_silence(&self.rules, caller, id)
    }

    /// The silences `caller` may see (expired ones too with `expired`).
    pub fn silences_of(
        &self,
        caller: &Principal,
        expired: bool,
    ) -> Vec<crate::rules::StoredSilence> {
        crate::rules::visible_silences(&self.rules, caller, expired)
    }

    /// One silence with every stored version, if `caller` may see it.
    pub fn silence(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<(
        crate::rules::StoredSilence,
        Vec<crate::rules::StoredSilence>,
    )> {
        crate::rules::silence_history(&self.rules, caller, id)
    }

    /// The rules `caller` may see that apply to `model` (every one for `None`).
    pub fn rules_of(&self, caller: &Principal, model: Option<&str>) -> Vec<Arc<StoredRule>> {
        crate::rules::visible_rules(&self.rules, caller, model)
    }

    /// The last evaluation error of rule `id`, if any.
    pub fn rule_error(&self, id: &str) -> Option<String> {
        self.rules.book.error(id)
    }

    /// Alert episodes `caller` may see, newest first.
    pub fn alert_history(
        &self,
        caller: &Principal,
        model: Option<&str>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        crate::rules::alert_history(&self.rules, caller, model, from, to, limit)
    }

    /// The dead-lettered deliveries of alerts `caller` may see.
    pub fn dead_letters(&self, caller: &Principal) -> Result<Vec<DeliveryRecord>> {
        crate::rules::visible_dead_letters(&self.rules, caller)
    }

    /// Announces `event` for `model`: every event rule waiting for it fires once.
    pub fn announce_event(
        &self,
        caller: &Principal,
        model: &str,
        event: &str,
        version: Option<&str>,
    ) -> Result<Vec<AlertRecord>> {
        crate::rules::announce_event(&self.rules, caller, model, event, version)
    }

    /// The alerts after sequence `after` passing `filter`, then each new one (see
    /// [`crate::rules::watch`]).
    pub fn watch_alerts(
        &self,
        after: u64,
        filter: AlertFilter,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> tokio::sync::mpsc::Receiver<AlertRecord> {
        crate::rules::watch(Arc::clone(&self.rules), after, filter, slot)
    }

    // ---- API keys ----

    /// Creates an API key for `caller` (see [`crate::auth::admin`] for who may create what).
    pub fn create_key(&self, caller: &Principal, req: KeyRequest) -> Result<NewKey> {
        crate::auth::admin::create_key(&self.auth, caller, req, self.clock.now())
    }

    /// The keys `caller` may see.
    pub fn keys(&self, caller: &Principal) -> Vec<KeyRecord> {
        crate::auth::admin::list_keys(&self.auth, caller)
    }

    /// Revokes key `id` for `caller`.
    pub fn revoke_key(&self, caller: &Principal, id: &str) -> Result<KeyRecord> {
        crate::auth::admin::revoke_key(&self.auth, caller, id, self.clock.now())
    }
}

/// What [`Node::report`] reports on.
#[derive(Debug, Clone, Default)]
pub struct ReportArgs {
    /// Model id.
    pub model: String,
    /// Version; the model's default when `None`.
    pub version: Option<String>,
    /// Range start.
    pub from: Option<crate::query::TimeArg>,
    /// Range end (exclusive).
    pub to: Option<crate::query::TimeArg>,
    /// Column width of the time series, in milliseconds.
    pub step_ms: Option<i64>,
    /// Segment key of the per-segment table.
    pub by: Option<String>,
    /// Where the data came from, for the header.
    pub source: String,
}
