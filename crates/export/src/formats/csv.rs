//! CSV (RFC 4180), one row per event.
//!
//! * UTF-8 without a byte order mark; every line, the header's too, ends with CRLF.
//! * The header is always [`HEADER`], also for an export without events.
//! * Cells: `event_id` (lower-case hyphenated), `event_type`, `actor`, `tenant_id`, `timestamp`
//!   (the API's text: `…Z` with 3, 6 or 9 fractional digits), `source_ip` (empty when absent),
//!   `seq` (decimal), `payload` (the canonical JSON as stored, compact; `null` once purged).
//! * Formula injection: a cell that begins with `=`, `+`, `-`, `@`, tab or CR gets a `'` in
//!   front, so a spreadsheet shows it as text instead of evaluating it. This happens before
//!   quoting, and the `'` is part of the cell's value: a reader that wants the original strips
//!   one leading `'` from a cell whose next character is one of those six.
//! * Quoting: a cell holding `"`, `,`, CR or LF is enclosed in `"` with its `"` doubled; other
//!   cells are written as they are (no cell is ever empty-but-quoted).

use super::{ExportError, ExportWriter};
use trailkeep_core::StoredEvent;

/// The header line, without its CRLF.
pub const HEADER: &str = "event_id,event_type,actor,tenant_id,timestamp,source_ip,seq,payload";

/// The CSV writer: stateless but for the header, which goes out with the first bytes.
#[derive(Debug, Default)]
pub struct CsvWriter {
    header_written: bool,
}

impl CsvWriter {
    pub fn new() -> CsvWriter {
        CsvWriter::default()
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(HEADER.as_bytes());
            out.extend_from_slice(b"\r\n");
            self.header_written = true;
        }
    }
}

impl ExportWriter for CsvWriter {
    fn write_batch(
        &mut self,
        events: &[StoredEvent],
        out: &mut Vec<u8>,
    ) -> Result<(), ExportError> {
        self.header(out);
        for e in events {
            write_row(out, e);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, out: &mut Vec<u8>) -> Result<(), ExportError> {
        self.header(out);
        Ok(())
    }
}

/// Appends one event's row, CRLF included.
pub fn write_row(out: &mut Vec<u8>, e: &StoredEvent) {
    let mut id = trailkeep_core::Uuid::encode_buffer();
    cell(
        out,
        e.event_id.hyphenated().encode_lower(&mut id).as_bytes(),
    );
    out.push(b',');
    cell(out, e.event_type.as_bytes());
    out.push(b',');
    cell(out, e.actor.as_bytes());
    out.push(b',');
    cell(out, e.tenant_id.as_bytes());
    out.push(b',');
    let (ts, len) = e.timestamp.rfc3339_bytes();
    cell(out, &ts[..len]);
    out.push(b',');
    cell(out, e.source_ip.as_deref().unwrap_or("").as_bytes());
    out.push(b',');
    let mut digits = [0u8; 20];
    cell(out, decimal(e.seq, &mut digits));
    out.push(b',');
    cell(out, e.payload.as_deref().unwrap_or(b"null"));
    out.extend_from_slice(b"\r\n");
}

/// Appends one cell: defused if it starts like a formula, then quoted if it needs to be.
pub fn cell(out: &mut Vec<u8>, value: &[u8]) {
    let defuse = matches!(
        value.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let quote = value
        .iter()
        .any(|&b| matches!(b, b'"' | b',' | b'\r' | b'\n'));
    if !quote {
        if defuse {
            out.push(b'\'');
        }
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    if defuse {
        out.push(b'\'');
    }
    let mut rest = value;
    while let Some(i) = rest.iter().position(|&b| b == b'"') {
        out.extend_from_slice(&rest[..=i]);
        out.push(b'"');
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// `v` in decimal, written at the end of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}
