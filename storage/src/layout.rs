//! Every column family name, key prefix and key encoding, in one place (house style; byte
//! diagrams in `storage/FORMAT.md`).
//!
//! Window keys are model-first (docs/DATA_MODEL.md, scale-out 2): model, version, feature, segment, resolution tag,
//! window start. Every component is self-delimiting and order-preserving, so
//!
//! - byte order of keys equals the order of `(SeriesKey, Resolution, Timestamp)`,
//! - the encodings of `(model)`, `(model, version)`, `(model, version, feature)` and the whole
//!   series are prefixes of their windows' keys, each a contiguous key range.
//!
//! **Strings** are written with every `0x00` byte escaped as `0x00 0xFF` and a `0x00 0x01`
//! terminator. No encoded string is a prefix of another, and byte order equals the strings'
//! byte order (a shorter string's terminator `00 01` sorts below any continuation: a byte
//! `>= 01`, or an escaped zero `00 FF`).
//!
//! **Signed integers** (`i64`, window starts) are big-endian with the sign bit flipped, so
//! negative values sort before positive ones.

use driftdb_engine::series::{FeatureRef, Segment, SeriesKey};
use driftdb_engine::time::{Resolution, Timestamp};

use crate::error::{Error, Result};

/// Metadata: model definitions, versions, storage watermarks.
pub const CF_META: &str = "meta";
/// Reference profiles per model version and feature.
pub const CF_REFERENCE: &str = "reference";
/// 15-minute window sketches.
pub const CF_WIN_15M: &str = "win_15m";
/// Hourly window sketches (ingest of 1h models, and the target of 15m downsampling).
pub const CF_WIN_1H: &str = "win_1h";
/// Daily window sketches (a downsampling target).
pub const CF_WIN_1D: &str = "win_1d";
/// Pending label joins: predictions waiting for labels and labels waiting for predictions.
pub const CF_PENDING: &str = "pending";
/// Idempotency records: request ids and producer batch sequences (docs/DATA_MODEL.md, scale-out 4).
pub const CF_DEDUP: &str = "dedup";
/// Alert history and rule state, keyed by (rule, series, window) (docs/DATA_MODEL.md, scale-out 6).
pub const CF_ALERTS: &str = "alerts";
/// The durable webhook outbox, keyed by (rule, series, window).
pub const CF_OUTBOX: &str = "outbox";

/// Every column family driftdb creates, besides RocksDB's `default` (left empty).
pub const ALL_CFS: [&str; 9] = [
    CF_META,
    CF_REFERENCE,
    CF_WIN_15M,
    CF_WIN_1H,
    CF_WIN_1D,
    CF_PENDING,
    CF_DEDUP,
    CF_ALERTS,
    CF_OUTBOX,
];

/// The column family holding windows of `res`.
pub fn window_cf(res: Resolution) -> &'static str {
    match res {
        Resolution::M15 => CF_WIN_15M,
        Resolution::H1 => CF_WIN_1H,
        Resolution::D1 => CF_WIN_1D,
    }
}

/// `meta` key prefix: a model definition, `'M' | str(model)`.
pub const META_MODEL: u8 = b'M';
/// `meta` key prefix: a model version, `'V' | str(model) | str(version)`.
pub const META_VERSION: u8 = b'V';
/// `meta` key prefix: storage's own bookkeeping, `'S' | name` (e.g. downsampling watermarks).
pub const META_STORAGE: u8 = b'S';
/// [`CF_META`]: admitted segment values of a model (cardinality cap); written by the server.
pub const META_SEGMENTS: u8 = b'G';
/// `meta` storage record: the 15m → 1h downsampling watermark (`'S' | "downsample" | 0x00 |
/// source resolution tag`).
pub const META_DOWNSAMPLE_NAME: &[u8] = b"downsample";

/// `meta` storage record: the instant from which daily rollups are complete (`'S' | "rollup" |
/// 0x00 | D1 tag`), big-endian i64 ms.
pub const META_ROLLUP_NAME: &[u8] = b"rollup";

/// `meta` storage record: the daily-rollup cursor (`'S' | "rolled" | 0x00 | D1 tag`): which
/// finer windows are already merged into their day's window (see `rollup.rs`).
pub const META_ROLLED_NAME: &[u8] = b"rolled";

/// `reference` key prefix: one feature's profile, `'F' | str(model) | str(version) | feature`.
pub const REFERENCE_FEATURE: u8 = b'F';
/// `reference` key prefix: a version's profile header, `'H' | str(model) | str(version)`.
pub const REFERENCE_HEADER: u8 = b'H';

/// `pending` key prefix: a pending join by id, `'I' | str(model) | str(request_id)`.
pub const PENDING_BY_ID: u8 = b'I';
/// `pending` key prefix: the expiry index, `'E' | i64(deadline ms) | str(model) |
/// str(request_id)`, so expired joins are one range scan from the start.
pub const PENDING_BY_DEADLINE: u8 = b'E';

/// `dedup` key prefix: a seen request id, `'R' | str(model) | str(request_id)`.
pub const DEDUP_REQUEST: u8 = b'R';
/// `dedup` key prefix: a producer's last applied batch, `'P' | str(producer_id)`; later also
/// Kafka `partition + offset` under the same shape.
pub const DEDUP_PRODUCER: u8 = b'P';

/// `meta` key prefix: a rule's current definition, `'R' | str(rule id)`.
pub const META_RULE: u8 = b'R';
/// `meta` key prefix: every stored version of a rule, `'U' | str(rule id) | u64(version)`.
pub const META_RULE_VERSION: u8 = b'U';
/// `meta` key prefix: a model's rule-evaluation cursor (next window to evaluate and the
/// versions seen), `'C' | str(model)`.
pub const META_RULE_CURSOR: u8 = b'C';
/// `meta` key prefix: an API key (its record and the SHA-256 of its secret, never the secret),
/// `'K' | str(key id)`; written by the server.
pub const META_API_KEY: u8 = b'K';
/// `meta` key prefix: the secrets of a rule's actions (PagerDuty routing keys, Slack webhook
/// URLs, Jira tokens, webhook query strings), kept apart from the rule text, which holds
/// `"***"` in their place: `'X' | str(rule id)`; written by the server.
pub const META_RULE_SECRET: u8 = b'X';
/// `meta` key prefix: a silence's current version, `'Q' | str(silence id)`; written by the
/// server.
pub const META_SILENCE: u8 = b'Q';
/// `meta` key prefix: every stored version of a silence (creation, expiry),
/// `'W' | str(silence id) | u64(version)`.
pub const META_SILENCE_VERSION: u8 = b'W';

/// `alerts` key prefix: one alert event (a firing or a resolution) by sequence number,
/// `'L' | u64(sequence)`: the log `WatchAlerts` replays.
pub const ALERT_LOG: u8 = b'L';
/// `alerts` key prefix: the sequence recorded for an event id, `'K' | str(event id)`; the event
/// id names (rule, series, window, status), so a replayed evaluation records nothing twice.
pub const ALERT_EVENT_ID: u8 = b'K';
/// `alerts` key prefix: one alert episode (fired, then maybe resolved), `'H' | str(model) |
/// i64(fired at) | str(dedup key)`: the history `ListAlerts` reads.
pub const ALERT_HISTORY: u8 = b'H';
/// `alerts` key prefix: a rule's hysteresis state for one series, `'S' | str(model) |
/// str(rule) | str(version) | str(feature) | str(segment)` (model first: one model's states
/// are one range, read in one scan at its window close).
pub const ALERT_RULE_STATE: u8 = b'S';
/// `alerts` key prefix: when an event rule last fired for a model, `'E' | str(model) |
/// str(rule)`.
pub const ALERT_EVENT_FIRED: u8 = b'E';

/// `outbox` key prefix: one pending delivery, `'O' | u64(alert sequence) | u8(action index)`.
pub const OUTBOX_DELIVERY: u8 = b'O';
/// `outbox` key prefix: a dead-lettered delivery, same key shape as [`OUTBOX_DELIVERY`].
pub const OUTBOX_DEAD: u8 = b'D';
/// `outbox` key prefix: `'P' | str(group key)`, alerts collected for one grouped notification.
pub const OUTBOX_GROUP: u8 = b'P';
/// `outbox` key prefix: `'F' | str(group series)`, a group's firing series and last sends.
pub const OUTBOX_GROUP_STATE: u8 = b'F';

/// Tag of [`FeatureRef::Named`] in keys (followed by the name).
pub const FEATURE_NAMED: u8 = 1;
/// Tag of [`FeatureRef::Score`] in keys.
pub const FEATURE_SCORE: u8 = 2;
/// Tag of [`FeatureRef::Label`] in keys.
pub const FEATURE_LABEL: u8 = 3;
/// Tag of [`FeatureRef::Latency`] in keys.
pub const FEATURE_LATENCY: u8 = 4;
/// Tag of [`FeatureRef::Items`] in keys (ranking models' served item ids).
pub const FEATURE_ITEMS: u8 = 5;
/// Tag of [`FeatureRef::Cost`] in keys.
pub const FEATURE_COST: u8 = 6;
/// Tag of [`FeatureRef::Attribution`] in keys (followed by the feature's name).
pub const FEATURE_ATTRIBUTION: u8 = 7;
/// Tag of [`Segment::All`] in keys.
pub const SEGMENT_ALL: u8 = 1;
/// Tag of [`Segment::Value`] in keys (followed by key and value).
pub const SEGMENT_VALUE: u8 = 2;

/// Bytes after the series part of a window key: resolution tag + 8-byte window start.
pub const WINDOW_SUFFIX_LEN: usize = 9;

/// Builds keys from order-preserving components.
#[derive(Debug, Default, Clone)]
pub struct KeyWriter {
    buf: Vec<u8>,
}

impl KeyWriter {
    /// An empty key.
    pub fn new() -> Self {
        Self::default()
    }

    /// A key starting with one prefix byte.
    pub fn with_prefix(prefix: u8) -> Self {
        let mut w = KeyWriter::new();
        w.u8(prefix);
        w
    }

    /// A key starting with one prefix byte, with room for `len` bytes in all: one allocation
    /// for keys built once per row.
    pub fn with_prefix_capacity(prefix: u8, len: usize) -> Self {
        let mut w = KeyWriter {
            buf: Vec::with_capacity(len),
        };
        w.u8(prefix);
        w
    }

    /// Appends one raw byte (a prefix or tag).
    pub fn u8(&mut self, b: u8) -> &mut Self {
        self.buf.push(b);
        self
    }

    /// Appends raw bytes that need no delimiting (a fixed suffix).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends a string: `0x00` escaped as `00 FF`, terminated by `00 01`.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Appends a byte string with the same escaping as [`KeyWriter::str`].
    pub fn bytes(&mut self, mut b: &[u8]) -> &mut Self {
        self.buf.reserve(b.len() + 2);
        // Runs without a zero byte (all of a typical string) are copied whole.
        while let Some(i) = b.iter().position(|&c| c == 0) {
            self.buf.extend_from_slice(&b[..=i]);
            self.buf.push(0xFF);
            b = &b[i + 1..];
        }
        self.buf.extend_from_slice(b);
        self.buf.extend_from_slice(&[0x00, 0x01]);
        self
    }

    /// Appends an i64, big-endian with the sign bit flipped.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&encode_i64(v));
        self
    }

    /// Appends a u64, big-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a feature: its tag, and the name for [`FeatureRef::Named`] and
    /// [`FeatureRef::Attribution`].
    pub fn feature(&mut self, f: &FeatureRef) -> &mut Self {
        match f {
            FeatureRef::Named(n) => self.u8(FEATURE_NAMED).str(n),
            FeatureRef::Score => self.u8(FEATURE_SCORE),
            FeatureRef::Label => self.u8(FEATURE_LABEL),
            FeatureRef::Latency => self.u8(FEATURE_LATENCY),
            FeatureRef::Items => self.u8(FEATURE_ITEMS),
            FeatureRef::Cost => self.u8(FEATURE_COST),
            FeatureRef::Attribution(n) => self.u8(FEATURE_ATTRIBUTION).str(n),
        }
    }

    /// Appends a segment: its tag, and key and value for [`Segment::Value`].
    pub fn segment(&mut self, s: &Segment) -> &mut Self {
        match s {
            Segment::All => self.u8(SEGMENT_ALL),
            Segment::Value { key, value } => self.u8(SEGMENT_VALUE).str(key).str(value),
        }
    }

    /// Appends a whole series: model, version, feature, segment.
    pub fn series(&mut self, s: &SeriesKey) -> &mut Self {
        self.str(&s.model)
            .str(&s.version)
            .feature(&s.feature)
            .segment(&s.segment)
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The finished key.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads keys written by [`KeyWriter`].
#[derive(Debug)]
pub struct KeyReader<'a> {
    buf: &'a [u8],
    pos: usize,
    family: &'static str,
}

impl<'a> KeyReader<'a> {
    /// A reader over a key of `family` (named in errors).
    pub fn new(family: &'static str, buf: &'a [u8]) -> Self {
        KeyReader {
            buf,
            pos: 0,
            family,
        }
    }

    fn err(&self, detail: &'static str) -> Error {
        Error::MalformedKey {
            family: self.family,
            offset: self.pos,
            detail,
        }
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Fails unless the whole key was read.
    pub fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }

    /// Reads one raw byte.
    pub fn u8(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads an escaped byte string.
    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let c = self.u8()?;
            if c != 0 {
                out.push(c);
                continue;
            }
            match self.u8()? {
                0xFF => out.push(0),
                0x01 => return Ok(out),
                _ => return Err(self.err("bad escape after 0x00")),
            }
        }
    }

    /// Reads an escaped UTF-8 string.
    pub fn str(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))
    }

    /// Reads an order-preserving i64.
    pub fn i64(&mut self) -> Result<i64> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("truncated i64"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        self.pos += 8;
        Ok(decode_i64(a))
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("truncated u64"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        self.pos += 8;
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a feature.
    pub fn feature(&mut self) -> Result<FeatureRef> {
        Ok(match self.u8()? {
            FEATURE_NAMED => FeatureRef::Named(self.str()?),
            FEATURE_SCORE => FeatureRef::Score,
            FEATURE_LABEL => FeatureRef::Label,
            FEATURE_LATENCY => FeatureRef::Latency,
            FEATURE_ITEMS => FeatureRef::Items,
            FEATURE_COST => FeatureRef::Cost,
            FEATURE_ATTRIBUTION => FeatureRef::Attribution(self.str()?),
            _ => return Err(self.err("unknown feature tag")),
        })
    }

    /// Reads a segment.
    pub fn segment(&mut self) -> Result<Segment> {
        Ok(match self.u8()? {
            SEGMENT_ALL => Segment::All,
            SEGMENT_VALUE => Segment::Value {
                key: self.str()?,
                value: self.str()?,
            },
            _ => return Err(self.err("unknown segment tag")),
        })
    }

    /// Reads a whole series.
    pub fn series(&mut self) -> Result<SeriesKey> {
        Ok(SeriesKey {
            model: self.str()?,
            version: self.str()?,
            feature: self.feature()?,
            segment: self.segment()?,
        })
    }
}

/// An i64 as 8 bytes that sort like the numbers: big-endian with the sign bit flipped.
pub fn encode_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`encode_i64`].
pub fn decode_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// The encoded series: the prefix shared by all of its windows' keys.
pub fn series_prefix(series: &SeriesKey) -> Vec<u8> {
    KeyWriter::new().series(series).finish()
}

/// The key range of one model: `str(model)`.
pub fn model_prefix(model: &str) -> Vec<u8> {
    KeyWriter::new().str(model).finish()
}

/// The key range of one model version: `str(model) | str(version)`.
pub fn version_prefix(model: &str, version: &str) -> Vec<u8> {
    KeyWriter::new().str(model).str(version).finish()
}

/// The key range of one feature of a model version, all segments.
pub fn feature_prefix(model: &str, version: &str, feature: &FeatureRef) -> Vec<u8> {
    KeyWriter::new()
        .str(model)
        .str(version)
        .feature(feature)
        .finish()
}

/// The key of one window: `series | resolution tag | i64(window start)`.
///
/// `start` is used as given; callers pass a window start ([`Resolution::window_start`]).
pub fn window_key(series: &SeriesKey, res: Resolution, start: Timestamp) -> Vec<u8> {
    let mut w = KeyWriter::new();
    w.series(series).u8(res.tag()).i64(start.millis());
    w.finish()
}

/// A window key from an already encoded series prefix (saves re-encoding in scans).
pub fn window_key_from_prefix(prefix: &[u8], res: Resolution, start: Timestamp) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + WINDOW_SUFFIX_LEN);
    k.extend_from_slice(prefix);
    k.push(res.tag());
    k.extend_from_slice(&encode_i64(start.millis()));
    k
}

/// Splits a window key into its series part, resolution and window start without decoding
/// the series; `None` when the key is too short or the tag unknown.
pub fn split_window_key(key: &[u8]) -> Option<(&[u8], Resolution, Timestamp)> {
    let cut = key.len().checked_sub(WINDOW_SUFFIX_LEN)?;
    let (series, tail) = key.split_at(cut);
    let res = Resolution::from_tag(tail[0])?;
    let mut a = [0u8; 8];
    a.copy_from_slice(&tail[1..]);
    Some((series, res, Timestamp(decode_i64(a))))
}

/// Decodes a whole window key.
pub fn decode_window_key(key: &[u8]) -> Result<(SeriesKey, Resolution, Timestamp)> {
    let mut r = KeyReader::new("window", key);
    let series = r.series()?;
    let tag = r.u8()?;
    let res = Resolution::from_tag(tag).ok_or(Error::MalformedKey {
        family: "window",
        offset: key.len().saturating_sub(WINDOW_SUFFIX_LEN),
        detail: "unknown resolution tag",
    })?;
    let start = Timestamp(r.i64()?);
    r.finish()?;
    Ok((series, res, start))
}

/// Decodes the series part of a window key (as returned by [`split_window_key`]).
pub fn decode_series(series_part: &[u8]) -> Result<SeriesKey> {
    let mut r = KeyReader::new("window", series_part);
    let s = r.series()?;
    r.finish()?;
    Ok(s)
}

/// The smallest key greater than every key starting with `prefix`, or `None` when no such key
/// exists (the prefix is all `0xFF`). Used as an exclusive upper bound of prefix scans.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xFF {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

/// The key just past every window of the series whose encoding is `series_part`: the series
/// part followed by `0xFF`, above every resolution tag. Seeking there skips the series.
pub fn series_skip_key(series_part: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(series_part.len() + 1);
    k.extend_from_slice(series_part);
    k.push(0xFF);
    k
}

/// The `meta` key of a storage watermark for downsampling windows of `source`.
pub fn downsample_watermark_key(source: Resolution) -> Vec<u8> {
    let mut w = KeyWriter::with_prefix(META_STORAGE);
    w.raw(META_DOWNSAMPLE_NAME).u8(0).u8(source.tag());
    w.finish()
}

/// The `meta` key of the daily-rollup marker.
pub fn rollup_marker_key() -> Vec<u8> {
    let mut w = KeyWriter::with_prefix(META_STORAGE);
    w.raw(META_ROLLUP_NAME).u8(0).u8(Resolution::D1.tag());
    w.finish()
}

/// The `meta` key of the daily-rollup cursor.
pub fn roll_cursor_key() -> Vec<u8> {
    let mut w = KeyWriter::with_prefix(META_STORAGE);
    w.raw(META_ROLLED_NAME).u8(0).u8(Resolution::D1.tag());
    w.finish()
}

#[cfg(test)]
mod tests;
