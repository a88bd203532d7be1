//! Per-event compression with a symbol table trained on the store's own events (FSST).
//!
//! Audit events are small (a few hundred bytes) and alike: the same keys, types and value
//! shapes again and again. FSST ("Fast Static Symbol Tables", Boncz et al., VLDB 2020) replaces
//! up to 8 input bytes at a time with a one-byte code from a table of 255 symbols learned from
//! the first events a store sees; bytes the table does not cover are escaped. Each event stays
//! individually readable (a page of results decodes only its own events) and there is no
//! per-call setup at all, which is what small bodies need: zstd with a trained dictionary
//! shrank them more (generated events: ~49 instead of ~60 bytes) but spent ~10,000
//! instructions per body on frame setup and entropy tables, FSST ~2,900. FSST is bound by the
//! latency of its table look-ups, so a request's bodies are compressed together
//! ([`compress_into`] runs four cursors interleaved), which about halves its time again.
//! Decoding is one table look-up per code.
//!
//! A dictionary as the log holds it (`DICT` entry, see `codec`) is `codec id ‖ table`, so a
//! later codec can be added next to this one. Codec 1, FSST: `n u8 ‖ n symbol lengths (1..=8,
//! in the order FSST codes them: 2…8 bytes, then 1) ‖ the symbols' bytes, back to back`; code
//! `i` is symbol `i`, code 255 escapes the next byte. Dictionaries are written to the log
//! before the first event that uses them and are never removed, so every event can always be
//! read; the table alone determines decoding, so a store reads the same after a restart.
//!
//! Everything read from the log is checked: an unknown codec id or a malformed table makes the
//! dictionary unusable (events using it are `Corrupt` on read; new events are then stored
//! uncompressed until a new one is trained, see [`Dict::can_compress`]), and a damaged body is
//! `Corrupt`, never a panic.

use crate::StoreError;
use std::sync::OnceLock;

/// Codec id of an FSST symbol table, the first byte of a dictionary.
const CODEC_FSST: u8 = 1;
/// The FSST escape code: the next byte stands for itself.
const ESCAPE: u8 = 255;
/// Marks a code that is not in the table (and the escape) in [`Table::lens`].
const NOT_A_SYMBOL: u8 = u8::MAX;
/// Decoded bodies are at most this long: events are at most 256 KiB, so more is damage.
const MAX_BODY: usize = 1 << 20;
/// Bodies compressed at once by one cursor each ([`compress_into`]): 4 measured as fast as 8.
const LANES: usize = 4;

/// A dictionary as the log holds it, parsed and ready to use.
pub struct Dict {
    pub number: u32,
    /// The table, or why the stored bytes are not one.
    table: Result<Table, String>,
    /// Built on first use: only the newest dictionary ever compresses.
    compressor: OnceLock<Result<fsst::Compressor, String>>,
}

/// What decoding needs: each code's symbol as 8 bytes (zero padded) and its length.
struct Table {
    syms: Box<[[u8; 8]; 256]>,
    lens: [u8; 256],
    /// Symbols in the table (codes `0..n`).
    n: usize,
}

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dict")
            .field("number", &self.number)
            .field("symbols", &self.table.as_ref().map(|t| t.n))
            .finish()
    }
}

impl Dict {
    /// Parses a dictionary from the log. Never fails: a dictionary that does not parse is kept
    /// (its number stays taken) and every use of it is an error.
    pub fn new(number: u32, bytes: &[u8]) -> Dict {
        let table = parse(bytes);
        if let Err(e) = &table {
            tracing::warn!(
                dictionary = number,
                error = %e,
                "compression dictionary unusable: events compressed with it cannot be read"
            );
        }
        Dict {
            number,
            table,
            compressor: OnceLock::new(),
        }
    }

    fn table(&self) -> Result<&Table, StoreError> {
        self.table.as_ref().map_err(|e| {
            StoreError::Corrupt(format!("compression dictionary {}: {e}", self.number))
        })
    }

    fn compressor(&self) -> Result<&fsst::Compressor, StoreError> {
        let c = self.compressor.get_or_init(|| {
            let t = self.table.as_ref().map_err(|e| e.clone())?;
            build_compressor(t)
        });
        c.as_ref().map_err(|e| {
            StoreError::Corrupt(format!("compression dictionary {}: {e}", self.number))
        })
    }

    /// Whether new events can be compressed with this dictionary (false only for one damaged in
    /// the log or written by a later version: new events are then stored as they are).
    pub fn can_compress(&self) -> bool {
        self.compressor().is_ok()
    }
}

fn parse(bytes: &[u8]) -> Result<Table, String> {
    match bytes.split_first() {
        None => Err("empty".into()),
        Some((&CODEC_FSST, rest)) => parse_fsst(rest),
        Some((&id, _)) => Err(format!(
            "codec id {id} is not one this version of trailkeep knows"
        )),
    }
}

fn parse_fsst(b: &[u8]) -> Result<Table, String> {
    let (&n, rest) = b.split_first().ok_or("FSST table without a symbol count")?;
    let n = n as usize;
    if rest.len() < n {
        return Err("FSST table cut short".into());
    }
    let (lens_in, mut sym_bytes) = rest.split_at(n);
    let total: usize = lens_in.iter().map(|&l| l as usize).sum();
    if sym_bytes.len() != total {
        return Err(format!(
            "FSST table holds {} symbol bytes, its lengths add up to {total}",
            sym_bytes.len()
        ));
    }
    let mut syms = Box::new([[0u8; 8]; 256]);
    let mut lens = [NOT_A_SYMBOL; 256];
    // FSST's code order: lengths 2 to 8 not decreasing, then every 1-byte symbol.
    let mut prev = 2;
    for (code, &len) in lens_in.iter().enumerate() {
        let ordered = match len {
            1 => true,
            2..=8 => prev != 1 && len >= prev,
            _ => return Err(format!("FSST symbol {code} is {len} bytes long")),
        };
        if !ordered {
            return Err(format!("FSST symbol {code} ({len} bytes) is out of order"));
        }
        prev = len;
        let (s, more) = sym_bytes.split_at(len as usize);
        sym_bytes = more;
        // FSST tells a symbol's length by its last non-zero byte.
        if len > 1 && s[s.len() - 1] == 0 {
            return Err(format!("FSST symbol {code} ends in a zero byte"));
        }
        syms[code][..s.len()].copy_from_slice(s);
        lens[code] = len;
    }
    Ok(Table { syms, lens, n })
}

fn build_compressor(t: &Table) -> Result<fsst::Compressor, String> {
    check_slots(t)?;
    let symbols: Vec<fsst::Symbol> = t.syms[..t.n].iter().map(fsst::Symbol::from_slice).collect();
    let lens = t.lens[..t.n].to_vec();
    // `parse` and `check_slots` checked everything `rebuild_from` asserts. The unwind guard is
    // a backstop only, should a later fsst-rs place symbols differently than `check_slots`
    // expects: a table that does not load is then still an error, not a crash.
    std::panic::catch_unwind(move || fsst::Compressor::rebuild_from(symbols, lens))
        .map_err(|_| "FSST table does not load (symbols collide)".to_string())
}

/// Slots of fsst-rs's hash table for symbols of 3 bytes or more (its `HASH_TABLE_SIZE`).
const FSST_SLOTS: usize = 1 << 11;

/// `rebuild_from` asserts that no two symbols of 3+ bytes share a slot of its hash table
/// (keyed by their first three bytes, with `fsst_hash`), which holds for every table FSST
/// trains. A damaged table can break it: found here, it is an error without a panic (whose
/// message would reach stderr, and which `panic = "abort"` would turn into a crash).
fn check_slots(t: &Table) -> Result<(), String> {
    let mut used = vec![false; FSST_SLOTS];
    for (code, (sym, &len)) in t.syms[..t.n].iter().zip(&t.lens[..t.n]).enumerate() {
        if len < 3 {
            continue;
        }
        let prefix = u64::from(sym[0]) | u64::from(sym[1]) << 8 | u64::from(sym[2]) << 16;
        // fsst-rs 0.7's `fsst_hash` (the C++ FSST_HASH).
        let slot =
            (prefix.wrapping_mul(2_971_215_073) ^ (prefix >> 15)) as usize & (FSST_SLOTS - 1);
        if std::mem::replace(&mut used[slot], true) {
            return Err(format!(
                "FSST symbol {code} collides with an earlier one (symbols whose first three bytes hash alike)"
            ));
        }
    }
    Ok(())
}

fn serialize(c: &fsst::Compressor) -> Vec<u8> {
    let lens = c.symbol_lengths();
    let mut out = Vec::with_capacity(2 + lens.len() * 9);
    out.push(CODEC_FSST);
    out.push(lens.len() as u8);
    out.extend_from_slice(lens);
    for (s, &l) in c.symbol_table().iter().zip(lens) {
        out.extend_from_slice(&s.to_u64().to_le_bytes()[..l as usize]);
    }
    out
}

/// Compresses each of `raws` with `dict`, independently of the others (one body each).
#[cfg(test)]
pub fn compress_many(dict: &Dict, raws: &[&[u8]]) -> Result<Vec<Vec<u8>>, StoreError> {
    let (mut buf, mut ends) = (Vec::new(), Vec::new());
    compress_into(dict, raws, &mut buf, &mut ends)?;
    let mut start = 0;
    Ok(ends
        .iter()
        .map(|&end| {
            let b = buf[start..end as usize].to_vec();
            start = end as usize;
            b
        })
        .collect())
}

/// Compresses each of `raws` with `dict`, independently of the others (one body each), into
/// `out` back to back; `ends` gets each body's end offset in `out`.
pub fn compress_into(
    dict: &Dict,
    raws: &[&[u8]],
    out: &mut Vec<u8>,
    ends: &mut Vec<u64>,
) -> Result<(), StoreError> {
    let c = dict.compressor()?;
    out.clear();
    ends.clear();
    c.compress_bulk_into::<LANES>(raws, out, ends);
    Ok(())
}

/// Decompresses one event body written with `dict`.
#[cfg(test)]
pub fn decompress(dict: &Dict, data: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    decompress_into(dict, data, &mut out)?;
    Ok(out)
}

/// [`decompress`] into `out` (replacing what it held): a reader of many bodies reuses one
/// buffer instead of allocating one per body.
pub fn decompress_into(dict: &Dict, data: &[u8], out: &mut Vec<u8>) -> Result<(), StoreError> {
    let t = dict.table()?;
    let corrupt = |e: &str| StoreError::Corrupt(format!("event body does not decompress: {e}"));
    // A code stands for at most 8 bytes; every slot written below is 8 bytes wide.
    let cap = data.len().saturating_mul(8).min(MAX_BODY) + 8;
    // Not `vec![0; cap]`: glibc's calloc skips its per-thread cache, measured slower here.
    out.clear();
    out.resize(cap, 0u8);
    let mut o = 0usize;
    let mut it = data.iter();
    while let Some(&c) = it.next() {
        let len = t.lens[c as usize];
        let Some(dst) = out.get_mut(o..o + 8) else {
            return Err(corrupt(&format!("more than {MAX_BODY} bytes")));
        };
        if len != NOT_A_SYMBOL {
            dst.copy_from_slice(&t.syms[c as usize]);
            o += len as usize;
        } else if c == ESCAPE {
            let Some(&b) = it.next() else {
                return Err(corrupt("ends in an escape"));
            };
            dst[0] = b;
            o += 1;
        } else {
            return Err(corrupt(&format!(
                "code {c} is not in the table of {} symbols",
                t.n
            )));
        }
    }
    if o > MAX_BODY {
        return Err(corrupt(&format!("more than {MAX_BODY} bytes")));
    }
    out.truncate(o);
    Ok(())
}

/// Trains a dictionary from sample bodies; `None` when they are too few or too varied for a
/// table to shrink them by a tenth (the caller tries again with fresh samples).
pub fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
    let refs: Vec<&[u8]> = samples.iter().map(|s| s.as_slice()).collect();
    let raw: usize = refs.iter().map(|s| s.len()).sum();
    if raw == 0 {
        return None;
    }
    let bytes = serialize(&fsst::Compressor::train(&refs));
    // Check what the log will hold, loaded the way a restart loads it.
    let dict = Dict::new(0, &bytes);
    let c = dict.compressor().ok()?;
    let (mut packed, mut ends) = (Vec::new(), Vec::new());
    c.compress_bulk_into::<LANES>(&refs, &mut packed, &mut ends);
    if packed.len() * 10 > raw * 9 {
        tracing::info!(
            raw,
            compressed = packed.len(),
            "no compression table from these samples; events stay uncompressed until the next try"
        );
        return None;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bodies shaped like the generated audit events (source ip, approval id, JSON payload).
    fn samples() -> Vec<Vec<u8>> {
        (0..2000)
            .map(|i| {
                let mut b = Vec::new();
                if i % 4 == 0 {
                    let ip = format!("2001:db8::{:x}", i * 31 % 65536);
                    b.push(ip.len() as u8);
                    b.extend_from_slice(ip.as_bytes());
                }
                if i % 9 == 0 {
                    let a = format!("apr_{i:06}");
                    b.extend_from_slice(&(a.len() as u16).to_le_bytes());
                    b.extend_from_slice(a.as_bytes());
                }
                b.extend_from_slice(
                    format!(
                        "{{\"domain\":\"help.t_{:04}.com\",\"pages_crawled\":{},\"run_id\":\"{:08x}-3802-08a9-ad45-f23d3b1a11df\",\"status\":\"{}\",\"trigger\":\"indexnow\"}}",
                        i % 37,
                        i * 7919 % 5000,
                        i * 2654435761u64 as usize % (1 << 32),
                        ["success", "failed", "partial"][i % 3]
                    )
                    .as_bytes(),
                );
                b
            })
            .collect()
    }

    fn dict() -> &'static Dict {
        static D: OnceLock<Dict> = OnceLock::new();
        D.get_or_init(|| Dict::new(1, &train(&samples()).expect("a table")))
    }

    fn compress(d: &Dict, raw: &[u8]) -> Vec<u8> {
        compress_many(d, &[raw]).unwrap().pop().unwrap()
    }

    #[test]
    fn trained_table_round_trips_and_shrinks() {
        let s = samples();
        let d = dict();
        let refs: Vec<&[u8]> = s.iter().map(|x| x.as_slice()).collect();
        let many = compress_many(d, &refs).unwrap();
        assert_eq!(many.len(), s.len());
        let mut total = 0;
        for (x, c) in s.iter().zip(&many) {
            total += c.len();
            assert_eq!(&decompress(d, c).unwrap(), x);
            // Alone or in a batch: the same bytes.
            assert_eq!(&compress(d, x), c);
        }
        let raw: usize = s.iter().map(|x| x.len()).sum();
        assert!(total * 2 < raw, "{total} of {raw}");
    }

    #[test]
    fn stored_table_reloads_to_the_same_decoding() {
        let bytes = train(&samples()).unwrap();
        assert_eq!(bytes[0], CODEC_FSST);
        let a = Dict::new(1, &bytes);
        let b = Dict::new(1, &bytes.clone());
        for x in samples().iter().step_by(7) {
            let c = compress(&a, x);
            assert_eq!(&decompress(&b, &c).unwrap(), x);
            assert_eq!(compress(&b, x), c);
        }
    }

    #[test]
    fn too_little_to_learn_from_is_none() {
        assert!(train(&[]).is_none());
        assert!(train(&[Vec::new(), Vec::new()]).is_none());
    }

    #[test]
    fn damaged_bodies_are_corrupt_not_a_panic() {
        let d = dict();
        let n = d.table().unwrap().n;
        let c = compress(d, &samples()[3]);
        let mut cases = vec![vec![ESCAPE], [&c[..], &[ESCAPE]].concat()];
        if n < 255 {
            cases.push(vec![n as u8]);
            cases.push([&c[..], &[n as u8], &c[..]].concat());
        }
        for bad in cases {
            let r = decompress(d, &bad);
            assert!(matches!(r, Err(StoreError::Corrupt(_))), "{bad:?}: {r:?}");
        }
        // Far too much output: capped, an error.
        let huge = vec![0u8; MAX_BODY];
        assert!(matches!(decompress(d, &huge), Err(StoreError::Corrupt(_))));
        // Any cut or flipped byte: an error or other bytes, never a panic.
        for i in 0..c.len() {
            let _ = decompress(d, &c[..i]);
            for bit in 0..8 {
                let mut x = c.clone();
                x[i] ^= 1 << bit;
                let _ = decompress(d, &x);
            }
        }
    }

    #[test]
    fn unknown_codec_or_damaged_table_is_corrupt() {
        let good = train(&samples()).unwrap();
        let mut cases = vec![Vec::new(), vec![2u8; 100], vec![0u8], b"dddd".to_vec()];
        cases.push(good[..good.len() - 1].to_vec());
        cases.push([&good[..], b"x"].concat());
        // A length of 9, and lengths out of FSST's order.
        let mut x = good.clone();
        x[2] = 9;
        cases.push(x);
        let n = good[1] as usize;
        if n >= 2 && good[2] != good[2 + n - 1] {
            let mut x = good.clone();
            x.swap(2, 2 + n - 1);
            cases.push(x);
        }
        for bytes in cases {
            let d = Dict::new(1, &bytes);
            assert!(!d.can_compress(), "{bytes:?}");
            let r = decompress(&d, b"\x01\x02");
            assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
            let r = compress_many(&d, &[b"{}"]);
            assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
        }
        let d = Dict::new(7, &[42, 1, 2, 3]);
        let Err(StoreError::Corrupt(m)) = decompress(&d, b"") else {
            panic!()
        };
        assert!(
            m.contains("dictionary 7") && m.contains("codec id 42"),
            "{m}"
        );
    }

    #[test]
    fn colliding_symbols_are_an_error_not_a_panic() {
        // The same 3-byte symbol twice: FSST's compressor cannot hold it (it asserts); decoding
        // needs no compressor and still works.
        let t = [
            CODEC_FSST, 3, 3, 3, 1, b'a', b'b', b'c', b'a', b'b', b'c', b'x',
        ];
        let d = Dict::new(1, &t);
        assert!(
            check_slots(d.table().unwrap()).is_err(),
            "found before the crate asserts"
        );
        assert!(!d.can_compress());
        assert!(matches!(
            compress_many(&d, &[b"abc"]),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            decompress(&d, &[0, 2, ESCAPE, b'!', 1]).unwrap(),
            b"abcx!abc"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..12)) {
            let d = dict();
            let refs: Vec<&[u8]> = bodies.iter().map(|x| x.as_slice()).collect();
            let many = compress_many(d, &refs).unwrap();
            prop_assert_eq!(many.len(), bodies.len());
            for (x, c) in bodies.iter().zip(&many) {
                prop_assert_eq!(&decompress(d, c).unwrap(), x);
            }
        }

        #[test]
        fn arbitrary_compressed_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decompress(dict(), &data);
        }

        /// Tables in FSST's form but made up: they load or are an error, and whatever loads
        /// round-trips.
        #[test]
        fn made_up_tables_load_or_fail_cleanly(
            symbols in proptest::collection::vec(proptest::collection::vec(1u8..=255, 1..=8), 0..64),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut symbols = symbols;
            // FSST's code order: 2..8 bytes, then 1.
            symbols.sort_by_key(|s| if s.len() == 1 { 9 } else { s.len() });
            let mut t = vec![CODEC_FSST, symbols.len() as u8];
            t.extend(symbols.iter().map(|s| s.len() as u8));
            for s in &symbols {
                t.extend_from_slice(s);
            }
            let d = Dict::new(1, &t);
            prop_assert!(d.table().is_ok());
            // `check_slots` predicts exactly whether the crate's own rebuild succeeds.
            let table = d.table().unwrap();
            let symbols: Vec<fsst::Symbol> = table.syms[..table.n].iter().map(fsst::Symbol::from_slice).collect();
            let lens = table.lens[..table.n].to_vec();
            let crate_loads = std::panic::catch_unwind(move || fsst::Compressor::rebuild_from(symbols, lens)).is_ok();
            prop_assert_eq!(check_slots(table).is_ok(), crate_loads);
            let _ = decompress(&d, &body);
            if d.can_compress() {
                let c = compress_many(&d, &[&body]).unwrap();
                prop_assert_eq!(decompress(&d, &c[0]).unwrap(), body);
            }
        }
    }
}
