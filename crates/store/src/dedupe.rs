//! The idempotency rules of SPEC §4.1, shared by every backend.
//!
//! An event whose `event_id` was seen before is a duplicate (answered with the original
//! receipt) when its content is the same, and a conflict (the whole request fails, nothing
//! stored) when it differs. "Before" means, in this order: earlier in the same request, in an
//! earlier request of the same commit group, or already stored. Backends differ only in how
//! they find a stored event, so they pass that lookup in; it runs only when the first two
//! places have no copy.

use crate::{Receipt, StoreError};
use std::collections::HashMap;
use trailkeep_core::{NewEvent, StoredEvent, Uuid};

/// Walks one request's events in order, remembering the first copy of each id.
pub(crate) struct RequestIds<'a> {
    events: Vec<&'a NewEvent>,
    first_of: HashMap<Uuid, usize>,
}

impl<'a> RequestIds<'a> {
    pub fn new(events: impl ExactSizeIterator<Item = &'a NewEvent>) -> Self {
        let n = events.len();
        RequestIds {
            events: events.collect(),
            first_of: HashMap::with_capacity(n),
        }
    }

    /// The receipt an earlier copy of event `i` already has, `None` if the event is new, or
    /// the conflict that fails the request. `receipts` holds the receipts of events `0..i`;
    /// `in_group` is the copy accepted earlier in this commit group, if any.
    pub fn prior(
        &mut self,
        i: usize,
        receipts: &[Receipt],
        in_group: Option<(&NewEvent, &Receipt)>,
        stored: impl FnOnce() -> Result<Option<StoredEvent>, StoreError>,
    ) -> Result<Option<Receipt>, StoreError> {
        let e = self.events[i];
        let conflict = || StoreError::Conflict {
            index: i,
            event_id: e.event_id,
        };
        if let Some(&j) = self.first_of.get(&e.event_id) {
            return if self.events[j].same_content_as_new(e) {
                Ok(Some(receipts[j].clone()))
            } else {
                Err(conflict())
            };
        }
        self.first_of.insert(e.event_id, i);
        if let Some((prev, rc)) = in_group {
            return if prev.same_content_as_new(e) {
                Ok(Some(rc.clone()))
            } else {
                Err(conflict())
            };
        }
        match stored()? {
            Some(s) if e.same_content_as(&s) => Ok(Some(Receipt {
                event_id: e.event_id,
                tenant_id: s.tenant_id,
                seq: s.seq,
                leaf_hash: s.leaf_hash,
            })),
            Some(_) => Err(conflict()),
            None => Ok(None),
        }
    }
}
