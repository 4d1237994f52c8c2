//! The model registry: model definitions, admitted segment values and reference profiles, kept
//! in the `meta` and `reference` families and cached in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use driftdb_engine::ingest::SegmentRegistry;
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::time::Resolution;
use driftdb_storage::layout::{self, KeyWriter};
use driftdb_storage::{Family, Store, WriteSet};

use crate::error::{Error, Result};
use crate::records::{self, AdmittedSegments};

fn model_key(id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_MODEL).str(id).finish()
}
fn segments_key(id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::META_SEGMENTS)
        .str(id)
        .finish()
}
/// Prefix of every reference profile of a model (`'H' | str(model)`).
fn reference_prefix(id: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::REFERENCE_HEADER)
        .str(id)
        .finish()
}
fn reference_key(id: &str, version: &str) -> Vec<u8> {
    KeyWriter::with_prefix(layout::REFERENCE_HEADER)
        .str(id)
        .str(version)
        .finish()
}

/// A registered model with everything ingest needs at hand.
#[derive(Debug)]
pub struct ModelEntry {
    /// The definition.
    pub def: ModelDef,
    /// Its window resolution.
    pub resolution: Resolution,
    /// Reference profiles by version, shared so queries borrow them without copying.
    pub references: RwLock<BTreeMap<String, Arc<ReferenceProfile>>>,
    /// Admitted segment values (cardinality cap), persisted on change.
    pub segments: Mutex<SegmentRegistry>,
    /// Serialises the ordered steps of ingest of this model (replay and request-id checks,
    /// segment admission, labels) so request-id dedup sees every earlier batch.
    pub ingest_lock: tokio::sync::Mutex<()>,
    /// The write order of inference batches whose columns fold outside `ingest_lock`.
    pub pipeline: Arc<crate::pipeline::Pipeline>,
}

/// All models, cached over the store.
#[derive(Debug)]
pub struct Registry {
    store: Arc<Store>,
    models: RwLock<BTreeMap<String, Arc<ModelEntry>>>,
    /// The last few whole profiles (sketches included) read back from the store for
    /// statistics that need the reference's CDF; `ModelEntry::references` holds profiles
    /// without sketches.
    whole: Mutex<Vec<(String, String, Arc<ReferenceProfile>)>>,
}

/// Whole reference profiles kept after a read ([`Registry`]'s `whole`).
const WHOLE_PROFILES_CACHED: usize = 8;

fn poisoned<T>(_: T) -> Error {
    Error::Internal("registry lock poisoned".into())
}

impl Registry {
    /// Loads every model and reference from the store.
    pub fn load(store: Arc<Store>) -> Result<Self> {
        let mut models = BTreeMap::new();
        for e in store
            .family(Family::Meta)
            .scan_prefix(&[layout::META_MODEL])?
        {
            let e = e?;
            let def: ModelDef = records::decode(&e)?;
            let resolution = def.validate()?;
            let mut segs = SegmentRegistry::new(def.segment_cap as usize);
            if let Some(s) =
                records::get::<AdmittedSegments>(&store, Family::Meta, &segments_key(&def.id))?
            {
                segs = SegmentRegistry::from_admitted(def.segment_cap as usize, s.0);
            }
            let mut refs = BTreeMap::new();
            for r in store
                .family(Family::Reference)
                .scan_prefix(&reference_prefix(&def.id))?
            {
                let r = r?;
                let p: ReferenceProfile = records::decode(&r)?;
                refs.insert(p.version.clone(), Arc::new(p.without_sketches()));
            }
            models.insert(
                def.id.clone(),
                Arc::new(ModelEntry {
                    def,
                    resolution,
                    references: RwLock::new(refs),
                    segments: Mutex::new(segs),
                    ingest_lock: tokio::sync::Mutex::new(()),
                    pipeline: Default::default(),
                }),
            );
        }
        Ok(Registry {
            store,
            models: RwLock::new(models),
            whole: Mutex::new(Vec::new()),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Registers a model; fails if the id exists with a different definition.
    pub fn create(&self, def: ModelDef) -> Result<Arc<ModelEntry>> {
        let resolution = def.validate()?;
        let mut models = self.models.write().map_err(poisoned)?;
        if let Some(existing) = models.get(&def.id) {
            if existing.def == def {
                return Ok(Arc::clone(existing));
            }
            return Err(Error::AlreadyExists {
                what: "model",
                name: def.id,
            });
        }
        let mut ws = WriteSet::new();
        records::put(&mut ws, Family::Meta, model_key(&def.id), &def)?;
        self.store.write(&ws)?;
        let entry = Arc::new(ModelEntry {
            segments: Mutex::new(SegmentRegistry::new(def.segment_cap as usize)),
            def,
            resolution,
            references: RwLock::new(BTreeMap::new()),
            ingest_lock: tokio::sync::Mutex::new(()),
            pipeline: Default::default(),
        });
        models.insert(entry.def.id.clone(), Arc::clone(&entry));
        Ok(entry)
    }

    /// A model by id.
    pub fn get(&self, id: &str) -> Result<Arc<ModelEntry>> {
        self.models
            .read()
            .map_err(poisoned)?
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: "model",
                name: id.to_string(),
            })
    }

    /// Every model, by id.
    pub fn list(&self) -> Result<Vec<Arc<ModelEntry>>> {
        Ok(self
            .models
            .read()
            .map_err(poisoned)?
            .values()
            .cloned()
            .collect())
    }

    /// Stores a reference profile for a version (refusing to overwrite unless `replace`).
    pub fn put_reference(
        &self,
        model: &ModelEntry,
        mut profile: ReferenceProfile,
        replace: bool,
    ) -> Result<()> {
        profile.compact();
        let mut refs = model.references.write().map_err(poisoned)?;
        if refs.contains_key(&profile.version) && !replace {
            return Err(Error::AlreadyExists {
                what: "reference profile for version",
                name: profile.version.clone(),
            });
        }
        let mut ws = WriteSet::new();
        records::put(
            &mut ws,
            Family::Reference,
            reference_key(&profile.model, &profile.version),
            &profile,
        )?;
        self.store.write(&ws)?;
        if let Ok(mut whole) = self.whole.lock() {
            whole.retain(|(m, v, _)| !(m == &profile.model && v == &profile.version));
        }
        refs.insert(
            profile.version.clone(),
            Arc::new(profile.without_sketches()),
        );
        Ok(())
    }

    /// Adds the segment registry to `ws` if it changed (call with the registry locked).
    pub fn save_segments(
        model: &ModelDef,
        segs: &mut SegmentRegistry,
        ws: &mut WriteSet,
    ) -> Result<()> {
        if segs.changed() {
            let admitted = AdmittedSegments(segs.admitted().clone());
            records::put(ws, Family::Meta, segments_key(&model.id), &admitted)?;
            segs.mark_saved();
        }
        Ok(())
    }
}

/// The query planner's view of the registry: definitions and reference profiles, read from the
/// in-memory cache. A poisoned lock reads as "nothing there" (the planner then reports the
/// model or reference as not found) rather than panicking a query.
impl driftdb_query::Catalog for Registry {
    fn model(&self, id: &str) -> Option<ModelDef> {
        let models = self.models.read().ok()?;
        models.get(id).map(|m| m.def.clone())
    }

    fn model_ids(&self) -> Vec<String> {
        // BTreeMap keys come out sorted, as the trait asks.
        self.models
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn reference(&self, model: &str, version: &str) -> Option<Arc<ReferenceProfile>> {
        let entry = self.models.read().ok()?.get(model).cloned()?;
        let refs = entry.references.read().ok()?;
        refs.get(version).cloned()
    }

    fn reference_with_sketches(&self, model: &str, version: &str) -> Option<Arc<ReferenceProfile>> {
        // Known (and not removed) in memory first: the store may hold a profile being replaced.
        driftdb_query::Catalog::reference(self, model, version)?;
        if let Ok(whole) = self.whole.lock()
            && let Some((_, _, p)) = whole.iter().find(|(m, v, _)| m == model && v == version)
        {
            return Some(Arc::clone(p));
        }
        let p: ReferenceProfile = match records::get(
            &self.store,
            Family::Reference,
            &reference_key(model, version),
        ) {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(model, version, error = %e, "reading a reference profile");
                return None;
            }
        };
        let p = Arc::new(p);
        if let Ok(mut whole) = self.whole.lock() {
            if whole.len() >= WHOLE_PROFILES_CACHED {
                whole.remove(0);
            }
            whole.push((model.to_string(), version.to_string(), Arc::clone(&p)));
        }
        Some(p)
    }

    fn reference_versions(&self, model: &str) -> Vec<String> {
        let Some(entry) = self.models.read().ok().and_then(|m| m.get(model).cloned()) else {
            return Vec::new();
        };
        entry
            .references
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}
