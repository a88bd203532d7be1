//! Alert rules: patterns, the `where` language, default rules, and a parser that never panics.

use crate::support::{canonical, event, ts};
use proptest::prelude::*;
use serde_json::json;
use trailkeep_control::rules::*;
use trailkeep_core::{risk_of, Risk, StoredEvent};

fn ev(event_type: &str, tenant: &str, actor: &str, payload: serde_json::Value) -> StoredEvent {
    event(
        tenant,
        7,
        event_type,
        actor,
        Some(canonical(&payload)),
        ts("2026-12-04T10:00:00.000Z"),
    )
}

fn ks(scope: &str) -> StoredEvent {
    ev(
        "killswitch.embed.disable",
        "_global",
        "admin:ana",
        json!({"scope": scope, "target": "embed", "reason": "x", "n": 3, "ok": true, "nested": {"a-b": {"c d": 1}}}),
    )
}

fn eval(expr: &str, e: &StoredEvent) -> bool {
    Expr::parse(expr)
        .unwrap_or_else(|err| panic!("{expr}: {err}"))
        .eval(e)
}

#[test]
fn type_patterns() {
    let p = |s| TypePattern::parse(s).unwrap();
    assert!(p("killswitch.*").matches("killswitch.embed.disable"));
    assert!(!p("killswitch.*").matches("killswitch"));
    assert!(!p("killswitch.*").matches("killswitches.x"));
    assert!(p("prompt.update").matches("prompt.update"));
    assert!(!p("prompt.update").matches("prompt.update.x"));
    assert!(p("*").matches("anything"));
    for bad in ["", "Prompt", "a.*.b", "*.x", "a.", ".*"] {
        assert!(TypePattern::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(p("killswitch.*").to_string(), "killswitch.*");
}

#[test]
fn where_expressions() {
    let e = ks("global");
    assert!(eval(r#"payload.scope == "global""#, &e));
    assert!(!eval(r#"payload.scope != "global""#, &e));
    assert!(eval(r#"payload.scope in ["tenant", "global"]"#, &e));
    assert!(eval(r#"payload.scope not in ["tenant"]"#, &e));
    assert!(!eval(r#"payload.scope in []"#, &e));
    assert!(eval(
        r#"tenant_id == "_global" and actor == "admin:ana""#,
        &e
    ));
    assert!(eval(r#"event_type == "x" or payload.n == 3"#, &e));
    assert!(eval(
        "payload.n == 3 and payload.ok == true and payload.n != -3",
        &e
    ));
    assert!(eval(r#"payload.nested.a-b."c d" == 1"#, &e));
    // and binds tighter than or; parentheses change that.
    assert!(eval(
        r#"payload.n == 3 or payload.n == 4 and payload.n == 5"#,
        &e
    ));
    assert!(!eval(
        r#"(payload.n == 3 or payload.n == 4) and payload.n == 5"#,
        &e
    ));
    assert!(eval(r#"not (payload.n == 4)"#, &e));
    // Missing values are null.
    assert!(eval(
        "payload.missing == null and payload.scope.deeper == null",
        &e
    ));
    assert!(eval(r#"payload.missing != "a""#, &e));
    assert!(eval("source_ip == null and approval_id == null", &e));
    assert!(eval("seq == 7", &e));
    assert!(eval(r#"timestamp == "2026-12-04T10:00:00.000Z""#, &e));
    assert!(eval(r#""global" == payload.scope"#, &e));
    // Numbers by value.
    let f = ev("x.y", "t", "a", json!({"n": 1.0, "big": 2}));
    assert!(eval("payload.n == 1 and payload.big in [1, 2]", &f));
    // A purged payload reads as null.
    let mut purged = ks("global");
    purged.payload = None;
    assert!(!eval(r#"payload.scope == "global""#, &purged));
    assert!(eval("payload == null", &purged));
}

#[test]
fn parse_errors_name_the_position() {
    let err = |s: &str| Expr::parse(s).unwrap_err();
    let e = err(r#"payload.scope in [a]"#);
    assert_eq!(e.to_string(), "expected a string, number or ] at 18");
    let e = err(r#"payload.scope in ["a",]"#);
    assert_eq!(
        (e.position, e.message.as_str()),
        (22, "expected a string, number or ]")
    );
    let e = err(r#"scope == "global""#);
    assert_eq!(e.position, 0);
    assert!(e.message.contains("payload.scope?"), "{}", e.message);
    assert_eq!(err(r#"actor.name == "x""#).message, "actor has no fields");
    assert_eq!(err(r#"payload.x == "open"#).message, "unterminated string");
    assert_eq!(err(r#"payload.x == 1 foo"#).position, 15);
    assert_eq!(err(r#"payload.x = 1"#).message, "expected ==, != or in");
    assert!(err("payload.x == 1.5").message.contains("fractions"));
    assert!(err("payload.x == 99999999999999999999")
        .message
        .contains("2^53"));
    assert!(err(r#"(payload.x == 1"#).message.contains("expected )"));
    assert!(err("").message.starts_with("expected a field"));
    let deep = format!("{}payload.x == 1{}", "(".repeat(40), ")".repeat(40));
    assert!(err(&deep).message.contains("nested deeper"));
    assert!(err(&"payload.x == 1 and ".repeat(300))
        .message
        .contains("longer than"));
}

fn rule(c: RuleConfig) -> Rule {
    Rule::compile(c).unwrap()
}

#[test]
fn rules_combine_their_filters() {
    let r = rule(RuleConfig {
        name: "global-ks".into(),
        event_types: vec!["killswitch.*".into()],
        actors: vec!["admin:*".into()],
        tenants: vec!["_global".into()],
        where_: Some(r#"payload.scope == "global""#.into()),
        channels: vec!["ops-chat".into()],
        ..Default::default()
    });
    assert!(r.matches(&ks("global")));
    assert!(!r.matches(&ks("tenant")));
    let mut other_actor = ks("global");
    other_actor.actor = "svc:bot".into();
    assert!(!r.matches(&other_actor));
    let mut other_tenant = ks("global");
    other_tenant.tenant_id = "t_1".into();
    assert!(!r.matches(&other_tenant));
    assert_eq!(r.channels(), ["ops-chat"]);

    let exact = rule(RuleConfig {
        name: "ana".into(),
        actors: vec!["admin:ana".into()],
        ..Default::default()
    });
    assert!(exact.matches(&ks("x")));
    let medium = rule(RuleConfig {
        name: "m".into(),
        risk: vec![Risk::Medium],
        ..Default::default()
    });
    assert!(medium.matches(&ev("policy.update", "t", "a", json!({}))));
    assert!(!medium.matches(&ks("x")));
}

#[test]
fn type_patterns_cover_every_type_a_rule_can_match() {
    let with = |event_types: &[&str], risk: Vec<Risk>| {
        rule(RuleConfig {
            name: "r".into(),
            event_types: event_types.iter().map(|s| s.to_string()).collect(),
            risk,
            ..Default::default()
        })
        .type_patterns()
    };
    let p = |s| TypePattern::parse(s).unwrap();
    assert_eq!(
        with(&["killswitch.*", "prompt.update"], vec![]),
        Some(vec![p("killswitch.*"), p("prompt.update")])
    );
    assert_eq!(with(&["prompt.update", "*"], vec![]), None);
    assert_eq!(with(&[], vec![]), None);
    assert_eq!(with(&[], vec![Risk::Low]), None);
    assert_eq!(with(&[], vec![Risk::High, Risk::Low]), None);
    // Types win over risk: the rule cannot match anything outside them.
    assert_eq!(
        with(&["crawl.run"], vec![Risk::High]),
        Some(vec![p("crawl.run")])
    );
    let medium = with(&[], vec![Risk::Medium]).unwrap();
    assert!(medium.contains(&p("policy.update")));
    assert!(!medium.contains(&p("prompt.update")));
    // The default rule's patterns are exactly the types it alerts on.
    let set = RuleSet::compile(vec![], &["ops-chat".into()]).unwrap();
    let high = set.rules[0].type_patterns().unwrap();
    for t in [
        "prompt.update",
        "impersonation.start",
        "impersonation.end",
        "killswitch.embed.disable",
        "killswitch.embed.enable",
        "policy.update",
        "crawl.run",
    ] {
        let matched = set.matching(&ev(t, "t", "a", json!({}))).len() == 1;
        assert_eq!(high.iter().any(|p| p.matches(t)), matched, "{t}");
    }
}

#[test]
fn default_rule_alerts_on_every_high_catalogue_type() {
    let set = RuleSet::compile(vec![], &["ops-chat".into(), "pager".into()]).unwrap();
    assert_eq!(set.rules.len(), 1);
    assert_eq!(set.rules[0].channels(), ["ops-chat", "pager"]);
    for t in [
        "prompt.update",
        "impersonation.start",
        "impersonation.end",
        "killswitch.embed.disable",
        "killswitch.embed.enable",
        "policy.update",
        "billing.plan.change",
        "crawl.run",
        "custom.thing",
    ] {
        let e = ev(t, "t", "a", json!({}));
        assert_eq!(set.matching(&e).len() == 1, risk_of(t) == Risk::High, "{t}");
    }
}

#[test]
fn rule_sets_refuse_bad_rules_by_name_and_match_in_order() {
    let c = |name: &str, w: Option<&str>| RuleConfig {
        name: name.into(),
        event_types: vec!["killswitch.*".into()],
        where_: w.map(Into::into),
        ..Default::default()
    };
    let e = RuleSet::compile(vec![c("a", Some("payload.x == "))], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "alert rule \"a\": where: expected a field (payload.…, tenant_id, actor, event_type, …) or a value at 13"
    );
    assert!(RuleSet::compile(vec![c("a", None), c("a", None)], &[]).is_err());
    let bad_type = RuleConfig {
        event_types: vec!["Nope".into()],
        ..c("b", None)
    };
    assert!(RuleSet::compile(vec![bad_type], &[])
        .unwrap_err()
        .to_string()
        .contains("event_types"));
    let empty_actor = RuleConfig {
        actors: vec![String::new()],
        ..c("b", None)
    };
    assert!(Rule::compile(empty_actor).is_err());

    let set = RuleSet::compile(
        vec![
            c("all", None),
            c("global", Some(r#"payload.scope == "global""#)),
            c("tenant", Some(r#"payload.scope == "tenant""#)),
        ],
        &[],
    )
    .unwrap();
    let names: Vec<_> = set
        .matching(&ks("global"))
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(names, ["all", "global"]);
}

#[test]
fn rule_config_reads_the_configuration_shape() {
    let c: RuleConfig = serde_json::from_value(json!({
        "name": "high-risk", "event_types": ["prompt.update", "impersonation.*"],
        "tenants": ["t_0042"], "where": "payload.scope == \"global\"", "channels": ["ops-chat"],
        "risk": ["high"]
    }))
    .unwrap();
    assert_eq!(c.where_.as_deref(), Some("payload.scope == \"global\""));
    assert_eq!(c.risk, [Risk::High]);
    assert!(serde_json::from_value::<RuleConfig>(json!({"name": "x", "wher": "a"})).is_err());
    assert_eq!(
        serde_json::to_value(&c).unwrap()["where"],
        "payload.scope == \"global\""
    );
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("payload".to_string()),
        Just(".".to_string()),
        Just("scope".to_string()),
        Just("tenant_id".to_string()),
        Just("==".to_string()),
        Just("!=".to_string()),
        Just(" in ".to_string()),
        Just(" not ".to_string()),
        Just(" and ".to_string()),
        Just(" or ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("\"é\\u00e9\"".to_string()),
        Just("-".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        "[0-9]{1,20}",
        "\\PC{0,3}",
    ]
}

proptest! {
    /// Arbitrary text never panics the parser; what parses evaluates without panicking.
    #[test]
    fn the_parser_never_panics_on_arbitrary_text(s in "\\PC{0,80}") {
        if let Ok(x) = Expr::parse(&s) {
            x.eval(&ks("global"));
        }
    }

    #[test]
    fn the_parser_never_panics_on_near_miss_expressions(tokens in prop::collection::vec(token(), 0..30)) {
        let s: String = tokens.concat();
        match Expr::parse(&s) {
            Ok(x) => { x.eval(&ks("global")); }
            Err(e) => prop_assert!(e.position <= s.len(), "{e} for {s:?}"),
        }
    }

    #[test]
    fn the_parser_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..60)) {
        let s = String::from_utf8_lossy(&b);
        let _ = Expr::parse(&s);
    }
}
