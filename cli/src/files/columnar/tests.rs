//! The Arrow reader on record batches shaped as pandas, pyarrow and arrow-csv make them.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};

use super::*;
use crate::files::batch::{Ctx, FixedCatalog, Kind, Payload};
use crate::files::jsonl::tests::def;

fn ctx() -> Ctx {
    let mut c = Ctx::new(
        Kind::Inferences,
        Arc::new(FixedCatalog::of([def("m1"), def("m2")])),
    );
    c.default_model = Some("m1".into());
    c
}

#[test]
fn typed_columns_and_rejections() {
    let t0 = 1_772_323_200_000i64;
    let rb = RecordBatch::try_from_iter(vec![
        (
            "request_id",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                None,
                Some("d"),
            ])) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(TimestampNanosecondArray::from(vec![t0 * 1_000_000; 4]).with_timezone("UTC"))
                as ArrayRef,
        ),
        (
            "model_version",
            Arc::new(StringArray::from(vec!["v1", "v1", "v1", "v2"])) as ArrayRef,
        ),
        (
            "model_id",
            Arc::new(StringArray::from(vec![
                None,
                Some("m2"),
                None,
                Some("nope"),
            ])) as ArrayRef,
        ),
        (
            "region",
            Arc::new(DictionaryArray::<Int32Type>::from_iter([
                Some("eu"),
                None,
                Some("us"),
                Some("eu"),
            ])) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef,
        ),
        (
            "country",
            Arc::new(Float64Array::from(vec![None, Some(1.5), None, None])) as ArrayRef,
        ),
        ("extra", Arc::new(Int64Array::from(vec![0; 4])) as ArrayRef),
    ])
    .unwrap();
    let c = ctx();
    let mut out = Converted::default();
    convert_record_batch(&rb, 10, &c, &mut out);
    assert_eq!(out.rows, 4);
    assert_eq!(out.rejected, 3, "{:?}", out.errors);
    let reasons: Vec<(u64, &str)> = out.errors.iter().map(|(l, e)| (*l, e.as_str())).collect();
    assert!(
        reasons.contains(&(13, "unknown model \"nope\"")),
        "{reasons:?}"
    );
    assert!(reasons.contains(&(12, "missing request_id")), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(l, e)| *l == 11 && e.contains("categorical")),
        "{reasons:?}"
    );
    assert_eq!(out.batches.len(), 1);
    let Payload::Rows(b) = &out.batches[0].payload else {
        panic!("labels")
    };
    assert_eq!(b.model_id, "m1");
    assert_eq!(b.request_ids, ["a"]);
    assert_eq!(b.ts_ms, [t0]);
    assert_eq!(b.segments[0].values, ["eu"]);
    assert_eq!(b.features[0].numbers, [1.0]);
    assert_eq!(b.features[1].missing, [0]);
    assert_eq!(out.batches[0].lines, [10]);
    assert!(c.unknown_columns.lock().unwrap().contains("extra"));
}

#[test]
fn csv_strings_are_typed_by_the_model() {
    let rb = RecordBatch::try_from_iter(vec![
        (
            "request_id",
            Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(StringArray::from(vec![
                "2026-03-01T01:00:00+01:00",
                "1772323200",
                "2026-03-01 00:00:00.250",
            ])) as ArrayRef,
        ),
        (
            "model_version",
            Arc::new(StringArray::from(vec!["v1", "v1", "v1"])) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(StringArray::from(vec![Some("1.5"), Some(""), Some("NaN")])) as ArrayRef,
        ),
        (
            "country",
            Arc::new(StringArray::from(vec![Some("DE"), None, Some("")])) as ArrayRef,
        ),
        (
            "score",
            Arc::new(StringArray::from(vec!["0.5", "", "0.25"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut out = Converted::default();
    convert_record_batch(&rb, 2, &ctx(), &mut out);
    assert_eq!(out.rejected, 0, "{:?}", out.errors);
    let Payload::Rows(b) = &out.batches[0].payload else {
        panic!("labels")
    };
    let t0 = 1_772_323_200_000i64;
    assert_eq!(b.ts_ms, [t0, t0, t0 + 250]);
    assert_eq!(b.features[0].numbers[0], 1.5);
    assert_eq!(b.features[0].missing, [1]);
    assert!(b.features[0].numbers[2].is_nan());
    assert_eq!(b.features[1].missing, [1, 2]);
    assert_eq!(b.score_missing, [1]);
    assert_eq!(b.model_versions, ["v1"]);
}
