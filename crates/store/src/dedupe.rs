//! The idempotency rules of docs/api.md, shared by every backend.
//!
//! An event whose `event_id` was seen before is a duplicate (answered with the original
//! receipt) when its content is the same, and a conflict (the whole request fails, nothing
//! stored) when it differs. "Before" means, in this order: earlier in the same request, in an
//! earlier request still being committed (the same commit group, or for the embedded store a
//! group not yet durable), or already stored. Backends differ only in how they find the last
//! two, so they pass them in; the stored lookup runs only when the first places have no copy.
//!
//! Repeats within one request depend on nothing but the request, so [`RequestIds::new`]
//! finds them up front (the embedded store does it on the request's own thread, off the
//! serial commit path).

use crate::{Receipt, StoreError};
use foldhash::{HashMap, HashMapExt};
use std::collections::hash_map::Entry;
use trailkeep_core::{NewEvent, StoredEvent, Uuid};

/// How each event of one request relates to the events before it in that request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// The first event of the request with this id.
    First,
    /// Same id and same content as event `.0` of the request.
    SameAs(u32),
    /// Same id as an earlier event of the request, different content.
    Conflict,
}

/// The repeats of one request's ids, found once.
#[derive(Debug)]
pub(crate) struct RequestIds {
    repeats: Vec<Repeat>,
}

/// What an event is, given everything before it.
#[derive(Debug)]
pub(crate) enum Prior {
    /// Not seen before: store it.
    New,
    /// A duplicate of event `.0` of the same request: its receipt.
    SameAs(usize),
    /// A duplicate of an event of an earlier request or of the store: that event's receipt.
    Earlier(Receipt),
}

impl RequestIds {
    pub fn new<'a>(events: impl ExactSizeIterator<Item = &'a NewEvent>) -> Self {
        let events: Vec<&NewEvent> = events.collect();
        let mut repeats = vec![Repeat::First; events.len()];
        if events.len() > 1 {
            // foldhash, not SipHash: every id is hashed on the request's thread,
            // and a request holds at most 10,000 of them, so flooding one map buys little.
            let mut first_of: HashMap<Uuid, u32> = HashMap::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                match first_of.entry(e.event_id) {
                    Entry::Occupied(o) => {
                        let j = *o.get();
                        repeats[i] = if events[j as usize].same_content_as_new(e) {
                            Repeat::SameAs(j)
                        } else {
                            Repeat::Conflict
                        };
                    }
                    Entry::Vacant(v) => {
                        v.insert(i as u32);
                    }
                }
            }
        }
        RequestIds { repeats }
    }

    /// Decides event `i` (`e`) of the request. `in_group` is the copy accepted by an earlier
    /// request still being committed, with its receipt, if any; `stored` looks the id up in the
    /// store. A conflict is the error that fails the request.
    pub fn decide(
        &self,
        i: usize,
        e: &NewEvent,
        in_group: Option<(&NewEvent, Receipt)>,
        stored: impl FnOnce() -> Result<Option<StoredEvent>, StoreError>,
    ) -> Result<Prior, StoreError> {
        let conflict = || StoreError::Conflict {
            index: i,
            event_id: e.event_id,
        };
        match self.repeats.get(i) {
            Some(Repeat::SameAs(j)) => return Ok(Prior::SameAs(*j as usize)),
            Some(Repeat::Conflict) => return Err(conflict()),
            Some(Repeat::First) | None => {}
        }
        if let Some((prev, rc)) = in_group {
            return if prev.same_content_as_new(e) {
                Ok(Prior::Earlier(rc))
            } else {
                Err(conflict())
            };
        }
        match stored()? {
            Some(s) if e.same_content_as(&s) => Ok(Prior::Earlier(Receipt {
                event_id: e.event_id,
                tenant_id: s.tenant_id.into(),
                seq: s.seq,
                leaf_hash: s.leaf_hash,
            })),
            Some(_) => Err(conflict()),
            None => Ok(Prior::New),
        }
    }

    /// [`RequestIds::decide`] for a backend that builds receipts as it goes: `receipts` holds
    /// those of events `0..i`. `None` means the event is new.
    pub fn prior(
        &self,
        i: usize,
        e: &NewEvent,
        receipts: &[Receipt],
        in_group: Option<(&NewEvent, &Receipt)>,
        stored: impl FnOnce() -> Result<Option<StoredEvent>, StoreError>,
    ) -> Result<Option<Receipt>, StoreError> {
        Ok(
            match self.decide(i, e, in_group.map(|(p, rc)| (p, rc.clone())), stored)? {
                Prior::New => None,
                Prior::SameAs(j) => Some(receipts.get(j).cloned().ok_or_else(|| {
                    StoreError::Unavailable(format!("no receipt yet for event {j} of the request"))
                })?),
                Prior::Earlier(rc) => Some(rc),
            },
        )
    }
}
