//! Plain-text tables for the listing commands (`approvals list`, `impersonations list`): a
//! header row and left-aligned columns two spaces apart, sized to their widest cell.
//!
//! Cells hold text that clients of the server chose (actors, reasons, tenant ids), so control
//! characters are shown escaped (`\u{1b}`, `\n`): a value can neither move the cursor nor
//! break a row in two.

use std::io::Write;

/// A table being filled row by row.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// `s` with every control character escaped, so it prints on one line as itself.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one cell per header column (missing cells print empty, extra ones are
    /// dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|c| printable(c)).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// Writes the header and the rows; the last column is not padded.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A JSON member as a cell: a string as it is, `-` when absent or null, anything else as JSON.
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A number of seconds for people: `42s`, `15m 12s`, `3h 05m`, `2d 04h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_control_characters_are_escaped() {
        let mut t = Table::new(&["ID", "WHO", "NOTE"]);
        t.row(vec!["a".into(), "user:ana".into(), "x".into()]);
        t.row(vec!["bbbb".into(), "u\x1b[2Jx".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    WHO          NOTE\n\
             a     user:ana     x\n\
             bbbb  u\\u{1b}[2Jx\n"
        );
        assert_eq!(printable("two\nlines"), "two\\nlines");
        assert_eq!(printable("plain → text"), "plain → text");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(912), "15m 12s");
        assert_eq!(duration(3 * 3600 + 5 * 60 + 9), "3h 05m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600), "2d 04h");
    }
}
