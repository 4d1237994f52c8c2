//! Arrow record batches (Parquet, CSV) → gRPC batches, a column at a time: each column of the
//! model is read by its Arrow type into the batch's column; a value a column cannot hold marks
//! its row rejected (with the first reason), and rejected rows are dropped from every column at
//! the end. No per-row objects are built.
//!
//! Types read: every TIMESTAMP unit with or without a time zone, DATE32/DATE64, integers and
//! floats (nullable), DECIMAL128, booleans, UTF-8 strings (plain, large, view) and dictionaries
//! of them. Strings in numeric or time columns are parsed (CSV columns arrive as strings).

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use driftdb_engine::FastMap;
use driftdb_engine::model::FeatureKind;
use driftdb_proto::v1 as pb;

use super::batch::{
    Converted, Ctx, Kind, ModelInfo, Outgoing, Payload, new_batch, push_version, retain_rows,
    split_batch,
};
use super::jsonl::{flush_labels, items_json, push_label};
use super::values::{TsUnit, clip, number_text, timestamp_text};

/// A column of a record batch, by the type it is read as.
enum Col<'a> {
    Absent,
    F64(&'a PrimitiveArray<Float64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F16(&'a PrimitiveArray<Float16Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I8(&'a PrimitiveArray<Int8Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    Dec(&'a PrimitiveArray<Decimal128Type>, i8),
    Bool(&'a arrow_array::BooleanArray),
    Str(&'a arrow_array::StringArray),
    LStr(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Dict {
        array: &'a dyn Array,
        keys: Vec<usize>,
        values: Box<Col<'a>>,
    },
    /// Timestamps as their raw values and unit.
    Ts(&'a dyn Array, &'a [i64], TimeUnit),
    Date32(&'a PrimitiveArray<Date32Type>),
    Date64(&'a PrimitiveArray<Date64Type>),
    Null,
    Other(&'a DataType),
}

impl<'a> Col<'a> {
    fn of(a: &'a ArrayRef) -> Col<'a> {
        Col::of_dyn(a.as_ref())
    }

    fn of_dyn(a: &'a dyn Array) -> Col<'a> {
        match a.data_type() {
            DataType::Float64 => Col::F64(a.as_primitive()),
            DataType::Float32 => Col::F32(a.as_primitive()),
            DataType::Float16 => Col::F16(a.as_primitive()),
            DataType::Int64 => Col::I64(a.as_primitive()),
            DataType::Int32 => Col::I32(a.as_primitive()),
            DataType::Int16 => Col::I16(a.as_primitive()),
            DataType::Int8 => Col::I8(a.as_primitive()),
            DataType::UInt64 => Col::U64(a.as_primitive()),
            DataType::UInt32 => Col::U32(a.as_primitive()),
            DataType::UInt16 => Col::U16(a.as_primitive()),
            DataType::UInt8 => Col::U8(a.as_primitive()),
            DataType::Decimal128(_, s) => Col::Dec(a.as_primitive(), *s),
            DataType::Boolean => Col::Bool(a.as_boolean()),
            DataType::Utf8 => Col::Str(a.as_string()),
            DataType::LargeUtf8 => Col::LStr(a.as_string()),
            DataType::Utf8View => Col::View(a.as_string_view()),
            DataType::Dictionary(_, _) => match a.as_any_dictionary_opt() {
                Some(d) => Col::Dict {
                    array: a,
                    keys: d.normalized_keys(),
                    values: Box::new(Col::of_dyn(d.values().as_ref())),
                },
                None => Col::Other(a.data_type()),
            },
            DataType::Timestamp(unit, _) => {
                let vals: &[i64] = match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().values(),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().values(),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().values(),
                };
                Col::Ts(a, vals, *unit)
            }
            DataType::Date32 => Col::Date32(a.as_primitive()),
            DataType::Date64 => Col::Date64(a.as_primitive()),
            DataType::Null => Col::Null,
            t => Col::Other(t),
        }
    }

    fn is_null(&self, r: usize) -> bool {
        match self {
            Col::Absent | Col::Null => true,
            Col::F64(a) => a.is_null(r),
            Col::F32(a) => a.is_null(r),
            Col::F16(a) => a.is_null(r),
            Col::I64(a) => a.is_null(r),
            Col::I32(a) => a.is_null(r),
            Col::I16(a) => a.is_null(r),
            Col::I8(a) => a.is_null(r),
            Col::U64(a) => a.is_null(r),
            Col::U32(a) => a.is_null(r),
            Col::U16(a) => a.is_null(r),
            Col::U8(a) => a.is_null(r),
            Col::Dec(a, _) => a.is_null(r),
            Col::Bool(a) => a.is_null(r),
            Col::Str(a) => a.is_null(r),
            Col::LStr(a) => a.is_null(r),
            Col::View(a) => a.is_null(r),
            Col::Dict {
                array,
                keys,
                values,
            } => array.is_null(r) || values.is_null(keys[r]),
            Col::Ts(a, _, _) => a.is_null(r),
            Col::Date32(a) => a.is_null(r),
            Col::Date64(a) => a.is_null(r),
            Col::Other(_) => false,
        }
    }

    fn type_name(&self) -> String {
        match self {
            Col::Other(t) => t.to_string(),
            _ => "this type".into(),
        }
    }

    /// A number (none when null or an empty string).
    #[inline]
    fn num(&self, r: usize) -> Result<Option<f64>, String> {
        if self.is_null(r) {
            return Ok(None);
        }
        Ok(Some(match self {
            Col::F64(a) => a.value(r),
            Col::F32(a) => f64::from(a.value(r)),
            Col::F16(a) => a.value(r).to_f64(),
            Col::I64(a) => a.value(r) as f64,
            Col::I32(a) => f64::from(a.value(r)),
            Col::I16(a) => f64::from(a.value(r)),
            Col::I8(a) => f64::from(a.value(r)),
            Col::U64(a) => a.value(r) as f64,
            Col::U32(a) => f64::from(a.value(r)),
            Col::U16(a) => f64::from(a.value(r)),
            Col::U8(a) => f64::from(a.value(r)),
            Col::Dec(a, s) => a.value(r) as f64 / 10f64.powi(i32::from(*s)),
            Col::Str(a) => return number_text(a.value(r)),
            Col::LStr(a) => return number_text(a.value(r)),
            Col::View(a) => return number_text(a.value(r)),
            Col::Dict { keys, values, .. } => return values.num(keys[r]),
            Col::Bool(_) => return Err("a boolean is not a number".into()),
            Col::Ts(..) | Col::Date32(_) | Col::Date64(_) => {
                return Err("a timestamp is not a number".into());
            }
            Col::Other(t) => return Err(format!("a column of type {t} is not read as a number")),
            Col::Absent | Col::Null => return Ok(None),
        }))
    }

    /// A number, booleans read as 1 and 0 (labels).
    fn num_or_bool(&self, r: usize) -> Result<Option<f64>, String> {
        match self {
            Col::Bool(a) if !a.is_null(r) => Ok(Some(if a.value(r) { 1.0 } else { 0.0 })),
            Col::Dict { keys, values, .. } if !self.is_null(r) => values.num_or_bool(keys[r]),
            _ => self.num(r),
        }
    }

    /// The value as text (none when null); numbers as written, booleans as `true`/`false`.
    #[inline]
    fn text(&self, r: usize) -> Result<Option<Cow<'a, str>>, String> {
        if self.is_null(r) {
            return Ok(None);
        }
        Ok(Some(match self {
            Col::Str(a) => Cow::Borrowed(a.value(r)),
            Col::LStr(a) => Cow::Borrowed(a.value(r)),
            Col::View(a) => Cow::Borrowed(a.value(r)),
            Col::Dict { keys, values, .. } => return values.text(keys[r]),
            Col::Bool(a) => Cow::Borrowed(if a.value(r) { "true" } else { "false" }),
            Col::I64(a) => Cow::Owned(a.value(r).to_string()),
            Col::I32(a) => Cow::Owned(a.value(r).to_string()),
            Col::I16(a) => Cow::Owned(a.value(r).to_string()),
            Col::I8(a) => Cow::Owned(a.value(r).to_string()),
            Col::U64(a) => Cow::Owned(a.value(r).to_string()),
            Col::U32(a) => Cow::Owned(a.value(r).to_string()),
            Col::U16(a) => Cow::Owned(a.value(r).to_string()),
            Col::U8(a) => Cow::Owned(a.value(r).to_string()),
            Col::F64(a) => Cow::Owned(a.value(r).to_string()),
            Col::F32(a) => Cow::Owned(a.value(r).to_string()),
            Col::F16(a) => Cow::Owned(a.value(r).to_string()),
            Col::Dec(..) => Cow::Owned(self.num(r)?.unwrap_or(f64::NAN).to_string()),
            Col::Ts(..) | Col::Date32(_) | Col::Date64(_) => {
                Cow::Owned(driftdb_engine::time::Timestamp(self.ts(r, TsUnit::Auto)?).to_rfc3339())
            }
            Col::Other(t) => return Err(format!("a column of type {t} is not read as text")),
            Col::Absent | Col::Null => return Ok(None),
        }))
    }

    /// Whether the column holds numbers (categorical features read integers as text, but not
    /// fractions).
    fn is_float(&self) -> bool {
        match self {
            Col::F64(_) | Col::F32(_) | Col::F16(_) | Col::Dec(..) => true,
            Col::Dict { values, .. } => values.is_float(),
            _ => false,
        }
    }

    /// An event time in ms.
    #[inline]
    fn ts(&self, r: usize, unit: TsUnit) -> Result<i64, String> {
        if self.is_null(r) {
            return Err("missing ts".into());
        }
        match self {
            Col::Ts(_, v, u) => Ok(match u {
                TimeUnit::Second => v[r].saturating_mul(1000),
                TimeUnit::Millisecond => v[r],
                TimeUnit::Microsecond => v[r].div_euclid(1000),
                TimeUnit::Nanosecond => v[r].div_euclid(1_000_000),
            }),
            Col::Date32(a) => Ok(i64::from(a.value(r)) * 86_400_000),
            Col::Date64(a) => Ok(a.value(r)),
            Col::I64(a) => Ok(unit.int_to_ms(a.value(r))),
            Col::I32(a) => Ok(unit.int_to_ms(i64::from(a.value(r)))),
            Col::U64(a) => Ok(unit.int_to_ms(i64::try_from(a.value(r)).unwrap_or(i64::MAX))),
            Col::U32(a) => Ok(unit.int_to_ms(i64::from(a.value(r)))),
            Col::F64(_) | Col::F32(_) | Col::Dec(..) => {
                unit.float_to_ms(self.num(r)?.unwrap_or(f64::NAN))
            }
            Col::Str(a) => timestamp_text(a.value(r), unit),
            Col::LStr(a) => timestamp_text(a.value(r), unit),
            Col::View(a) => timestamp_text(a.value(r), unit),
            Col::Dict { keys, values, .. } => values.ts(keys[r], unit),
            other => Err(format!(
                "ts: a column of {} is not a time",
                other.type_name()
            )),
        }
    }
}

/// The columns of a record batch by name.
struct Columns<'a> {
    names: Vec<&'a str>,
    cols: Vec<&'a ArrayRef>,
}

impl<'a> Columns<'a> {
    fn new(rb: &'a RecordBatch) -> Columns<'a> {
        let schema = rb.schema_ref();
        Columns {
            names: schema.fields().iter().map(|f| f.name().as_str()).collect(),
            cols: rb.columns().iter().collect(),
        }
    }

    fn get(&self, name: &str) -> Col<'a> {
        match self.names.iter().position(|n| *n == name) {
            Some(i) => Col::of(self.cols[i]),
            None => Col::Absent,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.names.contains(&name)
    }
}

/// Top-level fields of an inference or label file.
const FIELDS: [&str; 17] = [
    "request_id",
    "ts",
    "model_id",
    "model_version",
    "score",
    "prediction",
    "latency_ms",
    "cost",
    "label",
    "items",
    "outcomes",
    "click",
    "purchase",
    "revenue",
    "dwell_ms",
    "relevance",
    "__index_level_0__",
];

/// The rows of each model in a record batch (rows without `model_id` go to the default model);
/// rows whose model is unknown are rejected.
fn rows_by_model(
    cols: &Columns<'_>,
    n: usize,
    first_line: u64,
    ctx: &Ctx,
    out: &mut Converted,
) -> Vec<(Arc<ModelInfo>, Vec<usize>)> {
    let mc = cols.get("model_id");
    if matches!(mc, Col::Absent) {
        return match ctx.model_of(None) {
            Ok(m) => vec![(m, (0..n).collect())],
            Err(e) => {
                for r in 0..n {
                    out.reject(first_line + r as u64, e.clone());
                }
                Vec::new()
            }
        };
    }
    let mut groups: Vec<(Arc<ModelInfo>, Vec<usize>)> = Vec::new();
    let mut last: Option<(String, usize)> = None;
    for r in 0..n {
        let id = match mc.text(r) {
            Ok(t) => t.filter(|t| !t.is_empty()),
            Err(e) => {
                out.reject(first_line + r as u64, format!("model_id: {e}"));
                continue;
            }
        };
        if let (Some((lid, g)), Some(id)) = (&last, &id)
            && lid == id
        {
            groups[*g].1.push(r);
            continue;
        }
        match ctx.model_of(id.as_deref()) {
            Ok(m) => {
                let g = match groups.iter().position(|(gm, _)| gm.def.id == m.def.id) {
                    Some(g) => g,
                    None => {
                        groups.push((m, Vec::new()));
                        groups.len() - 1
                    }
                };
                groups[g].1.push(r);
                if let Some(id) = id {
                    last = Some((id.into_owned(), g));
                }
            }
            Err(e) => out.reject(first_line + r as u64, e),
        }
    }
    groups
}

/// Appends column `c`'s numbers at `rows` to `numbers`, with 0 for a missing row and its
/// position (in `rows`) in `missing`. A Float64 array, what pandas writes, is copied without
/// a check per value; other types are read value by value, and a value that is not a number
/// is missing and reported to `bad` (its position and why).
fn push_numbers(
    c: &Col<'_>,
    rows: &[usize],
    numbers: &mut Vec<f64>,
    missing: &mut Vec<u32>,
    mut bad: impl FnMut(usize, String),
) {
    if let Col::F64(a) = c {
        let values = a.values();
        match a.nulls().filter(|n| n.null_count() > 0) {
            None => numbers.extend(rows.iter().map(|&r| values[r])),
            Some(nulls) => {
                for (i, &r) in rows.iter().enumerate() {
                    if nulls.is_null(r) {
                        numbers.push(0.0);
                        missing.push(i as u32);
                    } else {
                        numbers.push(values[r]);
                    }
                }
            }
        }
        return;
    }
    for (i, &r) in rows.iter().enumerate() {
        match c.num(r) {
            Ok(Some(x)) => numbers.push(x),
            Ok(None) => {
                numbers.push(0.0);
                missing.push(i as u32);
            }
            Err(e) => {
                numbers.push(0.0);
                missing.push(i as u32);
                bad(i, e);
            }
        }
    }
}

/// Marks row `i` (of the group) rejected with its first reason.
fn mark(reject: &mut Vec<Option<String>>, n: usize, i: usize, reason: String) {
    if reject.is_empty() {
        reject.resize(n, None);
    }
    if reject[i].is_none() {
        reject[i] = Some(reason);
    }
}

/// Converts one record batch; `first_line` is the line (CSV) or row (Parquet) of its first row.
pub fn convert_record_batch(rb: &RecordBatch, first_line: u64, ctx: &Ctx, out: &mut Converted) {
    let cols = Columns::new(rb);
    let n = rb.num_rows();
    let groups = rows_by_model(&cols, n, first_line, ctx, out);
    if ctx.kind == Kind::Labels {
        return convert_labels(&cols, groups, first_line, ctx, out);
    }
    for (m, rows) in groups {
        for name in &cols.names {
            if !FIELDS.contains(name)
                && !m.feature_index.contains_key(*name)
                && !m.segment_index.contains_key(*name)
            {
                ctx.unknown_column(name);
            }
        }
        convert_rows(&cols, &m, &rows, first_line, ctx, out);
    }
}

fn convert_rows(
    cols: &Columns<'_>,
    m: &ModelInfo,
    rows: &[usize],
    first_line: u64,
    ctx: &Ctx,
    out: &mut Converted,
) {
    let n = rows.len();
    let mut b = new_batch(m, n);
    let mut reject: Vec<Option<String>> = Vec::new();
    // request_id, ts, model_version: required.
    let c = cols.get("request_id");
    for (i, &r) in rows.iter().enumerate() {
        match c.text(r) {
            Ok(Some(t)) if !t.is_empty() => b.request_ids.push(t.into_owned()),
            Ok(_) => {
                b.request_ids.push(String::new());
                mark(&mut reject, n, i, "missing request_id".into());
            }
            Err(e) => {
                b.request_ids.push(String::new());
                mark(&mut reject, n, i, format!("request_id: {e}"));
            }
        }
    }
    let c = cols.get("ts");
    for (i, &r) in rows.iter().enumerate() {
        match c.ts(r, ctx.ts_unit) {
            Ok(t) => b.ts_ms.push(t),
            Err(e) => {
                b.ts_ms.push(0);
                mark(&mut reject, n, i, e);
            }
        }
    }
    let c = cols.get("model_version");
    for (i, &r) in rows.iter().enumerate() {
        match c.text(r) {
            Ok(Some(t)) if !t.is_empty() => push_version(&mut b.model_versions, i, &t),
            Ok(_) => {
                push_version(&mut b.model_versions, i, "");
                mark(&mut reject, n, i, "missing model_version".into());
            }
            Err(e) => {
                push_version(&mut b.model_versions, i, "");
                mark(&mut reject, n, i, format!("model_version: {e}"));
            }
        }
    }
    for (k, seg) in m.def.segments.iter().enumerate() {
        let c = cols.get(seg);
        let out_col = &mut b.segments[k].values;
        for (i, &r) in rows.iter().enumerate() {
            match c.text(r) {
                Ok(t) => out_col.push(t.map(Cow::into_owned).unwrap_or_default()),
                Err(e) => {
                    out_col.push(String::new());
                    mark(&mut reject, n, i, format!("segment {}: {e}", clip(seg)));
                }
            }
        }
    }
    for (k, (name, kind)) in m.features.iter().enumerate() {
        let c = cols.get(name);
        let col = &mut b.features[k];
        match kind {
            FeatureKind::Numeric => {
                push_numbers(&c, rows, &mut col.numbers, &mut col.missing, |i, e| {
                    mark(&mut reject, n, i, format!("feature {}: {e}", clip(name)));
                });
            }
            FeatureKind::Categorical => {
                // Dictionary-encoded: each distinct value once per batch and a code per row,
                // rather than a string per row (a missing row's code is 0, never read).
                let float = c.is_float();
                let mut dict: FastMap<Cow<'_, str>, u32> = FastMap::default();
                col.categories = Vec::new();
                col.codes = Vec::with_capacity(n);
                for (i, &r) in rows.iter().enumerate() {
                    let v = if float && !c.is_null(r) {
                        Err(
                            "expected a string, boolean or integer (categorical), got a number"
                                .to_string(),
                        )
                    } else {
                        c.text(r)
                    };
                    match v {
                        Ok(Some(t)) if !t.is_empty() => {
                            // Distinct values are at most the rows of a batch.
                            let next = u32::try_from(dict.len()).unwrap_or(u32::MAX);
                            col.codes.push(*dict.entry(t).or_insert(next));
                        }
                        Ok(_) => {
                            col.codes.push(0);
                            col.missing.push(i as u32);
                        }
                        Err(e) => {
                            col.codes.push(0);
                            col.missing.push(i as u32);
                            mark(&mut reject, n, i, format!("feature {}: {e}", clip(name)));
                        }
                    }
                }
                let mut dictionary = vec![String::new(); dict.len()];
                for (value, code) in dict {
                    if let Some(slot) = dictionary.get_mut(code as usize) {
                        *slot = value.into_owned();
                    }
                }
                col.dictionary = dictionary;
            }
        }
    }
    let c = if cols.has("score") {
        cols.get("score")
    } else {
        cols.get("prediction")
    };
    push_numbers(&c, rows, &mut b.scores, &mut b.score_missing, |i, e| {
        mark(&mut reject, n, i, format!("score: {e}"));
    });
    let c = cols.get("latency_ms");
    for (i, &r) in rows.iter().enumerate() {
        match c.num(r) {
            Ok(x) => b.latency_ms.push(x.unwrap_or(f64::NAN)),
            Err(e) => {
                b.latency_ms.push(f64::NAN);
                mark(&mut reject, n, i, format!("latency_ms: {e}"));
            }
        }
    }
    // A model feature named `cost` is that feature, not the event's cost.
    let c = if m.feature_index.contains_key("cost") {
        Col::Absent
    } else {
        cols.get("cost")
    };
    for (i, &r) in rows.iter().enumerate() {
        match c.num(r) {
            Ok(x) => b.cost.push(x.unwrap_or(f64::NAN)),
            Err(e) => {
                b.cost.push(f64::NAN);
                mark(&mut reject, n, i, format!("cost: {e}"));
            }
        }
    }
    if ctx.kind == Kind::Reference {
        let c = cols.get("label");
        for (i, &r) in rows.iter().enumerate() {
            match c.num_or_bool(r) {
                Ok(Some(y)) => b.labels.push(y),
                Ok(None) => {
                    b.labels.push(0.0);
                    b.label_missing.push(i as u32);
                }
                Err(e) => {
                    b.labels.push(0.0);
                    b.label_missing.push(i as u32);
                    mark(&mut reject, n, i, format!("label: {e}"));
                }
            }
        }
    }
    let c = cols.get("items");
    if !matches!(c, Col::Absent) {
        for (i, &r) in rows.iter().enumerate() {
            let items = match c.text(r) {
                Ok(Some(t)) if !t.is_empty() => items_json(&t),
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(format!("items: {e} (store items as JSON text)")),
            };
            match items {
                Ok(items) => b.items.push(pb::RankedList { items }),
                Err(e) => {
                    b.items.push(pb::RankedList::default());
                    mark(&mut reject, n, i, e);
                }
            }
        }
    }
    let mut lines: Vec<u64> = rows.iter().map(|&r| first_line + r as u64).collect();
    if !reject.is_empty() {
        let keep: Vec<bool> = reject.iter().map(Option::is_none).collect();
        for (i, why) in reject.into_iter().enumerate() {
            if let Some(why) = why {
                out.reject(lines[i], why);
            }
        }
        retain_rows(&mut b, &keep);
        let mut it = keep.iter();
        lines.retain(|_| it.next().copied().unwrap_or(false));
    }
    out.rows += lines.len() as u64;
    for (part, l) in split_batch(b, lines, ctx.batch_rows, ctx.max_bytes) {
        out.batches.push(Outgoing {
            model: m.def.id.clone(),
            payload: Payload::Rows(part),
            lines: l,
        });
    }
}

fn convert_labels(
    cols: &Columns<'_>,
    groups: Vec<(Arc<ModelInfo>, Vec<usize>)>,
    first_line: u64,
    ctx: &Ctx,
    out: &mut Converted,
) {
    let rid = cols.get("request_id");
    let ts = cols.get("ts");
    let label = cols.get("label");
    let outcome_cols: Vec<(usize, Col<'_>)> = ["click", "purchase", "revenue", "dwell_ms"]
        .iter()
        .enumerate()
        .map(|(k, n)| (k, cols.get(n)))
        .filter(|(_, c)| !matches!(c, Col::Absent))
        .collect();
    let rel = cols.get("relevance");
    let has_ts = cols.has("ts");
    let mut per_model = Vec::new();
    for (m, rows) in groups {
        for r in rows {
            let line = first_line + r as u64;
            let l = (|| -> Result<pb::Label, String> {
                let request_id = match rid.text(r)? {
                    Some(t) if !t.is_empty() => t.into_owned(),
                    _ => return Err("missing request_id".into()),
                };
                let ts_ms = if has_ts && !ts.is_null(r) {
                    ts.ts(r, ctx.ts_unit)?
                } else {
                    0
                };
                let label = label.num_or_bool(r).map_err(|e| format!("label: {e}"))?;
                let mut o = pb::Outcome::default();
                let mut has = false;
                for (k, c) in &outcome_cols {
                    if let Some(x) = c.num(r)? {
                        has = true;
                        match k {
                            0 => o.click = x,
                            1 => o.purchase = x,
                            2 => o.revenue = x,
                            _ => o.dwell_ms = x,
                        }
                    }
                }
                if let Some(t) = rel.text(r)?.filter(|t| !t.is_empty()) {
                    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&t)
                        .map_err(|_| "relevance: expected a JSON object")?;
                    let mut pairs: Vec<(String, f64)> = Vec::with_capacity(v.len());
                    for (k, x) in v {
                        let x = x
                            .as_f64()
                            .ok_or_else(|| format!("relevance {}: expected a number", clip(&k)))?;
                        pairs.push((k, x));
                    }
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                    o.relevance = pairs.into_iter().collect();
                    has = true;
                }
                Ok(pb::Label {
                    request_id,
                    ts_ms,
                    label,
                    outcome: has.then_some(o),
                    model_id: String::new(),
                })
            })();
            match l {
                Ok(l) => {
                    push_label(&mut per_model, m.def.id.clone(), l, line);
                    out.rows += 1;
                }
                Err(e) => out.reject(line, e),
            }
        }
    }
    flush_labels(per_model, ctx, out);
}

#[cfg(test)]
mod tests;
