//! `trailkeep approvals` and `trailkeep impersonations` against a real server: approver keys
//! made with `key create --url`, an approval asked for through the API, then listed, shown,
//! approved by two approver keys and rejected with the CLI; refusals print the server's
//! message and reason; sessions listed and shown after their events were ingested.

use crate::support::*;
use serde_json::{json, Value};
use std::process::Output;

/// Runs `trailkeep ARGS --url URL` with `key` in TRAILKEEP_KEY (none when `None`).
fn tk(url: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut c = trailkeep();
    c.args(args).args(["--url", url]);
    if let Some(k) = key {
        c.env("TRAILKEEP_KEY", k);
    }
    let out = c.output().expect("run trailkeep");
    eprintln!(
        "trailkeep {args:?} -> {:?}\n--- stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must succeed and returns its stdout.
fn ok(url: &str, key: &str, args: &[&str]) -> String {
    let out = tk(url, Some(key), args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Runs a command that must fail with exit status 1 and returns its stderr.
fn refused(url: &str, key: Option<&str>, args: &[&str]) -> String {
    let out = tk(url, key, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
    stderr(&out)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> Value {
    let r = c
        .post(url)
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status == 200 || status == 201, "{url}: {status} {v}");
    v
}

#[test]
fn approvals_are_listed_shown_approved_and_rejected_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = s.url.as_str();
    // Two approver keys, one per person, made with the CLI through the server.
    let approvers: Vec<String> = (0..2)
        .map(|_| {
            ok(u, ADMIN, &["key", "create", "--role", "approver"])
                .trim()
                .to_string()
        })
        .collect();
    assert!(approvers.iter().all(|k| k.starts_with("tk_")));
    // Two approvals asked for by the admin key (which therefore cannot approve them).
    let ids: Vec<String> = rt().block_on(async {
        let c = client();
        let mut ids = Vec::new();
        for target in ["t_one", "t_two"] {
            let v = post(
                &c,
                &format!("{u}/v1/approvals"),
                &json!({"tenant_id": "t_apr", "requested_by": "svc:console",
                        "reason": "customer asked",
                        "action": {"event_type": "tenant.disable", "payload": {"target": target}}}),
            )
            .await;
            ids.push(v["id"].as_str().unwrap().to_string());
        }
        ids
    });
    let (first, second) = (ids[0].as_str(), ids[1].as_str());

    // The table: a header and one row per approval, newest request first.
    let table = ok(u, ADMIN, &["approvals", "list", "--tenant", "t_apr"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for h in [
        "ID",
        "TENANT",
        "ACTION",
        "STATUS",
        "APPROVALS",
        "REQUESTED BY",
        "EXPIRES AT",
    ] {
        assert!(lines[0].contains(h), "{table}");
    }
    assert!(
        lines[1].starts_with(second) && lines[2].starts_with(first),
        "{table}"
    );
    for cell in ["t_apr", "tenant.disable", "pending", "0/2", "svc:console"] {
        assert!(lines[1].contains(cell), "{cell}: {table}");
    }
    // JSON lines, filtered by state.
    let pending = json_lines(&ok(
        u,
        ADMIN,
        &["approvals", "list", "--status", "pending", "--json"],
    ));
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0]["action"]["payload"]["target"], "t_two");
    let none = tk(
        u,
        Some(ADMIN),
        &["approvals", "list", "--status", "approved"],
    );
    assert!(none.status.success() && stdout(&none).is_empty());
    assert!(
        stderr(&none).contains("no approvals match"),
        "{}",
        stderr(&none)
    );
    // A state the API does not know is refused before any request.
    let out = tk(u, Some(ADMIN), &["approvals", "list", "--status", "done"]);
    assert_eq!(out.status.code(), Some(2));

    // show: the approval as pretty JSON.
    let shown = ok(u, &approvers[0], &["approvals", "show", first]);
    assert!(shown.lines().count() > 10, "not pretty-printed: {shown}");
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["status"].as_str()),
        (Some(first), Some("pending"))
    );
    assert_eq!(v["digest"].as_str().map(str::len), Some(64));

    // Two distinct approver keys approve it; the first one's repeat is refused with its reason.
    let approve = |key: &str, who: &str| {
        tk(
            u,
            Some(key),
            &[
                "approvals",
                "approve",
                first,
                "--approver",
                who,
                "--comment",
                "checked",
            ],
        )
    };
    let out = approve(&approvers[0], "user:lea");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["status"], "pending");
    assert_eq!(v["approvals"][0]["approver"], "user:lea");
    assert_eq!(v["approvals"][0]["comment"], "checked");
    assert!(
        stderr(&out).contains("is pending: 1/2 approvals"),
        "{}",
        stderr(&out)
    );
    let out = approve(&approvers[0], "user:lea");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("(HTTP 409 conflict; reason approver_repeated)"),
        "{err}"
    );
    // The key that asked never counts.
    let err = refused(
        u,
        Some(ADMIN),
        &["approvals", "approve", first, "--approver", "user:root"],
    );
    assert!(
        err.contains("HTTP 403 forbidden; reason approver_is_requester"),
        "{err}"
    );
    let out = approve(&approvers[1], "user:max");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["status"], "approved");
    assert!(
        stderr(&out).contains("is approved: 2/2 approvals"),
        "{}",
        stderr(&out)
    );
    let approved = json_lines(&ok(
        u,
        ADMIN,
        &["approvals", "list", "--status", "approved", "--json"],
    ));
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["id"], first);

    // A rejection ends the other one; deciding it again is refused.
    let out = tk(
        u,
        Some(&approvers[1]),
        &[
            "approvals",
            "reject",
            second,
            "--approver",
            "user:max",
            "--comment",
            "no ticket",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["rejection"]["comment"], "no ticket");
    let err = refused(
        u,
        Some(&approvers[0]),
        &["approvals", "approve", second, "--approver", "user:lea"],
    );
    assert!(err.contains("reason approval_rejected"), "{err}");

    // Unknown ids: the server's message, plainly; a path-like id stays one path segment.
    let err = refused(u, Some(ADMIN), &["approvals", "show", "apr_nope"]);
    assert!(
        err.starts_with("error: no approval \"apr_nope\"") && err.contains("HTTP 404 not_found"),
        "{err}"
    );
    assert!(!err.contains("{\""), "{err}");
    let err = refused(
        u,
        Some(&approvers[0]),
        &[
            "approvals",
            "reject",
            "../../keys",
            "--approver",
            "user:lea",
        ],
    );
    assert!(err.contains("no approval \"../../keys\""), "{err}");
    // No key at all, and a key the server does not know.
    let err = refused(u, None, &["approvals", "list"]);
    assert!(
        err.contains("no API key") && err.contains("TRAILKEEP_KEY"),
        "{err}"
    );
    let err = refused(u, Some("tk_not_a_key_0123456789"), &["approvals", "list"]);
    assert!(err.contains("HTTP 401 unauthorized"), "{err}");
    s.stop();
}

#[test]
fn impersonation_sessions_are_listed_and_shown_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let u = s.url.as_str();
    let ev = |t: &str, ts: &str, payload: Value, session: Option<&str>| {
        let mut e = json!({"event_type": t, "actor": "admin:ops", "tenant_id": "t_imp",
                           "timestamp": ts, "payload": payload});
        if let Some(s) = session {
            e["impersonation_session"] = json!(s);
        }
        e
    };
    rt().block_on(post(
        &client(),
        &format!("{u}/v1/events"),
        &json!([
            ev(
                "impersonation.start",
                "2026-01-02T10:00:00.000Z",
                json!({"impersonator": "admin:ops", "impersonated": "user:ana",
                      "session_id": "imp_1", "reason": "ticket 42"}),
                None
            ),
            ev(
                "settings.view",
                "2026-01-02T10:01:00.000Z",
                json!({}),
                Some("imp_1")
            ),
            ev(
                "settings.change",
                "2026-01-02T10:02:00.000Z",
                json!({"before": 1, "after": 2}),
                Some("imp_1")
            ),
            ev(
                "impersonation.end",
                "2026-01-02T10:20:00.000Z",
                json!({"session_id": "imp_1", "actions_taken": 2}),
                None
            ),
            ev(
                "impersonation.start",
                "2026-01-02T11:00:00.000Z",
                json!({"impersonator": "admin:eve", "impersonated": "user:bob",
                      "session_id": "imp_2", "reason": "ticket 43"}),
                None
            ),
        ]),
    ));

    // The table: newest start first; the open session ends as "active".
    let table = ok(u, ADMIN, &["impersonations", "list", "--tenant", "t_imp"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for h in ["SESSION", "TENANT", "WHO", "START", "END", "DURATION"] {
        assert!(lines[0].contains(h), "{table}");
    }
    assert!(lines[1].starts_with("imp_2") && lines[1].contains("admin:eve → user:bob"));
    assert!(lines[1].contains("active"), "{table}");
    assert!(lines[2].starts_with("imp_1") && lines[2].contains("admin:ops → user:ana"));
    for cell in [
        "2026-01-02T10:00:00.000Z",
        "2026-01-02T10:20:00.000Z",
        "20m 00s",
    ] {
        assert!(lines[2].contains(cell), "{cell}: {table}");
    }
    // JSON lines, open or ended.
    let open = json_lines(&ok(
        u,
        ADMIN,
        &["impersonations", "list", "--active", "true", "--json"],
    ));
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0]["session_id"].as_str(), open[0]["active"].as_bool()),
        (Some("imp_2"), Some(true))
    );
    let ended = json_lines(&ok(
        u,
        ADMIN,
        &["impersonations", "list", "--active", "false", "--json"],
    ));
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["duration_seconds"], 1200);
    let out = tk(
        u,
        Some(ADMIN),
        &["impersonations", "list", "--active", "maybe"],
    );
    assert_eq!(out.status.code(), Some(2));

    // show: the session, then its actions in log order.
    let shown = ok(
        u,
        ADMIN,
        &["impersonations", "show", "imp_1", "--tenant", "t_imp"],
    );
    for line in [
        "session       imp_1",
        "impersonator  admin:ops",
        "impersonated  user:ana",
        "reason        ticket 42",
        "end           2026-01-02T10:20:00.000Z",
        "duration      20m 00s",
        "actions       2",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} in\n{shown}");
    }
    let view = shown.find("settings.view").expect("first action");
    let change = shown.find("settings.change").expect("second action");
    assert!(view < change, "{shown}");
    let v: Value = serde_json::from_str(&ok(
        u,
        ADMIN,
        &["impersonations", "show", "imp_1", "--json"],
    ))
    .unwrap();
    let actions: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["settings.view", "settings.change"]);
    let shown = ok(u, ADMIN, &["impersonations", "show", "imp_2"]);
    assert!(
        shown.lines().any(|l| l == "end           active"),
        "{shown}"
    );
    assert!(shown.lines().any(|l| l == "actions       0"), "{shown}");

    let err = refused(
        u,
        Some(ADMIN),
        &["impersonations", "show", "imp_9", "--tenant", "t_imp"],
    );
    assert!(
        err.starts_with("error: no impersonation session \"imp_9\" in tenant t_imp"),
        "{err}"
    );
    let err = refused(u, None, &["impersonations", "list"]);
    assert!(err.contains("no API key"), "{err}");
    s.stop();
}
