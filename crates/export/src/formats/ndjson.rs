//! NDJSON and the JSON array: the objects of `GET /v1/events/{id}`, byte for byte.
//!
//! Both are made of [`trailkeep_core::render::write_event`]'s output, so an exported event is
//! exactly what the API returns for it: the same fields in the same order, the canonical
//! payload as stored, `"payload": null, "purged": true` and the commitment for a purged event
//! (docs/api.md). Verifiers recompute leaves from these objects.
//!
//! * NDJSON: one object and `\n` per event; nothing at all for an export without events.
//! * JSON: one array, streamed: `[` then the objects, each on its own line after `\n` (the
//!   first) or `,\n` (the others), then `\n]\n`; an export without events is `[]\n`.

use super::{ExportError, ExportWriter};
use trailkeep_core::render::write_event;
use trailkeep_core::StoredEvent;

/// The NDJSON writer.
#[derive(Debug, Default)]
pub struct NdjsonWriter;

impl NdjsonWriter {
    pub fn new() -> NdjsonWriter {
        NdjsonWriter
    }
}

impl ExportWriter for NdjsonWriter {
    fn write_batch(
        &mut self,
        events: &[StoredEvent],
        out: &mut Vec<u8>,
    ) -> Result<(), ExportError> {
        for e in events {
            write_event(out, e);
            out.push(b'\n');
        }
        Ok(())
    }

    fn finish(self: Box<Self>, _out: &mut Vec<u8>) -> Result<(), ExportError> {
        Ok(())
    }
}

/// The JSON array writer: remembers whether the bracket is open and whether an object was
/// written (the separator of the next one).
#[derive(Debug, Default)]
pub struct JsonArrayWriter {
    opened: bool,
    any: bool,
}

impl JsonArrayWriter {
    pub fn new() -> JsonArrayWriter {
        JsonArrayWriter::default()
    }

    fn open(&mut self, out: &mut Vec<u8>) {
        if !self.opened {
            out.push(b'[');
            self.opened = true;
        }
    }
}

impl ExportWriter for JsonArrayWriter {
    fn write_batch(
        &mut self,
        events: &[StoredEvent],
        out: &mut Vec<u8>,
    ) -> Result<(), ExportError> {
        self.open(out);
        for e in events {
            out.extend_from_slice(if self.any { b",\n" } else { b"\n" });
            self.any = true;
            write_event(out, e);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, out: &mut Vec<u8>) -> Result<(), ExportError> {
        self.open(out);
        out.extend_from_slice(if self.any { b"\n]\n" } else { b"]\n" });
        Ok(())
    }
}
