//! On-disk encoding of the embedded store: keys of every keyspace and the event record.
//!
//! Keyspaces (all keys start with the tenant id and a 0x00 byte, which neither tenant ids,
//! event types, actors nor session ids may contain):
//! - `events`:   tenant ‖ 0 ‖ seq (u64 BE)                         → record (below)
//! - `ids`:      event_id (16 bytes)                                → tenant ‖ 0 ‖ seq
//! - `by_time`:  tenant ‖ 0 ‖ ts ‖ event_id                         → seq (u64 BE)
//! - `by_type`:  tenant ‖ 0 ‖ event_type ‖ 0 ‖ ts ‖ event_id         → seq
//! - `by_actor`: tenant ‖ 0 ‖ actor ‖ 0 ‖ ts ‖ event_id              → seq
//! - `by_session`: tenant ‖ 0 ‖ session ‖ 0 ‖ ts ‖ event_id         → seq
//! - `day_counts`: tenant ‖ 0 ‖ day (i32, sign-flipped BE) ‖ event_type → count (u64 BE)
//! - `tenants`:  tenant → JSON tenant state (next seq, counts, types)
//!
//! `ts` is the timestamp's i64 nanoseconds with the sign bit flipped, big-endian, so byte order
//! is time order. Every index key ends in the 24-byte sort key `ts ‖ event_id`.
//!
//! Record (version 1): version u8, flags u8, timestamp digits u8, timestamp i64 LE,
//! received_at i64 LE, event_id [16], leaf_hash [32], salt [32] (or the payload commitment when
//! purged), then u16-LE-length-prefixed event_type, actor and the optional source_ip,
//! impersonation_session, approval_id (as flagged), then the canonical payload to the end.

use crate::{PreparedEvent, StoreError};
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

pub const SORT_KEY_LEN: usize = 24;

const F_TS_ASSIGNED: u8 = 1;
const F_IP: u8 = 2;
const F_SESSION: u8 = 4;
const F_APPROVAL: u8 = 8;
const F_PURGED: u8 = 16;

pub fn ts_bytes(nanos: i64) -> [u8; 8] {
    ((nanos as u64) ^ (1u64 << 63)).to_be_bytes()
}

pub fn ts_from_bytes(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    (u64::from_be_bytes(a) ^ (1u64 << 63)) as i64
}

/// `tenant ‖ 0`
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 1 + 64);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

/// `tenant ‖ 0 ‖ field ‖ 0`
pub fn field_prefix(tenant: &str, field: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(field.as_bytes());
    k.push(0);
    k
}

pub fn log_key(tenant: &str, seq: u64) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn split_log_key(k: &[u8]) -> Option<(&str, u64)> {
    let z = k.iter().position(|&b| b == 0)?;
    let tenant = std::str::from_utf8(&k[..z]).ok()?;
    let seq = u64::from_be_bytes(k.get(z + 1..z + 9)?.try_into().ok()?);
    Some((tenant, seq))
}

pub fn sort_key(ts_nanos: i64, id: &Uuid) -> [u8; SORT_KEY_LEN] {
    let mut k = [0u8; SORT_KEY_LEN];
    k[..8].copy_from_slice(&ts_bytes(ts_nanos));
    k[8..].copy_from_slice(id.as_bytes());
    k
}

pub fn with_sort_key(mut prefix: Vec<u8>, sk: &[u8; SORT_KEY_LEN]) -> Vec<u8> {
    prefix.extend_from_slice(sk);
    prefix
}

pub fn day_key(tenant: &str, day: i32, event_type: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(&((day as u32) ^ (1u32 << 31)).to_be_bytes());
    k.extend_from_slice(event_type.as_bytes());
    k
}

pub fn day_prefix_bound(tenant: &str, day: i32) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(&((day as u32) ^ (1u32 << 31)).to_be_bytes());
    k
}

pub fn split_day_key(k: &[u8], tenant_len: usize) -> Option<(i32, &str)> {
    let d = k.get(tenant_len + 1..tenant_len + 5)?;
    let day = (u32::from_be_bytes(d.try_into().ok()?) ^ (1u32 << 31)) as i32;
    let t = std::str::from_utf8(k.get(tenant_len + 5..)?).ok()?;
    Some((day, t))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every string field is validated to at most 256 bytes.
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes an event for the `events` keyspace.
pub fn encode_record(p: &PreparedEvent) -> Vec<u8> {
    let e = &p.event;
    let mut flags = 0u8;
    if e.timestamp_assigned {
        flags |= F_TS_ASSIGNED;
    }
    if e.source_ip.is_some() {
        flags |= F_IP;
    }
    if e.impersonation_session.is_some() {
        flags |= F_SESSION;
    }
    if e.approval_id.is_some() {
        flags |= F_APPROVAL;
    }
    let mut out = Vec::with_capacity(120 + e.event_type.len() + e.actor.len() + e.payload.len());
    out.push(1);
    out.push(flags);
    out.push(e.timestamp.digits);
    out.extend_from_slice(&e.timestamp.nanos.to_le_bytes());
    out.extend_from_slice(&p.received_at.nanos.to_le_bytes());
    out.extend_from_slice(e.event_id.as_bytes());
    out.extend_from_slice(&p.leaf_hash);
    out.extend_from_slice(&p.salt);
    put_str(&mut out, &e.event_type);
    put_str(&mut out, &e.actor);
    for s in [&e.source_ip, &e.impersonation_session, &e.approval_id]
        .into_iter()
        .flatten()
    {
        put_str(&mut out, s);
    }
    out.extend_from_slice(&e.payload);
    out
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let s = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or_else(|| StoreError::Corrupt("event record is truncated".into()))?;
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn string(&mut self) -> Result<String, StoreError> {
        let n = u16::from_le_bytes(self.arr()?) as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| StoreError::Corrupt("event record holds invalid UTF-8".into()))
    }
}

/// Decodes a record stored under `tenant`/`seq`.
pub fn decode_record(tenant: &str, seq: u64, b: &[u8]) -> Result<StoredEvent, StoreError> {
    let mut r = Reader { b, pos: 0 };
    let [version, flags, digits] = r.arr::<3>()?;
    if version != 1 {
        return Err(StoreError::Corrupt(format!(
            "unknown event record version {version}"
        )));
    }
    let ts = i64::from_le_bytes(r.arr()?);
    let received = i64::from_le_bytes(r.arr()?);
    let event_id = Uuid::from_bytes(r.arr()?);
    let leaf_hash: [u8; 32] = r.arr()?;
    let salt_or_commitment: [u8; 32] = r.arr()?;
    let event_type = r.string()?;
    let actor = r.string()?;
    let source_ip = if flags & F_IP != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let impersonation_session = if flags & F_SESSION != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let approval_id = if flags & F_APPROVAL != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let purged = flags & F_PURGED != 0;
    let rest = &b[r.pos..];
    Ok(StoredEvent {
        tenant_id: tenant.to_string(),
        seq,
        event_id,
        event_type,
        actor,
        timestamp: Timestamp::from_nanos(ts, digits),
        timestamp_assigned: flags & F_TS_ASSIGNED != 0,
        received_at: Timestamp::from_nanos(received, 6),
        source_ip,
        impersonation_session,
        approval_id,
        payload: (!purged).then(|| rest.to_vec()),
        payload_salt: (!purged).then_some(salt_or_commitment),
        payload_commitment: purged.then_some(salt_or_commitment),
        leaf_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_bytes_preserve_order() {
        let xs = [
            i64::MIN,
            -5_000_000_000,
            -1,
            0,
            1,
            1_700_000_000_000_000_000,
            i64::MAX,
        ];
        for w in xs.windows(2) {
            assert!(ts_bytes(w[0]) < ts_bytes(w[1]));
            assert_eq!(ts_from_bytes(&ts_bytes(w[0])), w[0]);
        }
    }

    #[test]
    fn truncated_record_is_corrupt_not_panic() {
        for n in 0..80 {
            let b = vec![1u8; n];
            assert!(decode_record("t", 0, &b).is_err());
        }
    }
}
