//! Sketch images written by Apache DataSketches (Python 5.2.0) read back with the answers the
//! golden README lists (docs/DATA_MODEL.md, scale-out 1), and images driftdb writes read back the same way.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly on broken fixtures"
)]

use datasketches::common::SearchCriteria;
use datasketches::frequencies::FrequentItemsSketch;
use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType};
use datasketches::kll::KllFloat;
use driftdb_engine::sketch::kll::{
    Kll, WeightedCdf, kll_deserialize, kll_merge, kll_update, new_kll,
};
use serde_json::Value;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/golden/sketches")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap()
}

fn read_kll(name: &str) -> Kll {
    kll_deserialize(&std::fs::read(dir().join(name)).unwrap()).unwrap()
}

fn q(k: &Kll, rank: f64) -> f64 {
    k.quantile(rank, SearchCriteria::Inclusive)
        .unwrap()
        .unwrap()
        .into_inner()
}

#[test]
fn kll_image_reads_back_exactly() {
    let e = &expected()["kll_doubles_k200"];
    let k = read_kll("kll_doubles_k200.bin");
    assert_eq!(k.k(), 200);
    assert_eq!(k.n(), e["n"].as_u64().unwrap());
    assert_eq!(k.num_retained() as u64, e["num_retained"].as_u64().unwrap());
    assert_eq!(
        k.min_item().unwrap().into_inner(),
        e["min"].as_f64().unwrap()
    );
    assert_eq!(
        k.max_item().unwrap().into_inner(),
        e["max"].as_f64().unwrap()
    );
    let cdf = WeightedCdf::from_sketch(&k).unwrap();
    for (r, want) in e["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(e["quantiles_inclusive"].as_array().unwrap())
    {
        let r = r.as_f64().unwrap();
        assert_eq!(q(&k, r), want.as_f64().unwrap(), "rank {r}");
        // Our own CDF view of the image agrees with the library.
        assert_eq!(
            cdf.quantile(r).unwrap(),
            want.as_f64().unwrap(),
            "cdf view, rank {r}"
        );
    }
    let rank50 = k
        .rank(
            &KllFloat::<f64>::new(50.0).unwrap(),
            SearchCriteria::Inclusive,
        )
        .unwrap();
    assert!((rank50 - e["rank_of_50"].as_f64().unwrap()).abs() < 1e-12);
    assert!((cdf.cdf_le(50.0) - rank50).abs() < 1e-12);
    assert!(
        (k.normalized_rank_error() - e["normalized_rank_error"].as_f64().unwrap()).abs() < 1e-12
    );
}

#[test]
fn kll_union_matches_python_union() {
    let e = &expected()["kll_union"];
    let mut a = read_kll("kll_doubles_k200.bin");
    let b = read_kll("kll_doubles_k200_b.bin");
    kll_merge(&mut a, &b).unwrap();
    let theirs = read_kll("kll_doubles_k200_union.bin");
    assert_eq!(a.n(), e["n"].as_u64().unwrap());
    assert_eq!(theirs.n(), a.n());
    assert_eq!(
        a.min_item().unwrap().into_inner(),
        e["min"].as_f64().unwrap()
    );
    assert_eq!(
        a.max_item().unwrap().into_inner(),
        e["max"].as_f64().unwrap()
    );
    // Quantiles depend on the merge's random compaction: compare ranks within the error bound.
    let eps = a.normalized_rank_error();
    let mut raw: Vec<f64> = ["kll_input.txt", "kll_input_b.txt"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir().join(f))
                .unwrap()
                .lines()
                .map(|l| l.trim().parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    raw.sort_by(f64::total_cmp);
    let exact = WeightedCdf::from_values(&raw);
    for (r, want) in [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
        .iter()
        .zip(e["quantiles_inclusive"].as_array().unwrap())
    {
        let ours = q(&a, *r);
        let true_rank = exact.cdf_le(ours);
        assert!(
            (true_rank - r).abs() <= eps,
            "rank {r}: ours {ours} has true rank {true_rank}"
        );
        let python_rank = exact.cdf_le(want.as_f64().unwrap());
        assert!((python_rank - r).abs() <= eps);
    }
}

#[test]
fn kll_images_we_write_read_back() {
    let input: Vec<f64> = std::fs::read_to_string(dir().join("kll_input.txt"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let mut k = new_kll();
    for v in &input {
        kll_update(&mut k, *v);
    }
    let image = k.serialize();
    let back = kll_deserialize(&image).unwrap();
    assert_eq!(back.n(), 5000);
    assert_eq!(back.serialize(), image);
    // The image layout is DataSketches': preamble ints 5, serial version 1, family 15, k = 200.
    assert_eq!(&image[..3], &[5, 1, 15]);
    assert_eq!(u16::from_le_bytes([image[4], image[5]]), 200);
}

#[test]
fn hll_image_and_raw_byte_hashing_match() {
    let e = &expected()["hll_lg12_hll8"];
    let bytes = std::fs::read(dir().join("hll_lg12_hll8.bin")).unwrap();
    let theirs = HllSketch::deserialize(&bytes).unwrap();
    let want = e["estimate"].as_f64().unwrap();
    assert!((theirs.estimate() - want).abs() < 1e-6 * want);
    let mut ours = HllSketch::new(12, HllType::Hll8).unwrap();
    for _ in 0..2 {
        for i in 0..50_000 {
            ours.update(raw_bytes::from_str(&format!("user-{i}")));
        }
    }
    assert_eq!(
        ours.estimate(),
        theirs.estimate(),
        "same strings must give the same registers"
    );
    // Rust's own Hash framing (length prefix / 0xff terminator) must NOT match: proves the test bites.
    let mut framed = HllSketch::new(12, HllType::Hll8).unwrap();
    for i in 0..50_000 {
        framed.update(format!("user-{i}"));
    }
    assert_ne!(framed.estimate(), theirs.estimate());
}

#[test]
fn frequent_items_image_reads_back() {
    let e = &expected()["frequent_strings_lg6"];
    let s = FrequentItemsSketch::<String>::deserialize(
        &std::fs::read(dir().join("frequent_strings_lg6.bin")).unwrap(),
    )
    .unwrap();
    assert_eq!(s.total_weight(), e["n"].as_u64().unwrap());
    assert_eq!(s.lg_max_map_size(), 6);
    for (item, _) in e["top10_true"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap(), p[1].as_u64().unwrap()))
    {
        assert_eq!(
            s.estimate(item),
            e["top10_estimates"][item].as_u64().unwrap(),
            "{item}"
        );
        assert_eq!(
            s.lower_bound(item),
            e["top10_lower"][item].as_u64().unwrap(),
            "{item}"
        );
        assert_eq!(
            s.upper_bound(item),
            e["top10_upper"][item].as_u64().unwrap(),
            "{item}"
        );
    }
    // Python's max_error is the a-priori bound epsilon · n.
    let apriori = s.epsilon() * s.total_weight() as f64;
    assert!((apriori - e["max_error"].as_f64().unwrap()).abs() < 1e-9);
    assert!(s.maximum_error() as f64 <= apriori);
}
