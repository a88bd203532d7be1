//! Alerts through a real server (docs/alerts.md): rules from the configuration file, delivery
//! to loopback receivers that validate every request (Google Chat against the `chat.v1`
//! discovery document, Slack's Block Kit limits, the webhook signature), failures and recovery,
//! a restart in the middle, the API views, `trailkeep alerts test`, and configurations refused
//! at start.

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use trailkeep_deliver::testkit::{Behaviour, Receiver, ReceiverKind};

const SECRET: &str = "e2e-webhook-secret";

fn config(dir: &Path, chat: &str, slack: &str, hook: &str, extra: &str) -> std::path::PathBuf {
    let f = dir.join("alerts.toml");
    std::fs::write(
        &f,
        format!(
            r#"public_url = "https://audit.example.test"
[alerts]
give_up_after = "1h"

[[alerts.channels]]
name = "ops-chat"
kind = "google_chat"
url = "{chat}"

[[alerts.channels]]
name = "ops-slack"
kind = "slack"
url = "{slack}"

[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{hook}"
secret = "{SECRET}"
timeout = "2s"

[[alerts.rules]]
name = "global-kill"
event_types = ["killswitch.*"]
where = 'payload.scope == "global"'
channels = ["ops-chat", "ops-slack", "hook"]

[[alerts.rules]]
name = "prompts"
event_types = ["prompt.update"]
tenants = ["t_alert"]
channels = ["hook"]
{extra}"#
        ),
    )
    .unwrap();
    f
}

fn kill_global(n: usize) -> Value {
    json!({"event_type": "killswitch.embed.disable", "actor": "admin:ops", "tenant_id": "_global",
           "payload": {"target": "embed", "scope": "global", "reason": format!("incident {n}")}})
}

fn prompt(n: usize) -> Value {
    json!({"event_type": "prompt.update", "actor": "user:ana@t.example", "tenant_id": "t_alert",
           "payload": {"prompt_id": format!("pr_{n}"), "editor": "user:ana@t.example", "reason": "tone",
                       "before": {"prompt_hash": format!("sha256:{}", "0".repeat(64))},
                       "after": {"prompt_hash": format!("sha256:{}", "f".repeat(64))}}})
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post(format!("{url}/v1/events"))
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(ADMIN).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The `n` of each prompt alert a webhook receiver accepted, in arrival order.
fn prompt_numbers(recv: &Receiver) -> Vec<String> {
    recv.received()
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| r.json.as_ref())
        .filter(|v| v["event"]["event_type"] == "prompt.update")
        .map(|v| {
            v["event"]["payload"]["prompt_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn alerts_reach_every_channel_in_order_through_failures_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let chat = Receiver::start(ReceiverKind::GoogleChat);
        let slack = Receiver::start(ReceiverKind::Slack);
        let hook = Receiver::start(ReceiverKind::Webhook {
            secret: SECRET.as_bytes().to_vec(),
        });
        let cfg = config(dir.path(), &chat.url(), &slack.url(), &hook.url(), "");
        let data = dir.path().join("data");
        let cfg_arg = cfg.to_str().unwrap().to_string();
        let server = Server::start_with(&data, &["--config", &cfg_arg], &[]);
        let c = client();

        // A global kill switch reaches all three receivers within 2 s of its receipt.
        let sent = Instant::now();
        let (s, v) = post(&c, &server.url, &kill_global(1)).await;
        assert_eq!(s, 200, "{v}");
        for r in [&chat, &slack, &hook] {
            r.wait_for(1, Duration::from_secs(2)).await;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "{:?}",
            sent.elapsed()
        );
        let card = chat.posted()[0].json.clone().unwrap();
        assert!(
            card["text"]
                .as_str()
                .unwrap()
                .contains("killswitch.embed.disable"),
            "{card}"
        );
        let first = &chat.received()[0];
        assert_eq!(
            first.param("messageReplyOption"),
            Some("REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
        );
        assert!(first.request_id().is_some());
        assert!(
            card.to_string()
                .contains("https://audit.example.test/v1/events/"),
            "the card links to the event: {card}"
        );
        // A kill switch of one tenant does not match the global rule: nothing sent.
        let mut local = kill_global(2);
        local["tenant_id"] = json!("t_alert");
        local["payload"]["scope"] = json!("tenant");
        assert_eq!(post(&c, &server.url, &local).await.0, 200);

        // A refused request (one invalid event) alerts on nothing of it.
        let (s, _) = post(
            &c,
            &server.url,
            &json!([kill_global(3), {"event_type": "Bad"}]),
        )
        .await;
        assert_eq!(s, 422);

        // The webhook fails a few times (500, 429 with Retry-After, a dropped connection),
        // then recovers: every prompt alert arrives, in order.
        hook.script([
            Behaviour::Status(500),
            Behaviour::TooMany {
                retry_after: Some("1".into()),
            },
            Behaviour::Close,
        ]);
        for n in 0..5 {
            assert_eq!(post(&c, &server.url, &prompt(n)).await.0, 200);
        }
        hook.wait_for(6, Duration::from_secs(30)).await;
        assert_eq!(
            prompt_numbers(&hook),
            ["pr_0", "pr_1", "pr_2", "pr_3", "pr_4"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            chat.posted().len(),
            1,
            "only the global kill switch went to chat"
        );

        // The API shows the rules (URLs without their query) and the deliveries.
        let (s, rules) = get(&c, &format!("{}/v1/alerts/rules", server.url)).await;
        assert_eq!(s, 200, "{rules}");
        assert_eq!(rules["rules"].as_array().unwrap().len(), 2);
        assert_eq!(rules["default_rules"], false);
        let text = rules.to_string();
        assert!(!text.contains("token=") && !text.contains(SECRET), "{text}");
        let (s, v) = get(
            &c,
            &format!("{}/v1/alerts?status=delivered&channel=hook", server.url),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let delivered = v["deliveries"].as_array().unwrap();
        assert_eq!(delivered.len(), 6, "{v}");
        assert!(delivered
            .iter()
            .all(|d| d["channel"] == "hook" && d["status"] == "delivered"));
        let hook_channel = v["channels"].as_array().unwrap();
        assert_eq!(hook_channel.len(), 1);
        assert!(hook_channel[0]["retried"].as_u64().unwrap() >= 3, "{v}");
        assert_eq!(
            get(&c, &format!("{}/v1/alerts?status=lost", server.url))
                .await
                .0,
            400
        );
        assert_eq!(
            get(&c, &format!("{}/v1/alerts?channel=nope", server.url))
                .await
                .0,
            404
        );

        // Down across a restart: the webhook fails while events arrive, the server stops,
        // starts again, the webhook recovers: nothing lost, repeats carry the same id.
        hook.script((0..1000).map(|_| Behaviour::Status(503)));
        for n in 5..8 {
            assert_eq!(post(&c, &server.url, &prompt(n)).await.0, 200);
        }
        hook.wait_for_received(hook.received().len() + 2, Duration::from_secs(10))
            .await;
        server.stop();
        hook.clear_script();
        let server = Server::start_with(&data, &["--config", &cfg_arg], &[]);
        let n_before = prompt_numbers(&hook).len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while prompt_numbers(&hook).len() < n_before + 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = prompt_numbers(&hook);
        assert_eq!(
            got,
            ["pr_0", "pr_1", "pr_2", "pr_3", "pr_4", "pr_5", "pr_6", "pr_7"],
            "every alert once, in order"
        );
        for r in [&chat, &slack, &hook] {
            assert!(r.problems().is_empty(), "{:?}", r.problems());
        }
        server.stop();
    });
}

#[test]
fn a_refusing_webhook_leaves_a_dead_letter_and_an_overlong_session_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let chat = Receiver::start(ReceiverKind::GoogleChat);
        let slack = Receiver::start(ReceiverKind::Slack);
        let hook = Receiver::start(ReceiverKind::Webhook {
            secret: SECRET.as_bytes().to_vec(),
        });
        let cfg = config(
            dir.path(),
            &chat.url(),
            &slack.url(),
            &hook.url(),
            r#"
[[alerts.rules]]
name = "impersonation"
event_types = ["impersonation.start"]
channels = ["hook"]

[impersonation]
max_session = "2s"
"#,
        );
        let data = dir.path().join("data");
        let cfg_arg = cfg.to_str().unwrap().to_string();
        let server = Server::start_with(&data, &["--config", &cfg_arg], &[]);
        let c = client();
        // 404 on every try: dead after a few tries, recorded as a sink.alert_failed event.
        hook.script((0..5).map(|_| Behaviour::Status(404)));
        assert_eq!(post(&c, &server.url, &prompt(0)).await.0, 200);
        let deadline = Instant::now() + Duration::from_secs(30);
        let dead = loop {
            let (_, v) = get(&c, &format!("{}/v1/alerts?status=dead", server.url)).await;
            if !v["deliveries"].as_array().unwrap().is_empty() || Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(dead["deliveries"][0]["channel"], "hook", "{dead}");
        assert_eq!(dead["deliveries"][0]["last_status"], 404, "{dead}");
        let (_, v) = get(
            &c,
            &format!(
                "{}/v1/events?tenant_id=_global&event_type=sink.alert_failed",
                server.url
            ),
        )
        .await;
        let failed = v["events"].as_array().unwrap();
        assert_eq!(failed.len(), 1, "{v}");
        assert_eq!(failed[0]["payload"]["channel"], "hook");
        // Clients cannot write sink.* events themselves.
        let mut forged = prompt(1);
        forged["event_type"] = json!("sink.alert_failed");
        assert_eq!(post(&c, &server.url, &forged).await.0, 422);
        // The next alert goes through.
        assert_eq!(post(&c, &server.url, &prompt(2)).await.0, 200);
        hook.wait_for(1, Duration::from_secs(10)).await;

        // An impersonation session left open past max_session: its start alerts, and so
        // does the overdue session, once, even across a restart.
        let start = json!({"event_type": "impersonation.start", "actor": "admin:ops",
            "tenant_id": "t_alert", "payload": {"impersonator": "admin:ops",
            "impersonated": "user:bo", "session_id": "imp_long", "reason": "ticket"}});
        assert_eq!(post(&c, &server.url, &start).await.0, 200);
        let overdue = |hook: &Receiver| {
            hook.received()
                .iter()
                .filter(|r| r.accepted())
                .filter_map(|r| r.json.clone())
                .filter(|v| v["note"].as_str().is_some_and(|n| n.contains("imp_long")))
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while overdue(&hook) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(overdue(&hook), 1, "the overdue alert arrives");
        server.stop();
        let server = Server::start_with(&data, &["--config", &cfg_arg], &[]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(overdue(&hook), 1, "raised once, also across a restart");
        assert!(hook.problems().is_empty(), "{:?}", hook.problems());
        server.stop();
    });
}

#[test]
fn alerts_test_sends_through_a_configured_channel() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let chat = Receiver::start(ReceiverKind::GoogleChat);
        let slack = Receiver::start(ReceiverKind::Slack);
        let hook = Receiver::start(ReceiverKind::Webhook {
            secret: SECRET.as_bytes().to_vec(),
        });
        let cfg = config(dir.path(), &chat.url(), &slack.url(), &hook.url(), "");
        let cfg_arg = cfg.to_str().unwrap().to_string();
        for (name, recv) in [("ops-chat", &chat), ("ops-slack", &slack), ("hook", &hook)] {
            let cfg_arg = cfg_arg.clone();
            let name = name.to_string();
            let out = tokio::task::spawn_blocking(move || {
                trailkeep()
                    .args(["alerts", "test", &name, "--config", &cfg_arg])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "{err}");
            assert!(
                !err.contains("token=t"),
                "no credential in the output: {err}"
            );
            recv.wait_for(1, Duration::from_secs(5)).await;
            assert!(recv.problems().is_empty(), "{:?}", recv.problems());
        }
        // A failing receiver and an unknown channel: exit 1 with the reason.
        hook.script([Behaviour::Status(500)]);
        let cfg2 = cfg_arg.clone();
        let out = tokio::task::spawn_blocking(move || {
            trailkeep()
                .args(["alerts", "test", "hook", "--config", &cfg2])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("500"));
        let out = trailkeep()
            .args(["alerts", "test", "nope", "--config", &cfg_arg])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nope") && err.contains("ops-chat"), "{err}");
    });
}

/// `serve` refuses a bad alert configuration before it listens, naming what is wrong.
#[test]
fn bad_alert_configurations_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "s"
"#;
    let cases = [
        (
            format!("{base}[[alerts.rules]]\nname = \"r\"\nwhere = 'payload.scope == '\nchannels = [\"hook\"]\n"),
            "at ",
        ),
        (
            format!("{base}[[alerts.rules]]\nname = \"r\"\nchannels = [\"chat\"]\n"),
            "alerts.rules[r].channels",
        ),
        (
            "[[alerts.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n".to_string(),
            "secret",
        ),
        (
            "[[alerts.channels]]\nname = \"c\"\nkind = \"google_chat\"\nurl = \"http://127.0.0.1:9/hook\"\n".to_string(),
            "spaces",
        ),
        (format!("{base}[impersonation]\nmax_session = \"soon\"\n"), "impersonation.max_session"),
        (format!("public_url = \"ftp://x\"\n{base}"), "public_url"),
        (format!("{base}[[alerts.rules]]\nname = \"r\"\nchannels = [\"hook\"]\ncolour = \"red\"\n"), "colour"),
    ];
    for (body, expect) in cases {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, &body).unwrap();
        let out = trailkeep()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&f)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body}");
        assert!(err.contains(expect), "{body}\n---\n{err}");
    }
}
