//! A borrowed JSON tree for the ingest fast path, and its RFC 8785 canonical form.
//!
//! [`Doc`] parses one JSON value into an arena of [`Node`]s whose strings borrow from the
//! request body (only strings with escapes are copied), checking the I-JSON number rule of
//! [`crate::numbers`] and the payload depth limit as it goes, and writes the canonical JSON of a
//! node in one pass ([`Doc::write_canonical`]).
//!
//! The model is *decide or decline*: the parser accepts only what the reference path
//! (`serde_json::Value` + `serde_json_canonicalizer`, see [`crate::validate::parse_event`])
//! accepts, and then yields the very same canonical bytes. Whenever an input is unusual or wrong
//! — malformed JSON, a duplicate key, a lone surrogate, a number the rule refuses, nesting past
//! the limit — it declines (`None`), and the caller runs the reference path, which produces the
//! exact errors, messages and paths. Declining is always safe; accepting must be exact, which
//! `tests/fast_path.rs` checks differentially against the reference.
//!
//! Canonical form (RFC 8785) as the reference writes it:
//! - object members sorted by the UTF-16 code units of their (unescaped) keys;
//! - strings escaped as `JSON.stringify` does ([`crate::leaf::write_json_string`]);
//! - numbers as ECMAScript `Number.prototype.toString` of the double. A safe integer written
//!   without fraction or exponent (but not `-0`, a float to serde_json), and a plain decimal
//!   such as `0.08` with at most 15 significant digits, no trailing zero and a value of at
//!   least 1e-6 are already in that form (15 digits survive the double round trip, so their
//!   shortest representation is the literal itself); they are copied. Every other number is
//!   parsed by serde_json and written by the reference canonicaliser.

use crate::leaf::{escape_free_prefix, write_json_string};
use crate::numbers::{check_number, MAX_SAFE_INTEGER};
use std::borrow::Cow;
use std::cmp::Ordering;

/// One JSON value in a [`Doc`].
#[derive(Debug, Clone)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    /// A non-negative integer literal within 2^53−1 (serde_json's `PosInt`): written as is.
    UInt(u64, &'a str),
    /// A number whose literal text is already canonical (negative safe integers, short plain
    /// decimals). Not an unsigned integer to serde_json.
    Lit(&'a str),
    /// Any other accepted number, as serde_json reads it.
    Num(serde_json::Number),
    /// A string: borrowed when written without escapes (then its text needs none either).
    Str(Cow<'a, str>),
    /// An array: `items[start..start + len]` are its element node ids.
    Arr(u32, u32),
    /// An object: `members[start..start + len]`, sorted by key in UTF-16 order, keys unique.
    Obj(u32, u32),
}

/// The arena of one parsed value (reused between events: [`Doc::clear`]).
#[derive(Default)]
pub(crate) struct Doc<'a> {
    nodes: Vec<Node<'a>>,
    items: Vec<u32>,
    members: Vec<(Cow<'a, str>, u32)>,
    /// Children of the containers being parsed, moved to `items`/`members` when each closes.
    item_stack: Vec<u32>,
    member_stack: Vec<(Cow<'a, str>, u32)>,
}

/// A read position in a JSON text.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte, if any.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    /// Skips JSON whitespace (space, tab, LF, CR).
    #[inline]
    pub fn skip_ws(&mut self) {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Consumes `c` (after whitespace) or fails.
    #[inline]
    pub fn eat(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// After an element of an array or object (after whitespace): consumes `,` (`Some(false)`:
    /// another element follows) or `close` (`Some(true)`: the list ended); anything else fails.
    #[inline]
    pub fn next_or_close(&mut self, close: u8) -> Option<bool> {
        self.skip_ws();
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Some(false)
            }
            c if c == close => {
                self.pos += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.text.len()
    }

    /// The text between two positions.
    pub fn slice(&self, from: usize, to: usize) -> &'a str {
        // Positions handed out by the parser sit on ASCII bytes, hence on char boundaries;
        // `get` keeps this panic-free regardless.
        self.text.get(from..to).unwrap_or("")
    }

    /// Reads a string literal (the cursor on its opening quote).
    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        let b = self.bytes();
        if b.get(self.pos) != Some(&b'"') {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        self.pos += escape_free_prefix(b.get(start..)?);
        match *b.get(self.pos)? {
            b'"' => {
                let s = self.text.get(start..self.pos)?;
                self.pos += 1;
                return Some(Cow::Borrowed(s));
            }
            b'\\' => {}
            _ => return None,
        }
        // Escapes: decode into an owned string.
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(self.text.get(start..self.pos)?);
        loop {
            let c = *b.get(self.pos)?;
            match c {
                b'"' => {
                    self.pos += 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    let e = *b.get(self.pos + 1)?;
                    self.pos += 2;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            match hi {
                                0xD800..=0xDBFF => {
                                    if b.get(self.pos) != Some(&b'\\')
                                        || b.get(self.pos + 1) != Some(&b'u')
                                    {
                                        return None;
                                    }
                                    self.pos += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return None;
                                    }
                                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                    char::from_u32(cp)?
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => char::from_u32(hi)?,
                            }
                        }
                        _ => return None,
                    };
                    out.push(ch);
                }
                0x00..=0x1f => return None,
                _ => {
                    // Copy the run up to the next quote, backslash or control byte.
                    let run = self.pos;
                    self.pos += escape_free_prefix(b.get(run..)?);
                    out.push_str(self.text.get(run..self.pos)?);
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes().get(self.pos..self.pos + 4)?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        self.pos += 4;
        Some(v)
    }

    /// Reads `null` (the cursor on it).
    pub fn null(&mut self) -> Option<()> {
        self.literal(b"null")
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes().get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Reads a number literal and classifies it (see [`Node`]); `None` if malformed or refused
    /// by the number rule.
    fn number(&mut self) -> Option<Node<'a>> {
        let b = self.bytes();
        let start = self.pos;
        let neg = b.get(self.pos) == Some(&b'-');
        if neg {
            self.pos += 1;
        }
        let int_start = self.pos;
        match b.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
            }
            _ => return None,
        }
        let int_end = self.pos;
        let mut frac = None;
        if b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            let f = self.pos;
            while matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == f {
                return None;
            }
            frac = Some((f, self.pos));
        }
        let mut exp = false;
        if matches!(b.get(self.pos), Some(b'e' | b'E')) {
            exp = true;
            self.pos += 1;
            if matches!(b.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let e = self.pos;
            while matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == e {
                return None;
            }
        }
        let text = self.slice(start, self.pos);
        let int = &b[int_start..int_end];
        if !exp {
            match frac {
                // An integer (not `-0`, which serde_json reads as the float -0.0).
                None if int.len() <= 16 && (int != b"0" || !neg) => {
                    let v = int.iter().fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
                    if v <= MAX_SAFE_INTEGER {
                        return Some(if neg {
                            Node::Lit(text)
                        } else {
                            Node::UInt(v, text)
                        });
                    }
                    // Too large: refused by the number rule.
                    return None;
                }
                Some((f, e)) => {
                    let frac = &b[f..e];
                    let sig = if int == b"0" {
                        let zeros = frac.iter().take_while(|&&d| d == b'0').count();
                        (zeros <= 5).then_some(frac.len() - zeros)
                    } else {
                        Some(int.len() + frac.len())
                    };
                    if frac.last() != Some(&b'0') && sig.is_some_and(|s| s <= 15) {
                        return Some(Node::Lit(text));
                    }
                }
                None => {}
            }
        }
        // Everything else exactly as serde_json reads it, checked by the reference rule.
        let n: serde_json::Number = serde_json::from_str(text).ok()?;
        check_number(&n).ok()?;
        // A literal that underflows to 0 (`1e-400`) is refused by the reference.
        if n.as_f64() == Some(0.0)
            && b[int_start..self.pos]
                .iter()
                .take_while(|&&d| !matches!(d, b'e' | b'E'))
                .any(|d| matches!(d, b'1'..=b'9'))
        {
            return None;
        }
        Some(Node::Num(n))
    }
}

impl<'a> Doc<'a> {
    /// Forgets every node (keeps the allocations).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.items.clear();
        self.members.clear();
        self.item_stack.clear();
        self.member_stack.clear();
    }

    /// Parses one value at the cursor. `depth` is the nesting depth of that value (the payload
    /// object is 1); a container deeper than `max_depth` declines, as does anything the
    /// reference path would refuse or report.
    pub fn value(&mut self, c: &mut Cursor<'a>, depth: usize, max_depth: usize) -> Option<u32> {
        c.skip_ws();
        let node = match c.peek()? {
            b'{' => {
                if depth > max_depth {
                    return None;
                }
                c.pos += 1;
                let mark = self.member_stack.len();
                c.skip_ws();
                if c.peek() == Some(b'}') {
                    c.pos += 1;
                } else {
                    loop {
                        c.skip_ws();
                        let key = c.string()?;
                        c.eat(b':')?;
                        let v = self.value(c, depth + 1, max_depth)?;
                        self.member_stack.push((key, v));
                        if c.next_or_close(b'}')? {
                            break;
                        }
                    }
                }
                let start = self.members.len();
                self.members.extend(self.member_stack.drain(mark..));
                let kids = &mut self.members[start..];
                if kids.len() > 1 {
                    kids.sort_unstable_by(|a, b| cmp_utf16(&a.0, &b.0));
                    // Duplicate keys: the reference keeps the last one; leave that to it.
                    if kids.windows(2).any(|w| w[0].0 == w[1].0) {
                        return None;
                    }
                }
                Node::Obj(u32::try_from(start).ok()?, u32::try_from(kids.len()).ok()?)
            }
            b'[' => {
                if depth > max_depth {
                    return None;
                }
                c.pos += 1;
                let mark = self.item_stack.len();
                c.skip_ws();
                if c.peek() == Some(b']') {
                    c.pos += 1;
                } else {
                    loop {
                        let v = self.value(c, depth + 1, max_depth)?;
                        self.item_stack.push(v);
                        if c.next_or_close(b']')? {
                            break;
                        }
                    }
                }
                let start = self.items.len();
                self.items.extend(self.item_stack.drain(mark..));
                Node::Arr(
                    u32::try_from(start).ok()?,
                    u32::try_from(self.items.len() - start).ok()?,
                )
            }
            b'"' => Node::Str(c.string()?),
            b't' => {
                c.literal(b"true")?;
                Node::Bool(true)
            }
            b'f' => {
                c.literal(b"false")?;
                Node::Bool(false)
            }
            b'n' => {
                c.literal(b"null")?;
                Node::Null
            }
            _ => c.number()?,
        };
        let id = u32::try_from(self.nodes.len()).ok()?;
        self.nodes.push(node);
        Some(id)
    }

    /// The node of an id handed out by [`Doc::value`].
    #[inline]
    pub fn node(&self, id: u32) -> &Node<'a> {
        // Ids come from `value` on this doc; `Null` keeps a stray id harmless.
        self.nodes.get(id as usize).unwrap_or(&Node::Null)
    }

    fn members_of(&self, start: u32, len: u32) -> &[(Cow<'a, str>, u32)] {
        self.members
            .get(start as usize..(start + len) as usize)
            .unwrap_or(&[])
    }

    /// The member `key` of an object node.
    pub fn get(&self, obj: u32, key: &str) -> Option<u32> {
        match self.node(obj) {
            Node::Obj(s, l) => self
                .members_of(*s, *l)
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| *v),
            _ => None,
        }
    }

    /// Appends the RFC 8785 canonical JSON of a node.
    pub fn write_canonical(&self, id: u32, out: &mut Vec<u8>) {
        match self.node(id) {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::UInt(_, t) | Node::Lit(t) => out.extend_from_slice(t.as_bytes()),
            Node::Num(n) => {
                // As the reference writes it (ECMAScript number formatting); never fails for a
                // number that passed the rule, and an empty write would only make the hash differ.
                let v = serde_json::Value::Number(n.clone());
                if let Ok(bytes) = serde_json_canonicalizer::to_vec(&v) {
                    out.extend_from_slice(&bytes);
                }
            }
            Node::Str(s) => write_str(out, s),
            Node::Arr(s, l) => {
                out.push(b'[');
                let items = self
                    .items
                    .get(*s as usize..(*s + *l) as usize)
                    .unwrap_or(&[]);
                for (i, &v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write_canonical(v, out);
                }
                out.push(b']');
            }
            Node::Obj(s, l) => {
                out.push(b'{');
                for (i, (k, v)) in self.members_of(*s, *l).iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    self.write_canonical(*v, out);
                }
                out.push(b'}');
            }
        }
    }
}

/// A string as canonical JSON: a borrowed one was written without escapes and holds no byte
/// that needs one (no quote, backslash or control character), so it is copied.
#[inline]
#[allow(clippy::ptr_arg)] // Borrowed or owned is the information used here.
fn write_str(out: &mut Vec<u8>, s: &Cow<'_, str>) {
    match s {
        Cow::Borrowed(s) => {
            out.reserve(s.len() + 2);
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(s) => write_json_string(out, s),
    }
}

/// Orders strings by their UTF-16 code units (RFC 8785 §3.2.3).
pub(crate) fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let n = x.iter().zip(y).take_while(|(p, q)| p == q).count();
    if n == x.len() || n == y.len() {
        return x.len().cmp(&y.len());
    }
    if x[n] < 0x80 && y[n] < 0x80 {
        return x[n].cmp(&y[n]);
    }
    // Back up to the start of the differing characters (the prefix is shared).
    let mut s = n;
    while !a.is_char_boundary(s) {
        s -= 1;
    }
    let first = |t: &str| t.get(s..).and_then(|rest| rest.chars().next());
    match (first(a), first(b)) {
        (Some(p), Some(q)) => {
            let (mut bp, mut bq) = ([0u16; 2], [0u16; 2]);
            p.encode_utf16(&mut bp).cmp(&q.encode_utf16(&mut bq))
        }
        _ => x.len().cmp(&y.len()),
    }
}

/// A read-only view of a [`Doc`] node, for the catalogue's payload checks.
#[derive(Clone, Copy)]
pub(crate) struct NodeRef<'v, 'a> {
    pub doc: &'v Doc<'a>,
    pub id: u32,
}

impl<'v, 'a> crate::catalogue::JsonValue<'v> for NodeRef<'v, 'a> {
    type Object = NodeRef<'v, 'a>;

    fn as_str(self) -> Option<&'v str> {
        match self.doc.node(self.id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_u64(self) -> Option<u64> {
        match self.doc.node(self.id) {
            Node::UInt(v, _) => Some(*v),
            // serde_json reads every non-negative integer literal as an unsigned integer; a
            // number kept in `Num` that is one would be outside the safe range, refused above.
            Node::Num(n) => n.as_u64(),
            _ => None,
        }
    }

    fn as_object(self) -> Option<Self::Object> {
        matches!(self.doc.node(self.id), Node::Obj(..)).then_some(self)
    }
}

impl<'v, 'a> crate::catalogue::JsonObject<'v> for NodeRef<'v, 'a> {
    type Value = NodeRef<'v, 'a>;

    fn get(self, key: &str) -> Option<Self::Value> {
        self.doc
            .get(self.id, key)
            .map(|id| NodeRef { doc: self.doc, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> Option<String> {
        let mut doc = Doc::default();
        let mut c = Cursor::new(text);
        let id = doc.value(&mut c, 1, 32)?;
        if !c.at_end() {
            return None;
        }
        let mut out = Vec::new();
        doc.write_canonical(id, &mut out);
        Some(String::from_utf8(out).unwrap())
    }

    fn reference(text: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        String::from_utf8(serde_json_canonicalizer::to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn canonical_matches_reference() {
        for t in [
            r#"{"b":[1,{"d":0,"c":1}],"a":"é"}"#,
            r#" { "z" : null , "y" : true, "x": false, "w": [ ] , "v": { } } "#,
            r#"{"n":[0,-1,9007199254740991,-9007199254740991,0.5,-0.5,0.08,1.0,1.50,-0,-0.0,1e2,1E-7,0.000001,0.0000001,123456789012345.6,1.2345678901234567,5e-324,1.5e-300,-2.5E+3]}"#,
            r#"{"s":"a\"b\\c\/d\b\f\n\r\t\u0000\u001f\u007f\u00e9\u2028\ud83d\ude00"}"#,
            r#"{"\u0061":1,"b":2,"\ue000":3,"\ud83d\ude00":4,"é":5,"":6}"#,
            r#"{"a":{"b":{"c":[[[]]]}}}"#,
        ] {
            assert_eq!(canon(t).as_deref(), Some(reference(t).as_str()), "{t}");
        }
    }

    #[test]
    fn declines_what_the_reference_refuses_or_reports() {
        for t in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":9007199254740992}"#,
            r#"{"a":-9007199254740992}"#,
            r#"{"a":1e400}"#,
            r#"{"a":1e20}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":-}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":"x	y"}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":tru}"#,
            r#"{"a" 1}"#,
            "{\"a\":1",
        ] {
            assert_eq!(canon(t), None, "{t}");
        }
        // Depth: 32 nested containers pass, 33 decline.
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(canon(&nest(32)).is_some());
        assert!(canon(&nest(33)).is_none());
    }

    #[test]
    fn utf16_order() {
        let mut keys = vec![
            "\u{e000}",
            "\u{1f600}",
            "a",
            "",
            "ab",
            "é",
            "\u{ffff}",
            "\u{10000}",
        ];
        keys.sort_by(|a, b| cmp_utf16(a, b));
        let mut reference = keys.clone();
        reference.sort_by_key(|k| k.encode_utf16().collect::<Vec<_>>());
        assert_eq!(keys, reference);
        assert_eq!(keys[0], "");
        // Supplementary characters (surrogates D800–DFFF) sort before U+E000.
        assert!(cmp_utf16("\u{1f600}", "\u{e000}").is_lt());
    }
}
