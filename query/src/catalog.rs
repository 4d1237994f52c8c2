//! What the planner needs to know besides the sketches: model definitions and reference
//! profiles. The server implements [`Catalog`] over its registry; tests use [`MemoryCatalog`].

use std::collections::BTreeMap;
use std::sync::Arc;

use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::ReferenceProfile;

/// Models and their reference profiles.
pub trait Catalog: Send + Sync {
    /// A model's definition.
    fn model(&self, id: &str) -> Option<ModelDef>;
    /// Every model id, sorted.
    fn model_ids(&self) -> Vec<String>;
    /// The reference profile of a model version. A catalog may hold it without its numeric
    /// sketches ([`ReferenceProfile::without_sketches`]): enough for the bin metrics,
    /// summaries and binning.
    fn reference(&self, model: &str, version: &str) -> Option<Arc<ReferenceProfile>>;
    /// The whole reference profile, sketches included, for statistics that read the
    /// reference's CDF ([`crate::metrics::needs_sketch`]). The default is
    /// [`Catalog::reference`], for catalogs that hold whole profiles.
    fn reference_with_sketches(&self, model: &str, version: &str) -> Option<Arc<ReferenceProfile>> {
        self.reference(model, version)
    }
    /// The versions of a model that have a reference profile.
    fn reference_versions(&self, model: &str) -> Vec<String>;
}

/// A catalog held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryCatalog {
    models: BTreeMap<String, ModelDef>,
    references: BTreeMap<(String, String), Arc<ReferenceProfile>>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a model.
    pub fn add_model(&mut self, def: ModelDef) {
        self.models.insert(def.id.clone(), def);
    }

    /// Adds (or replaces) a reference profile.
    pub fn add_reference(&mut self, profile: ReferenceProfile) {
        self.references.insert(
            (profile.model.clone(), profile.version.clone()),
            Arc::new(profile),
        );
    }
}

impl Catalog for MemoryCatalog {
    fn model(&self, id: &str) -> Option<ModelDef> {
        self.models.get(id).cloned()
    }

    fn model_ids(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    fn reference(&self, model: &str, version: &str) -> Option<Arc<ReferenceProfile>> {
        self.references
            .get(&(model.to_string(), version.to_string()))
            .cloned()
    }

    fn reference_versions(&self, model: &str) -> Vec<String> {
        self.references
            .keys()
            .filter(|(m, _)| m == model)
            .map(|(_, v)| v.clone())
            .collect()
    }
}
