//! Alert rules: which events a human is told about, and through which channels.
//!
//! # The model
//!
//! A rule ([`RuleConfig`], one `[[alerts.rules]]` table) matches an event when every filter it
//! sets matches (an unset or empty filter matches everything):
//!
//! - `event_types`: patterns ([`TypePattern`]): an exact type (`prompt.update`), a prefix
//!   (`killswitch.*` matches `killswitch.embed.disable` but not `killswitch` itself), or `*`;
//! - `tenants`: exact tenant ids;
//! - `actors`: exact actors, or a prefix ending in `*` (`admin:*`);
//! - `risk`: catalogue risk levels (`high`, `medium`, `low`, from
//!   [`trailkeep_core::risk_of`]);
//! - `where`: an expression over the event ([`Expr`]), e.g.
//!   `payload.scope == "global" and tenant_id in ["_global", "t_0042"]`.
//!
//! Rules are compiled once at start ([`RuleSet::compile`]); a bad rule refuses to start with
//! the rule's name and, for a `where`, the byte position of the problem
//! (`expected a string, number or ] at 17`). When the configuration has no rule, the default
//! rule alerts on every `high` event of the catalogue through every channel ([`default_rule`]):
//! it filters on the catalogue's risk level, so the list of high-risk types lives in one place.
//!
//! # `where` expressions
//!
//! ```text
//! expr       := or
//! or         := and ("or" and)*
//! and        := not ("and" not)*
//! not        := "not" not | primary
//! primary    := "(" expr ")" | comparison
//! comparison := operand ("==" | "!=") operand | operand ["not"] "in" "[" [literal ("," literal)*] "]"
//! operand    := path | literal
//! path       := root ("." key)*      root: payload, tenant_id, actor, event_type, event_id,
//!                                          source_ip, impersonation_session, approval_id,
//!                                          timestamp, seq
//! literal    := string (JSON syntax) | integer | true | false | null
//! ```
//!
//! Keys are letters, digits, `_` and `-` (not starting with `-`), or a JSON string for other
//! keys (`payload."odd key"`). Only `payload` has fields. A path that leads nowhere (a missing
//! key, a purged payload, an absent optional field) has the value `null`, so
//! `payload.x == null` is true when `x` is missing and `payload.x != "a"` is true as well.
//! Numbers compare by value (`1 == 1.0`). Nesting is limited to 32 levels and an expression to
//! 4 KiB.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use trailkeep_core::{risk_of, Risk, StoredEvent};

/// An event-type pattern: exact, `prefix.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypePattern {
    Any,
    Exact(String),
    /// The prefix including its final dot (`killswitch.`).
    Prefix(String),
}

impl TypePattern {
    /// Parses a pattern; the error says what is accepted.
    pub fn parse(s: &str) -> Result<TypePattern, String> {
        use trailkeep_core::validate::is_event_type;
        if s == "*" {
            return Ok(TypePattern::Any);
        }
        if let Some(prefix) = s.strip_suffix(".*") {
            if is_event_type(prefix) {
                return Ok(TypePattern::Prefix(format!("{prefix}.")));
            }
        } else if is_event_type(s) {
            return Ok(TypePattern::Exact(s.to_string()));
        }
        Err(format!(
            "{s:?} is not an event type pattern: expected a type (prompt.update), a prefix (killswitch.*) or *"
        ))
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            TypePattern::Any => true,
            TypePattern::Exact(t) => t == event_type,
            TypePattern::Prefix(p) => event_type.starts_with(p.as_str()),
        }
    }
}

impl std::fmt::Display for TypePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypePattern::Any => f.write_str("*"),
            TypePattern::Exact(t) => f.write_str(t),
            TypePattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// One `[[alerts.rules]]` table as configured (and as `GET /v1/alerts/rules` shows it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub actors: Vec<String>,
    #[serde(default)]
    pub risk: Vec<Risk>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    #[serde(default)]
    pub channels: Vec<String>,
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// What it was compiled from.
    pub config: RuleConfig,
    event_types: Vec<TypePattern>,
    condition: Option<Expr>,
}

/// Why a rule could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("alert rule {rule:?}: {message}")]
    Invalid { rule: String, message: String },
    #[error("alert rule {rule:?}: where: {error}")]
    Where { rule: String, error: ParseError },
}

impl Rule {
    /// Compiles a configured rule. `channels` is not checked here (the server knows them).
    pub fn compile(config: RuleConfig) -> Result<Rule, RuleError> {
        let invalid = |message: String| RuleError::Invalid {
            rule: config.name.clone(),
            message,
        };
        if config.name.trim().is_empty() {
            return Err(invalid("name must not be empty".into()));
        }
        let event_types = config
            .event_types
            .iter()
            .map(|p| TypePattern::parse(p).map_err(|m| invalid(format!("event_types: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if config.actors.iter().any(|a| a.is_empty()) {
            return Err(invalid(
                "actors: an empty actor never matches; give an actor or a prefix ending in *"
                    .into(),
            ));
        }
        let condition = match &config.where_ {
            Some(w) => Some(Expr::parse(w).map_err(|error| RuleError::Where {
                rule: config.name.clone(),
                error,
            })?),
            None => None,
        };
        Ok(Rule {
            config,
            event_types,
            condition,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn channels(&self) -> &[String] {
        &self.config.channels
    }

    /// The event types the rule can match, as patterns, or `None` when it can match any type
    /// (no type filter and no risk filter, `*`, or a risk filter that includes `low`, which
    /// every type outside the catalogue has). A delivery loop reads only these types from the
    /// log; the rule itself still decides on each event read.
    ///
    /// `event_types` when set; otherwise, for a rule filtering on risk only, the catalogue's
    /// types of those risks ([`trailkeep_core::catalogue::RATED_TYPES`]).
    pub fn type_patterns(&self) -> Option<Vec<TypePattern>> {
        if !self.event_types.is_empty() {
            if self.event_types.contains(&TypePattern::Any) {
                return None;
            }
            return Some(self.event_types.clone());
        }
        let risk = &self.config.risk;
        if risk.is_empty() || risk.contains(&Risk::Low) {
            return None;
        }
        Some(
            trailkeep_core::catalogue::RATED_TYPES
                .iter()
                .filter(|(_, r)| risk.contains(r))
                .map(|(t, _)| TypePattern::Exact((*t).to_string()))
                .collect(),
        )
    }

    /// Every filter but `where`: cheap, no payload parsed.
    fn matches_envelope(&self, e: &StoredEvent) -> bool {
        let c = &self.config;
        (self.event_types.is_empty() || self.event_types.iter().any(|p| p.matches(&e.event_type)))
            && (c.tenants.is_empty() || c.tenants.contains(&e.tenant_id))
            && (c.actors.is_empty() || c.actors.iter().any(|a| actor_matches(a, &e.actor)))
            && (c.risk.is_empty() || c.risk.contains(&risk_of(&e.event_type)))
    }

    /// Whether the rule matches the event.
    pub fn matches(&self, e: &StoredEvent) -> bool {
        self.matches_with(e, &mut LazyPayload::default())
    }

    fn matches_with(&self, e: &StoredEvent, payload: &mut LazyPayload) -> bool {
        if !self.matches_envelope(e) {
            return false;
        }
        match &self.condition {
            None => true,
            Some(x) => x.eval_with(e, payload),
        }
    }
}

fn actor_matches(pattern: &str, actor: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => actor.starts_with(prefix),
        None => pattern == actor,
    }
}

/// The default rule: every `high` event of the catalogue, to `channels`.
pub fn default_rule(channels: Vec<String>) -> Rule {
    Rule {
        config: RuleConfig {
            name: "default-high-risk".into(),
            risk: vec![Risk::High],
            channels,
            ..RuleConfig::default()
        },
        event_types: Vec::new(),
        condition: None,
    }
}

/// The rules in force.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// Compiles the configured rules; with none, the [`default_rule`] to `all_channels`.
    /// Refuses duplicate rule names.
    pub fn compile(
        configs: Vec<RuleConfig>,
        all_channels: &[String],
    ) -> Result<RuleSet, RuleError> {
        if configs.is_empty() {
            return Ok(RuleSet {
                rules: vec![default_rule(all_channels.to_vec())],
            });
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(configs.len());
        for c in configs {
            if rules.iter().any(|r| r.config.name == c.name) {
                return Err(RuleError::Invalid {
                    rule: c.name,
                    message: "another rule has this name".into(),
                });
            }
            rules.push(Rule::compile(c)?);
        }
        Ok(RuleSet { rules })
    }

    /// The rules matching the event, in configuration order. The payload is parsed at most
    /// once, and only if a rule whose other filters match has a `where`.
    pub fn matching(&self, e: &StoredEvent) -> Vec<&Rule> {
        let mut payload = LazyPayload::default();
        self.rules
            .iter()
            .filter(|r| r.matches_with(e, &mut payload))
            .collect()
    }
}

/// The event's payload, parsed on first use (`Null` if purged or unreadable).
#[derive(Default)]
struct LazyPayload(Option<Value>);

impl LazyPayload {
    fn get(&mut self, e: &StoredEvent) -> &Value {
        self.0.get_or_insert_with(|| {
            e.payload
                .as_deref()
                .and_then(|p| serde_json::from_slice(p).ok())
                .unwrap_or(Value::Null)
        })
    }
}

/// A `where` parse error: the byte position in the expression and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at {position}")]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

/// A top-level field of the event a path can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Payload,
    TenantId,
    Actor,
    EventType,
    EventId,
    SourceIp,
    ImpersonationSession,
    ApprovalId,
    Timestamp,
    Seq,
}

impl Field {
    const ALL: [(&'static str, Field); 10] = [
        ("payload", Field::Payload),
        ("tenant_id", Field::TenantId),
        ("actor", Field::Actor),
        ("event_type", Field::EventType),
        ("event_id", Field::EventId),
        ("source_ip", Field::SourceIp),
        ("impersonation_session", Field::ImpersonationSession),
        ("approval_id", Field::ApprovalId),
        ("timestamp", Field::Timestamp),
        ("seq", Field::Seq),
    ];
}

/// An operand: a path into the event, or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Field, Vec<String>),
    Literal(Value),
}

/// A parsed `where` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Eq(Operand, Operand),
    Ne(Operand, Operand),
    In(Operand, Vec<Value>),
    NotIn(Operand, Vec<Value>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Longest expression accepted.
pub const MAX_WHERE_BYTES: usize = 4096;
/// Deepest nesting of parentheses and `not`.
pub const MAX_WHERE_DEPTH: usize = 32;

impl Expr {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        if text.len() > MAX_WHERE_BYTES {
            return Err(ParseError {
                position: MAX_WHERE_BYTES,
                message: format!("expression longer than {MAX_WHERE_BYTES} bytes"),
            });
        }
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            pos: 0,
        };
        let e = p.or(0)?;
        p.ws();
        if p.pos < p.s.len() {
            return Err(p.err("expected and, or or the end of the expression"));
        }
        Ok(e)
    }

    /// Evaluates the expression on an event.
    pub fn eval(&self, e: &StoredEvent) -> bool {
        self.eval_with(e, &mut LazyPayload::default())
    }

    fn eval_with(&self, e: &StoredEvent, payload: &mut LazyPayload) -> bool {
        match self {
            Expr::Eq(a, b) => json_eq(&resolve(a, e, payload), &resolve(b, e, payload)),
            Expr::Ne(a, b) => !json_eq(&resolve(a, e, payload), &resolve(b, e, payload)),
            Expr::In(a, list) => {
                let v = resolve(a, e, payload);
                list.iter().any(|l| json_eq(&v, l))
            }
            Expr::NotIn(a, list) => {
                let v = resolve(a, e, payload);
                !list.iter().any(|l| json_eq(&v, l))
            }
            Expr::Not(x) => !x.eval_with(e, payload),
            Expr::And(x, y) => x.eval_with(e, payload) && y.eval_with(e, payload),
            Expr::Or(x, y) => x.eval_with(e, payload) || y.eval_with(e, payload),
        }
    }
}

fn opt(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_string()))
}

fn resolve(o: &Operand, e: &StoredEvent, payload: &mut LazyPayload) -> Value {
    let (field, keys) = match o {
        Operand::Literal(v) => return v.clone(),
        Operand::Path(f, k) => (*f, k),
    };
    match field {
        Field::Payload => {
            let mut v = payload.get(e);
            for k in keys {
                match v.get(k.as_str()) {
                    Some(x) => v = x,
                    None => return Value::Null,
                }
            }
            v.clone()
        }
        Field::TenantId => Value::String(e.tenant_id.clone()),
        Field::Actor => Value::String(e.actor.clone()),
        Field::EventType => Value::String(e.event_type.clone()),
        Field::EventId => Value::String(e.event_id.hyphenated().to_string()),
        Field::SourceIp => opt(e.source_ip.as_deref()),
        Field::ImpersonationSession => opt(e.impersonation_session.as_deref()),
        Field::ApprovalId => opt(e.approval_id.as_deref()),
        Field::Timestamp => Value::String(e.timestamp.to_rfc3339()),
        Field::Seq => Value::from(e.seq),
    }
}

/// JSON equality, numbers by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        _ => a == b,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

fn is_key_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

impl<'a> Parser<'a> {
    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            position: self.pos,
            message: message.into(),
        }
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    /// Whether the keyword `kw` (a whole word) comes next; consumes it if so.
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let end = self.pos + kw.len();
        if self.s.get(self.pos..end) == Some(kw.as_bytes())
            && !self.s.get(end).is_some_and(|&b| is_key_byte(b))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn symbol(&mut self, sym: &str) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(sym.as_bytes()) {
            self.pos += sym.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.not(depth)?;
        while self.keyword("and") {
            let right = self.not(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if depth >= MAX_WHERE_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_WHERE_DEPTH} levels")));
        }
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.not(depth + 1)?)));
        }
        if self.symbol("(") {
            let e = self.or(depth + 1)?;
            if !self.symbol(")") {
                return Err(self.err("expected ) or an operator"));
            }
            return Ok(e);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        if self.symbol("==") {
            return Ok(Expr::Eq(left, self.operand()?));
        }
        if self.symbol("!=") {
            return Ok(Expr::Ne(left, self.operand()?));
        }
        let negated = self.keyword("not");
        if self.keyword("in") {
            let list = self.list()?;
            return Ok(if negated {
                Expr::NotIn(left, list)
            } else {
                Expr::In(left, list)
            });
        }
        if negated {
            return Err(self.err("expected in"));
        }
        Err(self.err("expected ==, != or in"))
    }

    fn list(&mut self) -> Result<Vec<Value>, ParseError> {
        if !self.symbol("[") {
            return Err(self.err("expected ["));
        }
        let mut items = Vec::new();
        if self.symbol("]") {
            return Ok(items);
        }
        loop {
            match self.literal()? {
                Some(v) => items.push(v),
                None => return Err(self.err("expected a string, number or ]")),
            }
            if self.symbol("]") {
                return Ok(items);
            }
            if !self.symbol(",") {
                return Err(self.err("expected , or ]"));
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        if let Some(v) = self.literal()? {
            return Ok(Operand::Literal(v));
        }
        let start = self.pos;
        let Some(root) = self.bare_key() else {
            return Err(self
                .err("expected a field (payload.…, tenant_id, actor, event_type, …) or a value"));
        };
        let Some(&(_, field)) = Field::ALL.iter().find(|(n, _)| *n == root) else {
            self.pos = start;
            return Err(self.err(format!(
                "unknown field {root}: paths start with payload (payload.{root}?) or one of tenant_id, actor, event_type, event_id, source_ip, impersonation_session, approval_id, timestamp, seq"
            )));
        };
        let mut keys = Vec::new();
        while self.s.get(self.pos) == Some(&b'.') {
            if field != Field::Payload {
                return Err(self.err(format!("{root} has no fields")));
            }
            self.pos += 1;
            if self.s.get(self.pos) == Some(&b'"') {
                keys.push(self.string()?);
            } else {
                match self.bare_key() {
                    Some(k) => keys.push(k.to_string()),
                    None => return Err(self.err("expected a key after .")),
                }
            }
        }
        Ok(Operand::Path(field, keys))
    }

    /// A key of letters, digits, `_` and `-` at the current position (no whitespace skipped).
    fn bare_key(&mut self) -> Option<&'a str> {
        let text = self.text;
        let start = self.pos;
        if !self.s.get(start).is_some_and(|&b| is_key_start(b)) {
            return None;
        }
        let mut end = start;
        while self.s.get(end).is_some_and(|&b| is_key_byte(b)) {
            end += 1;
        }
        self.pos = end;
        text.get(start..end)
    }

    /// A literal, or `None` (position unchanged) if what comes next is not one.
    fn literal(&mut self) -> Result<Option<Value>, ParseError> {
        match self.peek() {
            Some(b'"') => Ok(Some(Value::String(self.string()?))),
            Some(b'-' | b'0'..=b'9') => self.integer().map(Some),
            _ => {
                for (kw, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.keyword(kw) {
                        return Ok(Some(v));
                    }
                }
                Ok(None)
            }
        }
    }

    fn integer(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        let mut end = start;
        if self.s.get(end) == Some(&b'-') {
            end += 1;
        }
        let digits = end;
        while self.s.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == digits {
            return Err(self.err("expected a digit after -"));
        }
        if self
            .s
            .get(end)
            .is_some_and(|&b| b == b'.' || is_key_byte(b))
        {
            self.pos = end;
            return Err(self.err("expected an integer (fractions and exponents are not supported)"));
        }
        let n: i64 = self
            .text
            .get(start..end)
            .and_then(|t| t.parse().ok())
            .filter(|n: &i64| n.unsigned_abs() <= trailkeep_core::numbers::MAX_SAFE_INTEGER)
            .ok_or_else(|| self.err("integer outside ±(2^53−1)"))?;
        self.pos = end;
        Ok(Value::from(n))
    }

    /// A JSON string starting at the current position.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            match self.s.get(i) {
                None => return Err(self.err("unterminated string")),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let end = i + 1;
        let raw = self.text.get(start..end).unwrap_or_default();
        match serde_json::from_str::<String>(raw) {
            Ok(s) => {
                self.pos = end;
                Ok(s)
            }
            Err(e) => Err(self.err(format!("invalid string: {e}"))),
        }
    }
}
