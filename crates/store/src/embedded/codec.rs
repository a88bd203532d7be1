//! The embedded store's log format: blocks of entries.
//!
//! The data directory's `log/` holds segment files (see [`super::segment`]); each is a
//! sequence of **blocks**, one per commit group, and a block is the unit of atomicity: it is
//! either wholly on disk (length and CRC-32C check) or ignored and cut off at recovery.
//!
//! A block's body is a sequence of **entries**, each `kind u8 ‖ length varint ‖ bytes`:
//!
//! - `SYMBOL` (1): `id varint ‖ UTF-8 text`. Tenant ids, event types, actors and session ids
//!   are written once and referred to by number afterwards; ids are dense, starting at 1, in
//!   log order.
//! - `DICT` (2): `number varint ‖ codec id u8 ‖ table` (codec 1: an FSST symbol table, see
//!   `compress`). Dictionaries are trained from the store's own events; numbers are dense,
//!   starting at 1.
//! - `EVENT` (3): `tenant sym ‖ seq ‖ flags u8 ‖ timestamp digits u8 ‖ timestamp i64 LE ‖
//!   received_at i64 LE ‖ event_id [16] ‖ salt-or-commitment [32] ‖ leaf hash [32] ‖ type sym ‖
//!   actor sym ‖ [session sym] ‖ dict varint ‖ body`. Every field an index needs is in this
//!   fixed header, so recovery never decompresses. The body is `[u8 len ‖ source_ip]
//!   [u16 LE len ‖ approval_id] ‖ canonical payload` (parts present as flagged), compressed
//!   with dictionary `dict` when `dict` ≠ 0, stored as is when 0.
//! - `CHECKPOINT` (4): `tenant sym ‖ size varint ‖ root [32] ‖ signed note text`.
//! - `KEY` (5): `verifier key text` (C2SP vkey): the key the log's checkpoints are signed
//!   with from here on. The first start records it; a later start with another key is refused
//!   unless a rotation is requested, which records the new key (every key stays in the log, so
//!   older checkpoints stay verifiable).
//!
//! Unsigned integers marked varint are LEB128. A reader refuses unknown kinds and versions
//! rather than guessing.

use crate::StoreError;
use trailkeep_core::{Timestamp, Uuid};

pub const SYMBOL: u8 = 1;
pub const DICT: u8 = 2;
pub const EVENT: u8 = 3;
pub const CHECKPOINT: u8 = 4;
pub const KEY: u8 = 5;

pub const F_TS_ASSIGNED: u8 = 1;
pub const F_IP: u8 = 2;
pub const F_SESSION: u8 = 4;
pub const F_APPROVAL: u8 = 8;
/// Salt and payload were removed (retention, erasure); the 32 bytes hold the commitment.
pub const F_PURGED: u8 = 16;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `kind ‖ len ‖ bytes written by f`. The length is patched in after `f` ran, with a
/// fixed 5-byte varint so nothing moves.
pub fn put_entry(out: &mut Vec<u8>, kind: u8, f: impl FnOnce(&mut Vec<u8>)) {
    out.push(kind);
    let at = out.len();
    out.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x00]);
    let start = out.len();
    f(out);
    let mut n = (out.len() - start) as u64;
    for i in 0..5 {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        out[at + i] = if i < 4 { b | 0x80 } else { b };
    }
}

pub fn put_symbol(out: &mut Vec<u8>, id: u32, text: &str) {
    put_entry(out, SYMBOL, |o| {
        put_varint(o, id as u64);
        o.extend_from_slice(text.as_bytes());
    });
}

pub fn put_dict(out: &mut Vec<u8>, number: u32, dict: &[u8]) {
    put_entry(out, DICT, |o| {
        put_varint(o, number as u64);
        o.extend_from_slice(dict);
    });
}

pub fn put_checkpoint(out: &mut Vec<u8>, tenant: u32, size: u64, root: &[u8; 32], note: &str) {
    put_entry(out, CHECKPOINT, |o| {
        put_varint(o, tenant as u64);
        put_varint(o, size);
        o.extend_from_slice(root);
        o.extend_from_slice(note.as_bytes());
    });
}

pub fn put_key(out: &mut Vec<u8>, vkey: &str) {
    put_entry(out, KEY, |o| o.extend_from_slice(vkey.as_bytes()));
}

/// The uncompressed body of an event: optional source IP and approval id, then the payload.
pub fn encode_body(
    out: &mut Vec<u8>,
    source_ip: Option<&str>,
    approval_id: Option<&str>,
    payload: &[u8],
) {
    if let Some(ip) = source_ip {
        // Validated IP addresses are at most 45 bytes.
        out.push(ip.len().min(255) as u8);
        out.extend_from_slice(&ip.as_bytes()[..ip.len().min(255)]);
    }
    if let Some(a) = approval_id {
        let n = a.len().min(u16::MAX as usize);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&a.as_bytes()[..n]);
    }
    out.extend_from_slice(payload);
}

/// An event entry's fixed header, as written and as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeader {
    pub tenant: u32,
    pub seq: u64,
    pub flags: u8,
    pub digits: u8,
    pub ts: i64,
    pub received: i64,
    pub event_id: [u8; 16],
    pub salt_or_commitment: [u8; 32],
    pub leaf_hash: [u8; 32],
    pub event_type: u32,
    pub actor: u32,
    /// 0 when the event has no impersonation session.
    pub session: u32,
    /// 0 = body stored uncompressed.
    pub dict: u32,
}

/// Appends an event entry; returns the offset of the entry's contents in `out`.
pub fn put_event(out: &mut Vec<u8>, h: &EventHeader, body: &[u8]) -> usize {
    let at = out.len() + 6;
    put_entry(out, EVENT, |o| {
        put_varint(o, h.tenant as u64);
        put_varint(o, h.seq);
        o.push(h.flags);
        o.push(h.digits);
        o.extend_from_slice(&h.ts.to_le_bytes());
        o.extend_from_slice(&h.received.to_le_bytes());
        o.extend_from_slice(&h.event_id);
        o.extend_from_slice(&h.salt_or_commitment);
        o.extend_from_slice(&h.leaf_hash);
        put_varint(o, h.event_type as u64);
        put_varint(o, h.actor as u64);
        if h.flags & F_SESSION != 0 {
            put_varint(o, h.session as u64);
        }
        put_varint(o, h.dict as u64);
        o.extend_from_slice(body);
    });
    at
}

/// A cursor over bytes that fails with `Corrupt` (never panics) on short or bad input.
pub struct Reader<'a> {
    pub b: &'a [u8],
    pub pos: usize,
}

fn truncated() -> StoreError {
    StoreError::Corrupt("log entry is truncated".into())
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.b.len()
    }
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let s = self.b.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(s)
    }
    #[inline]
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    #[inline]
    pub fn arr<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    #[inline]
    pub fn varint(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StoreError::Corrupt("varint is too long".into()))
    }
    #[inline]
    pub fn varint_u32(&mut self) -> Result<u32, StoreError> {
        u32::try_from(self.varint()?).map_err(|_| StoreError::Corrupt("number out of range".into()))
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.b.get(self.pos..).unwrap_or(&[]);
        self.pos = self.b.len();
        s
    }
    /// The next entry: `(kind, bytes, offset of the entry in this reader's buffer)`.
    #[inline]
    pub fn entry(&mut self) -> Result<(u8, &'a [u8], usize), StoreError> {
        let at = self.pos;
        let kind = self.u8()?;
        let n = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        Ok((kind, self.take(n)?, at))
    }
}

pub fn read_event_header(r: &mut Reader<'_>) -> Result<EventHeader, StoreError> {
    let tenant = r.varint_u32()?;
    let seq = r.varint()?;
    let flags = r.u8()?;
    let digits = r.u8()?;
    let ts = i64::from_le_bytes(r.arr()?);
    let received = i64::from_le_bytes(r.arr()?);
    let event_id = r.arr()?;
    let salt_or_commitment = r.arr()?;
    let leaf_hash = r.arr()?;
    let event_type = r.varint_u32()?;
    let actor = r.varint_u32()?;
    let session = if flags & F_SESSION != 0 {
        r.varint_u32()?
    } else {
        0
    };
    let dict = r.varint_u32()?;
    Ok(EventHeader {
        tenant,
        seq,
        flags,
        digits,
        ts,
        received,
        event_id,
        salt_or_commitment,
        leaf_hash,
        event_type,
        actor,
        session,
        dict,
    })
}

/// The parts of a decoded body.
pub struct Body {
    pub source_ip: Option<String>,
    pub approval_id: Option<String>,
    pub payload: Vec<u8>,
}

pub fn decode_body(flags: u8, raw: &[u8]) -> Result<Body, StoreError> {
    let mut r = Reader::new(raw);
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| StoreError::Corrupt("event body holds invalid UTF-8".into()))
    };
    let source_ip = if flags & F_IP != 0 {
        let n = r.u8()? as usize;
        Some(utf8(r.take(n)?)?)
    } else {
        None
    };
    let approval_id = if flags & F_APPROVAL != 0 {
        let n = u16::from_le_bytes(r.arr()?) as usize;
        Some(utf8(r.take(n)?)?)
    } else {
        None
    };
    Ok(Body {
        source_ip,
        approval_id,
        payload: r.rest().to_vec(),
    })
}

/// The header's timestamp.
pub fn timestamp(h: &EventHeader) -> Timestamp {
    Timestamp::from_nanos(h.ts, h.digits)
}

pub fn uuid(h: &EventHeader) -> Uuid {
    Uuid::from_bytes(h.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader::new(&b).varint().unwrap(), v);
        }
    }

    #[test]
    fn entries_round_trip_and_truncation_is_an_error() {
        let h = EventHeader {
            tenant: 3,
            seq: 1 << 40,
            flags: F_SESSION | F_IP,
            digits: 3,
            ts: -5,
            received: 7,
            event_id: [9; 16],
            salt_or_commitment: [1; 32],
            leaf_hash: [2; 32],
            event_type: 4,
            actor: 5,
            session: 6,
            dict: 0,
        };
        let mut b = Vec::new();
        put_symbol(&mut b, 1, "t_1");
        put_event(&mut b, &h, b"body");
        let mut r = Reader::new(&b);
        let (k, e, _) = r.entry().unwrap();
        assert_eq!((k, e), (SYMBOL, &b"\x01t_1"[..]));
        let (k, e, _) = r.entry().unwrap();
        assert_eq!(k, EVENT);
        let mut er = Reader::new(e);
        assert_eq!(read_event_header(&mut er).unwrap(), h);
        assert_eq!(er.rest(), b"body");
        assert!(r.is_empty());
        for n in 0..b.len() {
            let mut r = Reader::new(&b[..n]);
            let ok = r.entry().and_then(|_| r.entry()).is_ok();
            assert!(!ok, "a prefix of {n} bytes must not decode as two entries");
        }
    }

    #[test]
    fn body_round_trips() {
        let mut b = Vec::new();
        encode_body(&mut b, Some("10.0.0.1"), Some("ap_1"), b"{\"a\":1}");
        let d = decode_body(F_IP | F_APPROVAL, &b).unwrap();
        assert_eq!(d.source_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(d.approval_id.as_deref(), Some("ap_1"));
        assert_eq!(d.payload, b"{\"a\":1}");
        assert!(decode_body(F_IP | F_APPROVAL, &b[..3]).is_err());
    }
}
