//! Unit tests of `xor`.

use super::*;

fn same(a: &[(i64, f64)], b: &[(i64, f64)]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0);
        assert_eq!(x.1.to_bits(), y.1.to_bits(), "{} vs {}", x.1, y.1);
    }
}

/// A hand-assembled chunk: t0 = 1000, v0 = 1.0; then +15 ms (v unchanged); then +15 ms
/// again (dod 0), v = 2.0.
#[test]
fn known_bytes() {
    let got = encode(&[(1000, 1.0), (1015, 1.0), (1030, 2.0)]);
    let mut want = vec![0x00, 0x03];
    // zigzag(1000) = 2000 = uvarint d0 0f
    want.extend([0xd0, 0x0f]);
    want.extend(1.0f64.to_bits().to_be_bytes());
    // uvarint(15) = 0x0f, then bits: xor 0 -> "0"; dod 0 -> "0"; xor(2.0, 1.0):
    // 0x4000.. ^ 0x3ff0.. = 0x7ff0_0000_0000_0000: leading 1, trailing 52, 11 significant
    // -> "1" "1" 00001 001011 11111111111
    want.push(0x0f);
    // bits: 0 0 1 1 00001 001011 11111111111 = 26 bits
    // 0011 0000 | 1001 0111 | 1111 1111 | 11 (then zero padding)
    want.extend([0b0011_0000, 0b1001_0111, 0b1111_1111, 0b1100_0000]);
    assert_eq!(got, want);
    same(
        &decode(&got).unwrap(),
        &[(1000, 1.0), (1015, 1.0), (1030, 2.0)],
    );
}

#[test]
fn round_trips_every_timestamp_bucket_and_value_shape() {
    let mut s = Vec::new();
    let mut t = -5_000i64;
    // Deltas that produce dod in every bucket, including both edges of each range.
    let deltas = [
        900_000i64,
        900_000,
        900_000 + 8192,
        900_000 + 8192 - 8191,
        900_000 + 65_536,
        900_000,
        900_000 + 524_288,
        900_000 - 524_287,
        900_000 + 524_289,
        1,
        3_600_000_000,
        0,
        7,
    ];
    let values = [
        0.0,
        0.1,
        0.1,
        -0.25,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e-300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.123_456_789,
        0.123_456_788,
        42.0,
        -0.0,
        f64::from_bits(1),
    ];
    s.push((t, values[0]));
    for (i, d) in deltas.iter().enumerate() {
        t += d;
        s.push((t, values[(i + 1) % values.len()]));
    }
    same(&decode(&encode(&s)).unwrap(), &s);
    // NaN keeps its bits.
    let nan = [(0, f64::NAN), (1, 1.0), (2, f64::NAN)];
    let back = decode(&encode(&nan)).unwrap();
    assert!(back[0].1.is_nan() && back[2].1.is_nan());
}

#[test]
fn a_full_chunk_of_window_ends_is_compact() {
    let times: Vec<i64> = (0..MAX_SAMPLES_PER_CHUNK as i64)
        .map(|i| 1_772_323_200_000 + i * 900_000)
        .collect();
    let varying: Vec<(i64, f64)> = times
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, 0.01 * (i % 7) as f64))
        .collect();
    same(&decode(&encode(&varying)).unwrap(), &varying);
    // Regular timestamps and an unchanged value cost two bits per sample after the second:
    // 2 (count) + 6 (t0) + 8 (v0) + 3 (delta) + ceil((1 + 118 * 2) / 8) = 49 bytes.
    let flat: Vec<(i64, f64)> = times.iter().map(|&t| (t, 0.25)).collect();
    let bytes = encode(&flat);
    assert_eq!(bytes.len(), 49);
    same(&decode(&bytes).unwrap(), &flat);
}

#[test]
fn empty_and_truncated_chunks() {
    assert_eq!(encode(&[]), vec![0, 0]);
    assert!(decode(&[0, 0]).unwrap().is_empty());
    assert!(decode(&[0]).is_err());
    let bytes = encode(&[(1, 1.0), (2, 3.0), (4, 5.0)]);
    assert!(decode(&bytes[..bytes.len() - 2]).is_err());
}
