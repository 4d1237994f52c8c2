//! The stored-value envelope and the little byte codec every state uses.
//!
//! Every value driftdb stores is wrapped as
//!
//! ```text
//! +---------+------+----------------------+---------------+
//! | version | kind | payload ...          | crc32 (LE u32)|
//! |  1 byte |1 byte| variable             | over bytes 0..|
//! +---------+------+----------------------+---------------+
//! ```
//!
//! The crc32 (IEEE, `crc32fast`) covers the version, kind and payload, so a torn or corrupted
//! value is detected before any byte of it is interpreted (pattern from lsm-tree's `coding.rs`).
//! Layouts of each payload are drawn in `storage/FORMAT.md`.

use crate::error::{Error, Result};

/// Current envelope format version.
pub const FORMAT_VERSION: u8 = 1;

/// Bytes the envelope adds around a payload.
pub const ENVELOPE_OVERHEAD: usize = 2 + 4;

/// Wraps `payload` in the envelope for a value of `kind`.
pub fn seal(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + ENVELOPE_OVERHEAD);
    out.push(FORMAT_VERSION);
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the envelope and returns `(kind, payload)`.
pub fn open(bytes: &[u8]) -> Result<(u8, &[u8])> {
    if bytes.len() < ENVELOPE_OVERHEAD {
        return Err(Error::Truncated {
            offset: bytes.len(),
            needed: ENVELOPE_OVERHEAD - bytes.len(),
        });
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(Error::ChecksumMismatch { stored, computed });
    }
    if body[0] != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { version: body[0] });
    }
    Ok((body[1], &body[2..]))
}

/// Appends primitive values to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// A writer of a whole stored value of `kind`, written in place: the envelope's head
    /// first, then the payload the caller writes, then [`Writer::finish_sealed`] appends the
    /// checksum. The bytes equal [`seal`] of the same payload, without a second buffer.
    pub fn sealed(kind: u8, payload_capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(payload_capacity + ENVELOPE_OVERHEAD);
        buf.push(FORMAT_VERSION);
        buf.push(kind);
        Writer { buf }
    }

    /// Ends a value begun with [`Writer::sealed`]: appends the crc32 of everything before.
    pub fn finish_sealed(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }

    /// Appends bytes as they are (no length).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends an unsigned LEB128 varint.
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Appends a little-endian f64.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a little-endian i64.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a varint length and the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// Appends a varint length and the UTF-8 bytes.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads primitive values from a byte slice, failing cleanly on truncation.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_done(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self, what: &'static str) -> Result<()> {
        if self.is_done() {
            Ok(())
        } else {
            Err(Error::Malformed {
                what,
                detail: format!("{} trailing bytes", self.buf.len() - self.pos),
            })
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(Error::Truncated {
                offset: self.pos,
                needed: n.saturating_sub(self.buf.len() - self.pos),
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Reads an unsigned LEB128 varint (at most 10 bytes).
    #[inline]
    pub fn varint(&mut self) -> Result<u64> {
        // Most varints of a window state are one byte (a window's bin counts): no loop.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    /// [`Reader::varint`] of two or more bytes (or a truncated one).
    fn varint_long(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Malformed {
            what: "varint",
            detail: format!("overlong varint at offset {}", self.pos),
        })
    }

    /// Reads a varint that must fit in `usize` and be at most `max`.
    pub fn len(&mut self, max: usize, what: &'static str) -> Result<usize> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| Error::Malformed {
                what,
                detail: format!("length {v} exceeds {max}"),
            })
    }

    /// Reads a little-endian f64.
    pub fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// Reads a little-endian i64.
    pub fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// Reads a varint length and that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.len(self.buf.len() - self.pos, "byte string")?;
        self.take(n)
    }

    /// Reads a varint length and that many UTF-8 bytes.
    pub fn str(&mut self) -> Result<&'a str> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|e| Error::Malformed {
            what: "string",
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_detects_every_single_byte_flip() {
        let sealed = seal(3, b"hello sketch");
        assert_eq!(open(&sealed).unwrap(), (3, &b"hello sketch"[..]));
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut c = sealed.clone();
                c[i] ^= 1 << bit;
                assert!(
                    open(&c).is_err(),
                    "flip of byte {i} bit {bit} went unnoticed"
                );
            }
        }
        assert!(open(&sealed[..sealed.len() - 1]).is_err());
        assert!(open(&[]).is_err());
    }

    #[test]
    fn varints_round_trip_and_reject_garbage() {
        let mut w = Writer::new();
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            w.varint(v);
        }
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(r.varint().unwrap(), v);
        }
        assert!(r.is_done());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
    }
}
