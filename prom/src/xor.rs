//! Prometheus' XOR chunk encoding (Gorilla-style: delta-of-delta timestamps, XOR-ed values),
//! the payload of every `Chunk` in a STREAMED_XOR_CHUNKS remote-read answer.
//!
//! The layout, as Prometheus' `tsdb/chunkenc` writes it; bits are written most significant
//! first:
//!
//! ```text
//! u16 BE   number of samples
//! sample 0 varint(zigzag t0)           float64 bits of v0 (64 bits)
//! sample 1 uvarint(t1 - t0)            xor(v1, v0)
//! sample n dod = (tn - tn-1) - (tn-1 - tn-2):
//!            0                         dod == 0
//!            10   + 14-bit dod         -(2^13 - 1) ..= 2^13
//!            110  + 17-bit dod         -(2^16 - 1) ..= 2^16
//!            1110 + 20-bit dod         -(2^19 - 1) ..= 2^19
//!            1111 + 64-bit dod         otherwise
//!          xor(vn, vn-1)
//! xor(v, prev): x = bits(v) ^ bits(prev)
//!            0                         x == 0
//!            10 + the meaningful bits  x fits the previous leading/trailing-zero window
//!            11 + 5-bit leading zeros (at most 31) + 6-bit meaningful-bit count (64 as 0)
//!               + the meaningful bits
//! ```
//!
//! The varints of samples 0 and 1 are written byte by byte into the bit stream. A chunk holds at
//! most [`MAX_SAMPLES_PER_CHUNK`] samples, as Prometheus' own chunks do, so a reader never has to
//! decode a long chunk to reach the samples it needs.

use crate::error::{Error, Result};

/// Samples per chunk, Prometheus' own target.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// Appends bits to a byte buffer, most significant bit first.
#[derive(Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, on: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if on && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// The low `n` bits of `v`, most significant first.
    fn bits(&mut self, v: u64, n: u8) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bits(u64::from(b), 8);
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    fn varint(&mut self, v: i64) {
        self.uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Whether `x` fits the `n`-bit delta-of-delta bucket: `-(2^(n-1) - 1) ..= 2^(n-1)`.
fn fits(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// Encodes one chunk; `samples` must be in ascending time order, at most
/// [`MAX_SAMPLES_PER_CHUNK`] of them (not checked beyond `u16`).
#[derive(Debug)]
pub struct XorEncoder {
    w: BitWriter,
    count: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    /// Leading and trailing zeros of the current XOR window; `None` before the first one.
    window: Option<(u8, u8)>,
}

impl Default for XorEncoder {
    fn default() -> Self {
        XorEncoder::new()
    }
}

impl XorEncoder {
    /// An empty chunk.
    pub fn new() -> XorEncoder {
        XorEncoder {
            w: BitWriter {
                bytes: vec![0, 0],
                free: 0,
            },
            count: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            window: None,
        }
    }

    /// Samples appended so far.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a sample (time in ms).
    pub fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.w.varint(t);
                self.w.bits(bits, 64);
            }
            1 => {
                let delta = t.wrapping_sub(self.t);
                self.w.uvarint(delta as u64);
                self.xor(bits);
                self.t_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t);
                let dod = delta.wrapping_sub(self.t_delta);
                if dod == 0 {
                    self.w.bit(false);
                } else if fits(dod, 14) {
                    self.w.bits(0b10, 2);
                    self.w.bits(dod as u64, 14);
                } else if fits(dod, 17) {
                    self.w.bits(0b110, 3);
                    self.w.bits(dod as u64, 17);
                } else if fits(dod, 20) {
                    self.w.bits(0b1110, 4);
                    self.w.bits(dod as u64, 20);
                } else {
                    self.w.bits(0b1111, 4);
                    self.w.bits(dod as u64, 64);
                }
                self.xor(bits);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = bits;
        self.count = self.count.saturating_add(1);
    }

    fn xor(&mut self, bits: u64) {
        let x = bits ^ self.v;
        if x == 0 {
            self.w.bit(false);
            return;
        }
        self.w.bit(true);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if let Some((l, t)) = self.window
            && leading >= l
            && trailing >= t
        {
            self.w.bit(false);
            self.w.bits(x >> t, 64 - l - t);
            return;
        }
        self.window = Some((leading, trailing));
        let significant = 64 - leading - trailing;
        self.w.bit(true);
        self.w.bits(u64::from(leading), 5);
        // 64 significant bits do not fit 6 bits; they are written as 0.
        self.w.bits(u64::from(significant) & 0x3f, 6);
        self.w.bits(x >> trailing, significant);
    }

    /// The chunk bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let [hi, lo] = self.count.to_be_bytes();
        self.w.bytes[0] = hi;
        self.w.bytes[1] = lo;
        self.w.bytes
    }
}

/// Encodes `samples` (ascending time) as one chunk.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.append(t, v);
    }
    e.finish()
}

/// Reads bits most significant first.
#[derive(Debug)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Result<bool> {
        let byte = self
            .bytes
            .get(self.pos / 8)
            .ok_or_else(|| Error::Invalid("XOR chunk ends early".into()))?;
        let on = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Ok(on)
    }

    fn bits(&mut self, n: u8) -> Result<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v)
    }

    fn uvarint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bits(8)?;
            v |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Error::Invalid(
            "XOR chunk: varint longer than 64 bits".into(),
        ))
    }

    fn varint(&mut self) -> Result<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// An `n`-bit two's-complement delta-of-delta, read the way Prometheus writes it: values
    /// above `2^(n-1)` are negative.
    fn dod(&mut self, n: u8) -> Result<i64> {
        let raw = self.bits(n)?;
        if n == 64 {
            return Ok(raw as i64);
        }
        let v = raw as i64;
        Ok(if v > 1 << (n - 1) { v - (1 << n) } else { v })
    }
}

/// Decodes a chunk written by [`encode`] (or by Prometheus) into its samples.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>> {
    let (Some(&hi), Some(&lo)) = (bytes.first(), bytes.get(1)) else {
        return Err(Error::Invalid("XOR chunk shorter than its header".into()));
    };
    let count = usize::from(u16::from_be_bytes([hi, lo]));
    let mut r = BitReader { bytes, pos: 16 };
    let mut out = Vec::with_capacity(count);
    let (mut t, mut delta, mut v) = (0i64, 0i64, 0u64);
    let mut window = (0u8, 0u8);
    for i in 0..count {
        match i {
            0 => {
                t = r.varint()?;
                v = r.bits(64)?;
            }
            _ => {
                if i == 1 {
                    delta = r.uvarint()? as i64;
                } else {
                    let mut prefix = 0u8;
                    while prefix < 4 && r.bit()? {
                        prefix += 1;
                    }
                    let dod = match prefix {
                        0 => 0,
                        1 => r.dod(14)?,
                        2 => r.dod(17)?,
                        3 => r.dod(20)?,
                        _ => r.dod(64)?,
                    };
                    delta = delta.wrapping_add(dod);
                }
                t = t.wrapping_add(delta);
                if r.bit()? {
                    if r.bit()? {
                        let leading = r.bits(5)? as u8;
                        let mut significant = r.bits(6)? as u8;
                        if significant == 0 {
                            significant = 64;
                        }
                        if u32::from(leading) + u32::from(significant) > 64 {
                            return Err(Error::Invalid(
                                "XOR chunk: leading zeros and significant bits exceed 64".into(),
                            ));
                        }
                        window = (leading, 64 - leading - significant);
                    }
                    let (leading, trailing) = window;
                    let significant = 64 - leading - trailing;
                    if significant == 0 {
                        return Err(Error::Invalid(
                            "XOR chunk: value reuses a window before one was set".into(),
                        ));
                    }
                    let x = r.bits(significant)?;
                    v ^= x << trailing;
                }
            }
        }
        out.push((t, f64::from_bits(v)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
