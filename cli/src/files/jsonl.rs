//! JSONL chunks → gRPC batches. Each line is scanned once by [`super::json::Parser`]: keys are
//! matched to the model's columns (the slot of the key at the same position in the previous
//! line is tried first, so a file whose lines share a key order costs one comparison per key),
//! values go straight into their column, and a row is committed only when every value is valid.
//! `segments`, `features` and `outcomes` may be nested objects or flat keys; `attributions` is a
//! nested object `{feature: number}`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use driftdb_engine::model::FeatureKind;
use driftdb_proto::v1 as pb;
use serde_json::Value;

use super::batch::{
    Converted, Ctx, Kind, ModelInfo, Outgoing, Payload, new_batch, push_attributions, push_version,
    split_batch, split_labels,
};
use super::json::{Parser, Val};
use super::values::{TsUnit, clip, number_text, timestamp_text};

/// What a key of a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    RequestId,
    Ts,
    ModelId,
    Version,
    Score,
    Prediction,
    Latency,
    Cost,
    Label,
    Items,
    Features,
    Attributions,
    Segments,
    Seg(usize),
    Feat(usize),
    /// A field of another kind of file (`label` in an inference file): not reported.
    Ignored,
    /// Neither a field, a segment nor a feature.
    Unknown,
}

/// Key → slot, trying the key seen at the same position in the previous line first.
#[derive(Debug, Default)]
struct KeyCache {
    by_pos: Vec<(Box<str>, Slot)>,
}

impl KeyCache {
    #[inline]
    fn get(&mut self, pos: usize, key: &str, resolve: impl FnOnce(&str) -> Slot) -> Slot {
        if let Some((k, s)) = self.by_pos.get(pos)
            && **k == *key
        {
            return *s;
        }
        let s = resolve(key);
        if pos < self.by_pos.len() {
            self.by_pos[pos] = (key.into(), s);
        } else if pos == self.by_pos.len() && pos < 4096 {
            self.by_pos.push((key.into(), s));
        }
        s
    }
}

/// The key caches of one model.
#[derive(Debug, Default)]
struct ModelKeys {
    top: KeyCache,
    features: KeyCache,
    segments: KeyCache,
    attributions: KeyCache,
}

fn top_slot(m: &ModelInfo, kind: Kind, key: &str) -> Slot {
    match key {
        "request_id" => Slot::RequestId,
        "ts" => Slot::Ts,
        "model_id" => Slot::ModelId,
        "model_version" => Slot::Version,
        "score" => Slot::Score,
        "prediction" => Slot::Prediction,
        "latency_ms" => Slot::Latency,
        "cost" if !m.feature_index.contains_key("cost") => Slot::Cost,
        "attributions" if !m.feature_index.contains_key("attributions") => Slot::Attributions,
        "label" if kind == Kind::Reference => Slot::Label,
        "items" => Slot::Items,
        "features" if !m.feature_index.contains_key("features") => Slot::Features,
        "segments" if !m.segment_index.contains_key("segments") => Slot::Segments,
        "label" | "outcomes" => Slot::Ignored,
        _ => {
            if let Some(&i) = m.segment_index.get(key) {
                Slot::Seg(i)
            } else if let Some(&i) = m.feature_index.get(key) {
                Slot::Feat(i)
            } else {
                Slot::Unknown
            }
        }
    }
}

/// One feature's value in a row being read.
#[derive(Debug, Clone)]
enum FVal<'a> {
    Absent,
    Num(f64),
    Cat(Cow<'a, str>),
}

/// The row being read.
#[derive(Debug, Default)]
struct Row<'a> {
    request_id: Option<Cow<'a, str>>,
    ts: Option<Val<'a>>,
    model_id: Option<Cow<'a, str>>,
    version: Option<Cow<'a, str>>,
    score: Option<Val<'a>>,
    prediction: Option<Val<'a>>,
    latency: Option<Val<'a>>,
    cost: Option<Val<'a>>,
    label: Option<Val<'a>>,
    items: Option<Val<'a>>,
    feats: Vec<FVal<'a>>,
    segs: Vec<Option<Cow<'a, str>>>,
    /// (feature index, attribution) of the attributions the row carries.
    attrs: Vec<(usize, f64)>,
}

impl<'a> Row<'a> {
    fn reset(&mut self, m: &ModelInfo) {
        self.request_id = None;
        self.ts = None;
        self.model_id = None;
        self.version = None;
        self.score = None;
        self.prediction = None;
        self.latency = None;
        self.cost = None;
        self.label = None;
        self.items = None;
        self.feats.clear();
        self.feats.resize(m.features.len(), FVal::Absent);
        self.segs.clear();
        self.segs.resize(m.def.segments.len(), None);
        self.attrs.clear();
    }
}

/// A scalar as text (ids, versions, segment values): strings as they are, numbers as written,
/// booleans as `true`/`false`; null and empty are none.
fn text_of<'a>(v: Val<'a>, what: &str) -> Result<Option<Cow<'a, str>>, String> {
    match v {
        Val::Null => Ok(None),
        Val::Str(s) if s.is_empty() => Ok(None),
        Val::Str(s) => Ok(Some(s)),
        Val::Num { text, .. } => Ok(Some(Cow::Borrowed(text))),
        Val::Bool(b) => Ok(Some(Cow::Borrowed(if b { "true" } else { "false" }))),
        other => Err(format!("{what}: expected a string, got {}", other.kind())),
    }
}

/// A number: JSON numbers, numbers written as strings (`"NaN"` too); null and `""` are none.
fn num_of(v: &Val<'_>, what: &str) -> Result<Option<f64>, String> {
    match v {
        Val::Null => Ok(None),
        Val::Num { text, .. } => text
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{what}: {} is not a number", clip(text))),
        Val::Str(s) => number_text(s).map_err(|e| format!("{what}: {e}")),
        Val::Bool(_) => Err(format!("{what}: a boolean is not a number")),
        other => Err(format!("{what}: expected a number, got {}", other.kind())),
    }
}

/// A label: numbers, booleans (1/0) and numbers written as strings.
fn label_of(v: &Val<'_>) -> Result<Option<f64>, String> {
    match v {
        Val::Bool(b) => Ok(Some(if *b { 1.0 } else { 0.0 })),
        v => num_of(v, "label"),
    }
}

/// An event time: RFC 3339 text, or an epoch number (by magnitude or `--ts-unit`).
pub fn ts_of(v: &Val<'_>, unit: TsUnit) -> Result<i64, String> {
    match v {
        Val::Num { text, int: true } => match text.parse::<i64>() {
            Ok(x) => Ok(unit.int_to_ms(x)),
            Err(_) => text
                .parse::<f64>()
                .map_err(|_| format!("ts {} is not a number", clip(text)))
                .and_then(|x| unit.float_to_ms(x)),
        },
        Val::Num { text, int: false } => text
            .parse::<f64>()
            .map_err(|_| format!("ts {} is not a number", clip(text)))
            .and_then(|x| unit.float_to_ms(x)),
        Val::Str(s) => timestamp_text(s, unit),
        Val::Null => Err("missing ts".into()),
        other => Err(format!(
            "ts: expected a string or a number, got {}",
            other.kind()
        )),
    }
}

fn feature_value<'a>(m: &ModelInfo, i: usize, v: Val<'a>) -> Result<FVal<'a>, String> {
    let (name, kind) = &m.features[i];
    match kind {
        FeatureKind::Numeric => {
            match v {
                Val::Num { text, .. } => text
                    .parse::<f64>()
                    .map(FVal::Num)
                    .map_err(|_| format!("feature {}: {} is not a number", clip(name), clip(text))),
                other => Ok(num_of(&other, &format!("feature {}", clip(name)))?
                    .map_or(FVal::Absent, FVal::Num)),
            }
        }
        FeatureKind::Categorical => match v {
            Val::Null => Ok(FVal::Absent),
            Val::Str(s) if s.is_empty() => Ok(FVal::Absent),
            Val::Str(s) => Ok(FVal::Cat(s)),
            Val::Bool(b) => Ok(FVal::Cat(Cow::Borrowed(if b { "true" } else { "false" }))),
            Val::Num { text, int: true } => Ok(FVal::Cat(Cow::Borrowed(text))),
            other => Err(format!(
                "feature {}: expected a string, boolean or integer (categorical), got {}",
                clip(name),
                other.kind()
            )),
        },
    }
}

/// Reads a line into `row` with model `m`'s columns.
fn parse_row<'a>(
    line: &'a str,
    m: &ModelInfo,
    keys: &mut ModelKeys,
    ctx: &Ctx,
    row: &mut Row<'a>,
) -> Result<(), String> {
    row.reset(m);
    let mut p = Parser::new(line);
    p.begin_object()?;
    let mut pos = 0;
    while let Some(key) = p.next_key(pos == 0)? {
        let slot = keys.top.get(pos, &key, |k| top_slot(m, ctx.kind, k));
        pos += 1;
        match slot {
            Slot::Features if p.at_object() => {
                p.begin_object()?;
                let mut fpos = 0;
                while let Some(fk) = p.next_key(fpos == 0)? {
                    let s = keys.features.get(fpos, &fk, |k| {
                        m.feature_index
                            .get(k)
                            .map_or(Slot::Unknown, |&i| Slot::Feat(i))
                    });
                    fpos += 1;
                    let v = p.value()?;
                    match s {
                        Slot::Feat(i) => row.feats[i] = feature_value(m, i, v)?,
                        _ => {
                            return Err(format!(
                                "feature {} is not a feature of model {} (its features: {})",
                                clip(&fk),
                                clip(&m.def.id),
                                m.feature_list()
                            ));
                        }
                    }
                }
            }
            Slot::Segments if p.at_object() => {
                p.begin_object()?;
                let mut spos = 0;
                while let Some(sk) = p.next_key(spos == 0)? {
                    let s = keys.segments.get(spos, &sk, |k| {
                        m.segment_index
                            .get(k)
                            .map_or(Slot::Unknown, |&i| Slot::Seg(i))
                    });
                    spos += 1;
                    let v = p.value()?;
                    match s {
                        Slot::Seg(i) => {
                            row.segs[i] = text_of(v, &format!("segment {}", clip(&sk)))?
                        }
                        _ => {
                            return Err(format!(
                                "segment key {} is not a segment of model {} (its segments: {})",
                                clip(&sk),
                                clip(&m.def.id),
                                m.def.segments.join(", ")
                            ));
                        }
                    }
                }
            }
            Slot::Attributions if p.at_object() => {
                p.begin_object()?;
                let mut apos = 0;
                while let Some(ak) = p.next_key(apos == 0)? {
                    let s = keys.attributions.get(apos, &ak, |k| {
                        m.feature_index
                            .get(k)
                            .map_or(Slot::Unknown, |&i| Slot::Feat(i))
                    });
                    apos += 1;
                    let v = p.value()?;
                    match s {
                        Slot::Feat(i) => {
                            let what = format!("attribution of feature {}", clip(&ak));
                            if let Some(x) = num_of(&v, &what)? {
                                row.attrs.retain(|(j, _)| *j != i);
                                row.attrs.push((i, x));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "attributions: {} is not a feature of model {} (its features: {})",
                                clip(&ak),
                                clip(&m.def.id),
                                m.feature_list()
                            ));
                        }
                    }
                }
            }
            _ => {
                let v = p.value()?;
                match slot {
                    Slot::RequestId => row.request_id = text_of(v, "request_id")?,
                    Slot::Ts => row.ts = Some(v),
                    Slot::ModelId => row.model_id = text_of(v, "model_id")?,
                    Slot::Version => row.version = text_of(v, "model_version")?,
                    Slot::Score => row.score = Some(v),
                    Slot::Prediction => row.prediction = Some(v),
                    Slot::Latency => row.latency = Some(v),
                    Slot::Cost => row.cost = Some(v),
                    Slot::Attributions => match v {
                        Val::Null => {}
                        other => {
                            return Err(format!(
                                "attributions: expected an object {{feature: number}}, got {}",
                                other.kind()
                            ));
                        }
                    },
                    Slot::Label => row.label = Some(v),
                    Slot::Items => row.items = Some(v),
                    Slot::Seg(i) => row.segs[i] = text_of(v, "segment")?,
                    Slot::Feat(i) => row.feats[i] = feature_value(m, i, v)?,
                    Slot::Unknown => ctx.unknown_column(&key),
                    Slot::Features | Slot::Segments | Slot::Ignored => {}
                }
            }
        }
    }
    if !p.at_end() {
        return Err("invalid JSON: characters after the object".into());
    }
    Ok(())
}

/// Items of a ranking row: a JSON array of `{"id", "score"}` (or that array as a string).
pub fn items_of(v: &Val<'_>) -> Result<Vec<pb::RankedItem>, String> {
    let text = match v {
        Val::Null => return Ok(Vec::new()),
        Val::Arr(t) => *t,
        Val::Str(s) if s.is_empty() => return Ok(Vec::new()),
        Val::Str(s) => s.as_ref(),
        other => return Err(format!("items: expected an array, got {}", other.kind())),
    };
    items_json(text)
}

/// Items from their JSON text.
pub fn items_json(text: &str) -> Result<Vec<pb::RankedItem>, String> {
    let v: Value = serde_json::from_str(text).map_err(|_| "items: expected a JSON array")?;
    let Value::Array(a) = v else {
        return Err("items: expected a JSON array".into());
    };
    a.iter()
        .map(|it| {
            let id = match it.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err("items: each item needs an id".to_string()),
            };
            let score = it.get("score").and_then(Value::as_f64).unwrap_or(f64::NAN);
            Ok(pb::RankedItem { id, score })
        })
        .collect()
}

/// Appends a fully read row to `b`.
fn commit(
    b: &mut pb::InferenceBatch,
    row: &mut Row<'_>,
    m: &ModelInfo,
    ctx: &Ctx,
) -> Result<(), String> {
    // Check every value before touching the columns, so a bad row changes nothing.
    let request_id = row.request_id.take().ok_or("missing request_id")?;
    let ts = match &row.ts {
        Some(v) => ts_of(v, ctx.ts_unit)?,
        None => return Err("missing ts".into()),
    };
    let version = row.version.take().ok_or("missing model_version")?;
    let score = match row.score.as_ref().or(row.prediction.as_ref()) {
        Some(v) => num_of(v, "score")?,
        None => None,
    };
    let latency = match &row.latency {
        Some(v) => num_of(v, "latency_ms")?,
        None => None,
    };
    let cost = match &row.cost {
        Some(v) => num_of(v, "cost")?,
        None => None,
    };
    let label = match (&row.label, ctx.kind) {
        (Some(v), Kind::Reference) => label_of(v)?,
        _ => None,
    };
    let items = match &row.items {
        Some(v) => items_of(v)?,
        None => Vec::new(),
    };
    let r = b.request_ids.len() as u32;
    b.request_ids.push(request_id.into_owned());
    b.ts_ms.push(ts);
    push_version(&mut b.model_versions, r as usize, &version);
    for (col, v) in b.segments.iter_mut().zip(row.segs.iter_mut()) {
        col.values
            .push(v.take().map(Cow::into_owned).unwrap_or_default());
    }
    for ((col, v), (_, kind)) in b
        .features
        .iter_mut()
        .zip(row.feats.iter_mut())
        .zip(&m.features)
    {
        match (kind, std::mem::replace(v, FVal::Absent)) {
            (FeatureKind::Numeric, FVal::Num(x)) => col.numbers.push(x),
            (FeatureKind::Numeric, _) => {
                col.numbers.push(0.0);
                col.missing.push(r);
            }
            (FeatureKind::Categorical, FVal::Cat(c)) => col.categories.push(c.into_owned()),
            (FeatureKind::Categorical, _) => {
                col.categories.push(String::new());
                col.missing.push(r);
            }
        }
    }
    match score {
        Some(s) => b.scores.push(s),
        None => {
            b.scores.push(0.0);
            b.score_missing.push(r);
        }
    }
    b.latency_ms.push(latency.unwrap_or(f64::NAN));
    b.cost.push(cost.unwrap_or(f64::NAN));
    push_attributions(b, r, &row.attrs, m);
    b.items.push(pb::RankedList { items });
    if ctx.kind == Kind::Reference {
        match label {
            Some(y) => b.labels.push(y),
            None => {
                b.labels.push(0.0);
                b.label_missing.push(r);
            }
        }
    }
    Ok(())
}

/// A reader's state across the chunks it converts (key caches per model).
#[derive(Debug, Default)]
pub struct JsonState {
    keys: HashMap<String, ModelKeys>,
    last_model: Option<Arc<ModelInfo>>,
}

/// Lines of a chunk, with their line numbers; `\r\n` endings and blank lines handled.
fn lines(text: &str, first_line: u64) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n').enumerate().filter_map(move |(i, l)| {
        let l = l.strip_suffix('\r').unwrap_or(l);
        if l.trim().is_empty() {
            None
        } else {
            Some((first_line + i as u64, l))
        }
    })
}

/// Converts a chunk of whole JSONL lines (`first_line` is the number of its first line).
pub fn convert_chunk(
    bytes: &[u8],
    first_line: u64,
    ctx: &Ctx,
    state: &mut JsonState,
    out: &mut Converted,
) {
    match std::str::from_utf8(bytes) {
        Ok(text) => convert_text(text, first_line, ctx, state, out),
        Err(_) => {
            // Rare: convert line by line, rejecting the lines that are not UTF-8.
            for (i, l) in bytes.split(|&c| c == b'\n').enumerate() {
                let n = first_line + i as u64;
                match std::str::from_utf8(l) {
                    Ok(t) => convert_text(t, n, ctx, state, out),
                    Err(e) => out.reject(n, format!("the line is not UTF-8: {e}")),
                }
            }
        }
    }
}

fn convert_text(
    text: &str,
    first_line: u64,
    ctx: &Ctx,
    state: &mut JsonState,
    out: &mut Converted,
) {
    if ctx.kind == Kind::Labels {
        return convert_labels(text, first_line, ctx, out);
    }
    // One batch per model in the chunk (usually one).
    let mut builders: Vec<(Arc<ModelInfo>, pb::InferenceBatch, Vec<u64>)> = Vec::new();
    let mut row = Row::default();
    for (n, line) in lines(text, first_line) {
        // Read with the model of the previous row; read again if this row names another.
        let first = match &state.last_model {
            Some(m) => Ok(Arc::clone(m)),
            None => ctx.model_of(None).or_else(|e| match first_model_id(line) {
                Some(id) => ctx.model_of(Some(&id)),
                None => Err(e),
            }),
        };
        let mut m = match first {
            Ok(m) => m,
            Err(e) => {
                out.reject(n, e);
                continue;
            }
        };
        let mut attempt = 0;
        let res = loop {
            attempt += 1;
            let keys = state.keys.entry(m.def.id.clone()).or_default();
            if let Err(e) = parse_row(line, &m, keys, ctx, &mut row) {
                // The reason may be that the row is another model's.
                if attempt == 1
                    && let Some(id) = first_model_id(line)
                    && id != m.def.id
                {
                    match ctx.model_of(Some(&id)) {
                        Ok(other) => {
                            m = other;
                            continue;
                        }
                        Err(e2) => break Err(e2),
                    }
                }
                break Err(e);
            }
            // The row's model: fast when it is the one it was read with.
            let same = match row.model_id.as_deref() {
                Some(id) => id == m.def.id,
                None => ctx.default_model.as_deref() == Some(m.def.id.as_str()),
            };
            if same {
                break Ok(());
            }
            match ctx.model_of(row.model_id.as_deref()) {
                Ok(other) if other.def.id == m.def.id => break Ok(()),
                Ok(other) if attempt == 1 => m = other,
                Ok(_) => break Err("the row's model changed while reading it".into()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = res {
            out.reject(n, e);
            continue;
        }
        let b = match builders.iter().position(|(bm, _, _)| Arc::ptr_eq(bm, &m)) {
            Some(i) => i,
            None => {
                let batch = new_batch(&m, ctx.batch_rows.min(65_536));
                builders.push((Arc::clone(&m), batch, Vec::new()));
                builders.len() - 1
            }
        };
        let (_, batch, blines) = &mut builders[b];
        match commit(batch, &mut row, &m, ctx) {
            Ok(()) => {
                blines.push(n);
                out.rows += 1;
            }
            Err(e) => out.reject(n, e),
        }
        state.last_model = Some(m);
    }
    for (m, batch, blines) in builders {
        for (b, l) in split_batch(batch, blines, ctx.batch_rows, ctx.max_bytes) {
            out.batches.push(Outgoing {
                model: m.def.id.clone(),
                payload: Payload::Rows(b),
                lines: l,
            });
        }
    }
}

/// The `model_id` of a line, read without a model (a slow path, for lines of another model).
fn first_model_id(line: &str) -> Option<String> {
    let mut p = Parser::new(line);
    p.begin_object().ok()?;
    let mut first = true;
    while let Some(k) = p.next_key(first).ok()? {
        first = false;
        let v = p.value().ok()?;
        if k == "model_id" {
            return text_of(v, "model_id").ok()?.map(Cow::into_owned);
        }
    }
    None
}

/// A label line (serde_json: label files are small next to inference files).
pub fn label_from_object(
    o: &serde_json::Map<String, Value>,
    unit: TsUnit,
) -> Result<pb::Label, String> {
    let text = |name: &str| -> Option<String> {
        match o.get(name)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let request_id = text("request_id").ok_or("missing request_id")?;
    let ts = match o.get("ts") {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) => timestamp_text(s, unit)?,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => unit.int_to_ms(i),
            None => unit.float_to_ms(n.as_f64().unwrap_or(f64::NAN))?,
        },
        Some(_) => return Err("ts: expected a string or a number".into()),
    };
    let num = |v: &Value, what: &str| -> Result<Option<f64>, String> {
        match v {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(if *b { 1.0 } else { 0.0 })),
            Value::Number(n) => Ok(n.as_f64()),
            Value::String(s) => number_text(s).map_err(|e| format!("{what}: {e}")),
            _ => Err(format!("{what}: expected a number")),
        }
    };
    let label = match o.get("label") {
        Some(v) => num(v, "label")?,
        None => None,
    };
    let nested = o.get("outcomes").and_then(Value::as_object);
    let get = |name: &str| nested.and_then(|n| n.get(name)).or_else(|| o.get(name));
    let mut outcome = pb::Outcome::default();
    let mut has_outcome = false;
    for (name, slot) in [
        ("click", &mut outcome.click),
        ("purchase", &mut outcome.purchase),
        ("revenue", &mut outcome.revenue),
        ("dwell_ms", &mut outcome.dwell_ms),
    ] {
        if let Some(v) = get(name)
            && let Some(x) = num(v, name)?
        {
            *slot = x;
            has_outcome = true;
        }
    }
    let rel = match get("relevance") {
        Some(Value::String(s)) if !s.is_empty() => Some(
            serde_json::from_str::<Value>(s).map_err(|_| "relevance: expected a JSON object")?,
        ),
        Some(v @ Value::Object(_)) => Some(v.clone()),
        _ => None,
    };
    if let Some(rel) = rel {
        let Value::Object(m) = rel else {
            return Err("relevance: expected an object".into());
        };
        let mut pairs = Vec::with_capacity(m.len());
        for (k, v) in &m {
            pairs.push((
                k.clone(),
                num(v, &format!("relevance {}", clip(k)))?.unwrap_or(0.0),
            ));
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        outcome.relevance = pairs.into_iter().collect();
        has_outcome = true;
    }
    Ok(pb::Label {
        request_id,
        ts_ms: ts,
        label,
        outcome: has_outcome.then_some(outcome),
        model_id: text("model_id").unwrap_or_default(),
    })
}

fn convert_labels(text: &str, first_line: u64, ctx: &Ctx, out: &mut Converted) {
    let mut per_model: Vec<(String, pb::LabelBatch, Vec<u64>)> = Vec::new();
    for (n, line) in lines(text, first_line) {
        let o = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                out.reject(n, "line is not a JSON object".into());
                continue;
            }
            Err(e) => {
                out.reject(n, format!("invalid JSON: {e}"));
                continue;
            }
        };
        let label = match label_from_object(&o, ctx.ts_unit) {
            Ok(l) => l,
            Err(e) => {
                out.reject(n, e);
                continue;
            }
        };
        let model = match ctx.model_of(Some(label.model_id.as_str())) {
            Ok(m) => m.def.id.clone(),
            Err(e) => {
                out.reject(n, e);
                continue;
            }
        };
        push_label(&mut per_model, model, label, n);
        out.rows += 1;
    }
    flush_labels(per_model, ctx, out);
}

/// Adds a label to its model's batch.
pub fn push_label(
    per_model: &mut Vec<(String, pb::LabelBatch, Vec<u64>)>,
    model: String,
    mut label: pb::Label,
    line: u64,
) {
    label.model_id.clear();
    let i = match per_model.iter().position(|(m, _, _)| *m == model) {
        Some(i) => i,
        None => {
            per_model.push((
                model.clone(),
                pb::LabelBatch {
                    model_id: model,
                    ..Default::default()
                },
                Vec::new(),
            ));
            per_model.len() - 1
        }
    };
    per_model[i].1.labels.push(label);
    per_model[i].2.push(line);
}

/// Hands the label batches of a chunk over, split by size.
pub fn flush_labels(
    per_model: Vec<(String, pb::LabelBatch, Vec<u64>)>,
    ctx: &Ctx,
    out: &mut Converted,
) {
    for (model, b, l) in per_model {
        for (b, l) in split_labels(b, l, ctx.batch_rows, ctx.max_bytes) {
            out.batches.push(Outgoing {
                model: model.clone(),
                payload: Payload::Labels(b),
                lines: l,
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
