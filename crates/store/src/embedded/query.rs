//! Reads of the embedded store: point lookups, filtered listings, log reads, stats.
//!
//! A listing picks the most selective index for its filters (session, then actor, then type,
//! then time), opens one range per (tenant, index prefix) — a `billing.*` filter opens one per
//! matching type — and merges them by the 24-byte sort key `ts ‖ event_id`. Every candidate's
//! record is then checked against all filters, so an index only narrows, never decides.

use super::codec::{self, decode_record, field_prefix, log_key, tenant_prefix, SORT_KEY_LEN};
use super::Shared;
use crate::{EventPage, EventQuery, Order, Stats, StatsQuery, StoreError};
use fjall::Keyspace;
use std::ops::Bound;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

pub(crate) fn get_event(s: &Shared, id: &Uuid) -> Result<Option<StoredEvent>, StoreError> {
    let Some(lk) = s.ks.ids.get(id.as_bytes())? else {
        return Ok(None);
    };
    let (tenant, seq) =
        codec::split_log_key(&lk).ok_or_else(|| StoreError::Corrupt("id index entry".into()))?;
    match s.ks.events.get(&lk)? {
        Some(rec) => Ok(Some(decode_record(tenant, seq, &rec)?)),
        None => Err(StoreError::Corrupt(format!(
            "id index points at a missing event {tenant}/{seq}"
        ))),
    }
}

pub(crate) fn read_log(
    s: &Shared,
    tenant: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let lo = log_key(tenant, from);
    let mut hi = tenant_prefix(tenant);
    if let Some(last) = hi.last_mut() {
        *last = 1;
    }
    let mut out = Vec::new();
    for g in s.ks.events.range(lo..hi).take(limit) {
        let (k, v) = g.into_inner()?;
        let (_, seq) =
            codec::split_log_key(&k).ok_or_else(|| StoreError::Corrupt("log key".into()))?;
        out.push(decode_record(tenant, seq, &v)?);
    }
    Ok(out)
}

/// One ordered range of an index: entries end in the sort key, values are seqs.
struct Source {
    tenant: String,
    iter: Box<dyn Iterator<Item = fjall::Guard>>,
    head: Option<([u8; SORT_KEY_LEN], u64)>,
}

impl Source {
    fn advance(&mut self) -> Result<(), StoreError> {
        self.head = match self.iter.next() {
            None => None,
            Some(g) => {
                let (k, v) = g.into_inner()?;
                let sk: [u8; SORT_KEY_LEN] = k
                    .get(k.len().saturating_sub(SORT_KEY_LEN)..)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| StoreError::Corrupt("index key too short".into()))?;
                let seq = u64::from_be_bytes(
                    v.get(..8)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| StoreError::Corrupt("index value".into()))?,
                );
                Some((sk, seq))
            }
        };
        Ok(())
    }
}

fn successor(prefix: &[u8]) -> Vec<u8> {
    // Prefixes end in the 0x00 separator, so bumping the last byte bounds them.
    let mut p = prefix.to_vec();
    if let Some(last) = p.last_mut() {
        *last += 1;
    }
    p
}

fn open_source(ks: &Keyspace, tenant: &str, prefix: Vec<u8>, q: &EventQuery) -> Option<Source> {
    let mut lo: Bound<Vec<u8>> = Bound::Included(prefix.clone());
    let mut hi: Bound<Vec<u8>> = Bound::Excluded(successor(&prefix));
    let mut lo_key = prefix.clone();
    let mut hi_key = successor(&prefix);
    if let Some(s) = q.since {
        let mut k = prefix.clone();
        k.extend_from_slice(&codec::ts_bytes(s.nanos));
        lo_key = k.clone();
        lo = Bound::Included(k);
    }
    if let Some(u) = q.until {
        let mut k = prefix.clone();
        k.extend_from_slice(&codec::ts_bytes(u.nanos));
        hi_key = k.clone();
        hi = Bound::Excluded(k);
    }
    if let Some(c) = &q.cursor {
        let k = codec::with_sort_key(prefix.clone(), &codec::sort_key(c.ts_nanos, &c.event_id));
        match q.order {
            Order::Desc if k < hi_key => {
                hi_key = k.clone();
                hi = Bound::Excluded(k);
            }
            Order::Asc if k >= lo_key => {
                lo_key = k.clone();
                lo = Bound::Excluded(k);
            }
            _ => {}
        }
    }
    if lo_key > hi_key {
        return None;
    }
    let range = ks.range::<Vec<u8>, _>((lo, hi));
    let iter: Box<dyn Iterator<Item = fjall::Guard>> = match q.order {
        Order::Asc => Box::new(range),
        Order::Desc => Box::new(range.rev()),
    };
    Some(Source {
        tenant: tenant.to_string(),
        iter,
        head: None,
    })
}

/// The tenants a read covers (one, or all) with the event types each has used.
fn tenants_in_scope(
    s: &Shared,
    tenant: Option<&str>,
) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let map = s
        .tenants
        .read()
        .map_err(|_| StoreError::Unavailable("tenant lock poisoned".into()))?;
    let types = |st: &super::TenantState| st.types.iter().cloned().collect();
    Ok(match tenant {
        Some(t) => map
            .get(t)
            .map(|st| vec![(t.to_string(), types(st))])
            .unwrap_or_default(),
        None => map.iter().map(|(t, st)| (t.clone(), types(st))).collect(),
    })
}

pub(crate) fn query(s: &Shared, q: &EventQuery) -> Result<EventPage, StoreError> {
    let limit = q.limit.max(1);
    let tenants = tenants_in_scope(s, q.tenant_id.as_deref())?;
    let mut sources = Vec::new();
    for (tenant, types) in &tenants {
        if let Some(session) = &q.session {
            sources.extend(open_source(
                &s.ks.by_session,
                tenant,
                field_prefix(tenant, session),
                q,
            ));
        } else if let Some(actor) = &q.actor {
            sources.extend(open_source(
                &s.ks.by_actor,
                tenant,
                field_prefix(tenant, actor),
                q,
            ));
        } else if let Some(tf) = &q.event_type {
            for t in types.iter().filter(|t| tf.matches(t)) {
                sources.extend(open_source(
                    &s.ks.by_type,
                    tenant,
                    field_prefix(tenant, t),
                    q,
                ));
            }
        } else {
            sources.extend(open_source(&s.ks.by_time, tenant, tenant_prefix(tenant), q));
        }
    }
    for src in &mut sources {
        src.advance()?;
    }
    let mut events = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    loop {
        // Pick the next source in order (few sources: a linear scan beats a heap here).
        let mut best: Option<usize> = None;
        for (i, src) in sources.iter().enumerate() {
            let Some((sk, _)) = &src.head else { continue };
            best = match best {
                None => Some(i),
                Some(b) => {
                    let bk = &sources[b].head.as_ref().map(|h| h.0);
                    let better = match q.order {
                        Order::Asc => Some(*sk) < *bk,
                        Order::Desc => Some(*sk) > *bk,
                    };
                    if better {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let Some(b) = best else { break };
        let (_, seq) = sources[b]
            .head
            .ok_or_else(|| StoreError::Corrupt("merge".into()))?;
        let tenant = sources[b].tenant.clone();
        sources[b].advance()?;
        let Some(rec) = s.ks.events.get(log_key(&tenant, seq))? else {
            return Err(StoreError::Corrupt(format!(
                "index points at a missing event {tenant}/{seq}"
            )));
        };
        let e = decode_record(&tenant, seq, &rec)?;
        if !q.matches(&e) {
            continue;
        }
        if events.len() == limit {
            more = true;
            break;
        }
        events.push(e);
    }
    Ok(EventPage::new(events, more, q.order))
}

const DAY_NANOS: i64 = 86_400_000_000_000;

pub(crate) fn stats(s: &Shared, q: &StatsQuery) -> Result<Stats, StoreError> {
    let tenants = tenants_in_scope(s, q.tenant_id.as_deref())?;
    let since = q.since.map(|t| t.nanos).unwrap_or(i64::MIN);
    let until = q.until.map(|t| t.nanos).unwrap_or(i64::MAX);
    let mut out = Stats::default();
    if since >= until {
        return Ok(out);
    }
    // Whole days inside [since, until) come from the day counters; the partial days at either
    // end are counted from the type index over the exact range.
    let first_full = since.div_euclid(DAY_NANOS)
        + if since.rem_euclid(DAY_NANOS) == 0 {
            0
        } else {
            1
        };
    let end_full = until.div_euclid(DAY_NANOS); // exclusive
    let add = |out: &mut Stats, t: &str, day: i64, n: u64| {
        *out.counts_by_type.entry(t.to_string()).or_default() += n;
        *out.counts_by_day
            .entry(Timestamp::day_string(day as i32))
            .or_default() += n;
        out.total += n;
    };
    for (tenant, types) in &tenants {
        if first_full < end_full {
            let lo = codec::day_prefix_bound(
                tenant,
                first_full.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            );
            let hi = codec::day_prefix_bound(
                tenant,
                end_full.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            );
            for g in s.ks.day_counts.range(lo..hi) {
                let (k, v) = g.into_inner()?;
                let (day, t) = codec::split_day_key(&k, tenant.len())
                    .ok_or_else(|| StoreError::Corrupt("day key".into()))?;
                let n = u64::from_be_bytes(
                    v.get(..8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8]),
                );
                add(&mut out, t, day as i64, n);
            }
        }
        // Partial ranges: [since, first_full day start) and [end_full day start, until).
        let mut partial = Vec::new();
        if first_full >= end_full {
            partial.push((since, until));
        } else {
            if since.rem_euclid(DAY_NANOS) != 0 {
                partial.push((since, first_full.saturating_mul(DAY_NANOS)));
            }
            if until.rem_euclid(DAY_NANOS) != 0 && until != i64::MAX {
                partial.push((end_full.saturating_mul(DAY_NANOS), until));
            }
        }
        for (lo_t, hi_t) in partial {
            for t in types {
                let p = field_prefix(tenant, t);
                let mut lo = p.clone();
                lo.extend_from_slice(&codec::ts_bytes(lo_t));
                let hi = if hi_t == i64::MAX {
                    successor(&p)
                } else {
                    let mut h = p.clone();
                    h.extend_from_slice(&codec::ts_bytes(hi_t));
                    h
                };
                if lo >= hi {
                    continue;
                }
                for g in s.ks.by_type.range(lo..hi) {
                    let k = g.key()?;
                    let sk = &k[k.len().saturating_sub(SORT_KEY_LEN)..];
                    let day = codec::ts_from_bytes(sk).div_euclid(DAY_NANOS);
                    add(&mut out, t, day, 1);
                }
            }
        }
    }
    Ok(out)
}
