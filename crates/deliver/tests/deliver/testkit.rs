//! The test receivers themselves: they take what the real services take, report what they
//! refuse, and answer as scripted.

use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trailkeep_deliver::testkit::discovery::{Schemas, CHAT_CREATE_MESSAGE};
use trailkeep_deliver::testkit::google_chat::MAX_MESSAGE_BYTES;
use trailkeep_deliver::testkit::{signature, Answer, Behaviour, Receiver, ReceiverKind};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

async fn post_json(url: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("the receiver answers")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

/// A card message as an alert would send it: header, a section of decorated text, a button.
fn card_message() -> Value {
    json!({
        "text": "policy.denied in acme",
        "cardsV2": [{
            "cardId": "alert",
            "card": {
                "header": { "title": "policy.denied", "subtitle": "tenant acme", "imageType": "CIRCLE" },
                "sections": [{
                    "header": "Event",
                    "collapsible": true,
                    "uncollapsibleWidgetsCount": 2,
                    "widgets": [
                        { "decoratedText": { "topLabel": "actor", "text": "alice", "wrapText": true } },
                        { "textParagraph": { "text": "<b>seq</b> 42", "maxLines": 3 } },
                        { "buttonList": { "buttons": [{
                            "text": "Open",
                            "onClick": { "openLink": { "url": "https://trailkeep.example/events/42" } }
                        }] } }
                    ]
                }]
            }
        }],
        "thread": { "threadKey": "acme-policy" }
    })
}

fn chat_url(receiver: &Receiver, extra: &str) -> String {
    format!("{}{extra}", receiver.url())
}

#[tokio::test]
async fn chat_takes_a_text_message_and_answers_with_its_name() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    let url = chat_url(
        &chat,
        "&requestId=r1&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
    );
    let response = post_json(
        &url,
        &json!({ "text": "hello", "thread": { "threadKey": "k" } }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("a JSON answer");
    assert!(answer["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("spaces/AAAA/messages/")));
    assert!(answer["thread"]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("spaces/AAAA/threads/")));
    assert_eq!(answer["text"], "hello");

    let got = chat.wait_for(1, Duration::from_secs(5)).await;
    assert!(chat.problems().is_empty(), "{:#?}", chat.problems());
    assert_eq!(got[0].request_id(), Some("r1"));
    assert_eq!(got[0].space(), Some("AAAA"));
    assert_eq!(
        got[0].json.as_ref().map(|j| j["text"].clone()),
        Some(json!("hello"))
    );
}

#[tokio::test]
async fn chat_takes_a_card_message_on_another_space() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    let response = post_json(&chat.url_for_space("BBBB"), &card_message()).await;
    assert_eq!(response.status(), 200, "{:#?}", chat.problems());
    assert!(chat.problems().is_empty(), "{:#?}", chat.problems());
    assert_eq!(chat.received()[0].space(), Some("BBBB"));
}

#[tokio::test]
async fn chat_refuses_unknown_fields_with_their_paths() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    let mut message = card_message();
    message["colour"] = json!("red");
    message["cardsV2"][0]["card"]["header"]["titel"] = json!("typo");
    message["cards_v2"] = json!([]);
    let response = post_json(&chat.url(), &message).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");

    let problems = chat.problems();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems
        .iter()
        .any(|p| p.contains("$.colour: unknown field of Message")));
    assert!(problems.iter().any(|p| p
        .contains("$.cardsV2[0].card.header.titel: unknown field of GoogleAppsCardV1CardHeader")));
    assert!(problems
        .iter()
        .any(|p| p.contains("$.cards_v2") && p.contains("`cardsV2`")));
    assert!(chat.accepted().is_empty());
}

#[tokio::test]
async fn chat_refuses_wrong_types_enums_output_only_and_empty_messages() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    let mut message = card_message();
    message["text"] = json!(5);
    let section = &mut message["cardsV2"][0]["card"]["sections"][0];
    section["collapsible"] = json!("yes");
    section["uncollapsibleWidgetsCount"] = json!("2");
    section["widgets"][1]["textParagraph"]["maxLines"] = json!(1.5);
    message["cardsV2"][0]["card"]["header"]["imageType"] = json!("TRIANGLE");
    message["thread"] = json!(["not", "an", "object"]);
    message["argumentText"] = json!("set by Google");
    message["cards"] = json!([]);
    message["createTime"] = json!("yesterday");
    post_json(&chat.url(), &message).await;
    let problems = chat.problems();
    for expected in [
        "$.text: expected a string, got a number",
        "$.cardsV2[0].card.sections[0].collapsible: expected true or false, got a string",
        "$.cardsV2[0].card.sections[0].uncollapsibleWidgetsCount: expected an int32 number, got a string",
        "$.cardsV2[0].card.sections[0].widgets[1].textParagraph.maxLines: expected an int32, got 1.5",
        "$.cardsV2[0].card.header.imageType: \"TRIANGLE\" is not one of SQUARE, CIRCLE",
        "$.thread: expected an object (Thread), got an array",
        "$.argumentText: output only",
        "$.cards: deprecated",
        "$.createTime: expected an RFC 3339 timestamp",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "no {expected:?} in {problems:#?}");
    }
    assert_eq!(problems.len(), 9, "{problems:#?}");

    let empty = Receiver::start(ReceiverKind::GoogleChat);
    let response = post_json(
        &empty.url(),
        &json!({ "text": "", "thread": { "threadKey": "k" } }),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(
        empty.problems()[0].contains("needs `text` or `cardsV2`"),
        "{:#?}",
        empty.problems()
    );
}

#[tokio::test]
async fn chat_checks_the_query_against_the_create_method() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    let base = chat.url();
    let addr = chat.addr();
    let urls = [
        format!("{base}&messageReplyOption=SOMETIMES"),
        format!("{base}&threadKey=acme"),
        format!("{base}&colour=red"),
        format!("{base}&requestId=a&requestId=b"),
        format!("http://{addr}/v1/spaces/AAAA/messages?key=k"),
        format!("http://{addr}/v1/spaces/AAAA/threads?key=k&token=t"),
    ];
    for url in &urls {
        let response = post_json(url, &json!({ "text": "hi" })).await;
        assert_eq!(response.status(), 400, "{url}");
    }
    let received = chat.received();
    let expect = [
        "query parameter `messageReplyOption`: \"SOMETIMES\" is not one of MESSAGE_REPLY_OPTION_UNSPECIFIED",
        "query parameter `threadKey`: deprecated",
        "query parameter `colour`: unknown to chat.spaces.messages.create",
        "query parameter `requestId`: given more than once",
        "query parameter `token`: missing",
        "path /v1/spaces/AAAA/threads: not /v1/spaces/{space}/messages",
    ];
    for (r, expected) in received.iter().zip(expect) {
        assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
        assert!(
            r.problems[0].contains(expected),
            "{:#?} lacks {expected:?}",
            r.problems
        );
    }

    // Every parameter the method declares, with allowed values, passes.
    let query: Vec<(String, String)> = [
        ("key", "k"),
        ("requestId", "r"),
        ("messageId", "client-x"),
        ("messageReplyOption", "REPLY_MESSAGE_OR_FAIL"),
        (
            "createMessageNotificationOptions.notificationType",
            "NOTIFICATION_TYPE_SILENT",
        ),
        ("prettyPrint", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(
        Schemas::chat().validate_query(CHAT_CREATE_MESSAGE, &query),
        Vec::<String>::new()
    );
    let bad_bool = vec![("prettyPrint".to_owned(), "maybe".to_owned())];
    assert_eq!(
        Schemas::chat()
            .validate_query(CHAT_CREATE_MESSAGE, &bad_bool)
            .len(),
        1
    );
}

#[tokio::test]
async fn chat_refuses_a_message_over_32000_bytes_and_a_wrong_content_type() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    let overhead = json!({ "text": "" }).to_string().len();
    let fits = json!({ "text": "a".repeat(MAX_MESSAGE_BYTES - overhead) });
    let over = json!({ "text": "a".repeat(MAX_MESSAGE_BYTES - overhead + 1) });
    assert_eq!(post_json(&chat.url(), &fits).await.status(), 200);
    assert_eq!(post_json(&chat.url(), &over).await.status(), 400);
    let problems = chat.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("body of 32001 bytes"), "{problems:#?}");

    let typed = Receiver::start(ReceiverKind::GoogleChat);
    let response = client()
        .post(typed.url())
        .header("content-type", "application/json; charset=UTF-8")
        .body(r#"{"text":"hi"}"#)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let response = client()
        .post(typed.url())
        .header("content-type", "text/plain")
        .body(r#"{"text":"hi"}"#)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 400);
    assert_eq!(typed.problems().len(), 1, "{:#?}", typed.problems());
}

#[tokio::test]
async fn chat_posts_once_per_request_id() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    let mut names = Vec::new();
    for id in [Some("r1"), Some("r1"), Some("r2"), None, None] {
        let url = match id {
            Some(id) => chat_url(&chat, &format!("&requestId={id}")),
            None => chat.url(),
        };
        let answer: Value = post_json(&url, &json!({ "text": "hi" }))
            .await
            .json()
            .await
            .expect("a JSON answer");
        names.push(answer["name"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        names[0], names[1],
        "a repeated requestId answers the same message"
    );
    assert_ne!(names[0], names[2]);
    assert_ne!(names[3], names[4]);
    assert_eq!(chat.accepted().len(), 5);
    let posted = chat.posted();
    let ids: Vec<Option<&str>> = posted.iter().map(|r| r.request_id()).collect();
    assert_eq!(ids, [Some("r1"), Some("r2"), None, None]);
}

#[tokio::test]
async fn scripted_failures_are_answered_in_order_then_ok_again() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    chat.script([
        Behaviour::Status(500),
        Behaviour::TooMany {
            retry_after: Some("7".into()),
        },
        Behaviour::TooMany { retry_after: None },
    ]);
    let body = json!({ "text": "hi" });
    let first = post_json(&chat.url(), &body).await;
    assert_eq!(first.status(), 500);
    let error: Value = first.json().await.expect("a JSON error");
    assert_eq!(error["error"]["status"], "INTERNAL");
    let second = post_json(&chat.url(), &body).await;
    assert_eq!(second.status(), 429);
    assert_eq!(
        second.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"7"[..])
    );
    let third = post_json(&chat.url(), &body).await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().get("retry-after").is_none());
    assert_eq!(post_json(&chat.url(), &body).await.status(), 200);
    assert_eq!(post_json(&chat.url(), &body).await.status(), 200);

    let answers: Vec<Option<Answer>> = chat.received().iter().map(|r| r.answer).collect();
    let expected = [500, 429, 429, 200, 200].map(|s| Some(Answer::Status(s)));
    assert_eq!(answers, expected);
    assert_eq!(chat.wait_for(2, Duration::from_secs(5)).await.len(), 2);
    assert!(chat.problems().is_empty(), "{:#?}", chat.problems());
}

#[tokio::test]
async fn a_hung_request_times_the_sender_out_and_is_answered_later() {
    let hook = Receiver::start(ReceiverKind::Slack);
    hook.script([Behaviour::Hang(Duration::from_millis(1500))]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("a client");
    let error = impatient
        .post(hook.url())
        .json(&json!({ "text": "hi" }))
        .send()
        .await
        .expect_err("the receiver hangs");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(hook.received()[0].answer, None, "still hanging");
    assert_eq!(
        hook.received()[0].behaviour,
        Behaviour::Hang(Duration::from_millis(1500))
    );

    // The late answer counts: the service acted on the request.
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].answer, Some(Answer::Status(200)));
    assert!(got[0].at.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn a_closed_connection_fails_the_request_then_the_receiver_answers_again() {
    let hook = Receiver::start(ReceiverKind::Webhook {
        secret: b"s3cret".to_vec(),
    });
    hook.script([Behaviour::Close]);
    let client = client();
    let body = br#"{"event":"policy.denied"}"#;
    let send = || {
        client
            .post(hook.url())
            .header("content-type", "application/json")
            .header("x-trailkeep-delivery", "d1")
            .header(
                "x-trailkeep-signature",
                signature::sign(b"s3cret", now(), body),
            )
            .body(&body[..])
            .send()
    };
    let error = send().await.expect_err("the connection is dropped");
    assert!(!error.is_timeout(), "{error}");
    assert_eq!(hook.received()[0].answer, Some(Answer::Closed));
    assert_eq!(send().await.expect("an answer").status(), 200);
    assert_eq!(hook.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    assert!(hook.problems().is_empty(), "{:#?}", hook.problems());
}

#[tokio::test]
async fn webhook_signatures_are_checked_from_the_documented_format() {
    let secret = b"s3cret".to_vec();
    let hook = Receiver::start(ReceiverKind::Webhook {
        secret: secret.clone(),
    });
    let client = client();
    let body = br#"{"event":{"seq":42}}"#;
    let send = |signature: String, delivery: Option<&'static str>| {
        let mut request = client
            .post(hook.url())
            .header("content-type", "application/json")
            .header("x-trailkeep-signature", signature)
            .body(&body[..]);
        if let Some(d) = delivery {
            request = request.header("x-trailkeep-delivery", d);
        }
        request.send()
    };
    let t = now();
    // HMAC-SHA256 computed here by hand from the format, not by the module under test.
    let good = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&secret).expect("a key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    };
    assert_eq!(good, signature::sign(&secret, t, body));

    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        send(good.clone(), Some("d1")).await.map(status).ok(),
        Some(200)
    );
    let wrong_key = signature::sign(b"other", t, body);
    assert_eq!(
        send(wrong_key, Some("d2")).await.map(status).ok(),
        Some(400)
    );
    let old = signature::sign(&secret, t - 301, body);
    assert_eq!(send(old, Some("d3")).await.map(status).ok(), Some(400));
    assert_eq!(send(good.clone(), None).await.map(status).ok(), Some(400));
    assert_eq!(
        send("v1=00".into(), Some("d5")).await.map(status).ok(),
        Some(400)
    );

    let received = hook.received();
    assert!(
        received[0].problems.is_empty(),
        "{:#?}",
        received[0].problems
    );
    assert_eq!(received[0].header("X-Trailkeep-Delivery"), Some("d1"));
    let only = |i: usize, expected: &str| {
        assert_eq!(received[i].problems.len(), 1, "{:#?}", received[i].problems);
        assert!(
            received[i].problems[0].contains(expected),
            "{:#?}",
            received[i].problems
        );
    };
    only(1, "no v1 matches");
    only(2, "timestamp");
    only(3, "X-Trailkeep-Delivery: missing");
    only(4, "no t=");

    // A timestamp inside the tolerance, either way, is fine.
    assert!(
        signature::verify(&secret, &signature::sign(&secret, t + 299, body), body, t).is_empty()
    );
    assert!(
        signature::verify(&secret, &signature::sign(&secret, t - 299, body), body, t).is_empty()
    );
    // A signature over another body does not verify.
    assert_eq!(signature::verify(&secret, &good, b"{}", t).len(), 1);
}

#[tokio::test]
async fn slack_checks_blocks_and_their_limits() {
    let slack = Receiver::start(ReceiverKind::Slack);
    let good = json!({
        "text": "policy.denied in acme",
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": "policy.denied", "emoji": true } },
            { "type": "section", "text": { "type": "mrkdwn", "text": "*alice* was denied" },
              "fields": [{ "type": "mrkdwn", "text": "*tenant*\nacme" }] },
            { "type": "context", "elements": [{ "type": "mrkdwn", "text": "seq 42" }] },
            { "type": "divider" },
            { "type": "actions", "elements": [{ "type": "button",
              "text": { "type": "plain_text", "text": "Open" }, "url": "https://trailkeep.example/e/42" }] }
        ]
    });
    let response = post_json(&slack.url(), &good).await;
    assert_eq!(response.status(), 200, "{:#?}", slack.problems());
    assert_eq!(response.text().await.ok().as_deref(), Some("ok"));
    assert!(slack.problems().is_empty(), "{:#?}", slack.problems());

    let fields: Vec<Value> = (0..11)
        .map(|i| json!({ "type": "mrkdwn", "text": format!("f{i}") }))
        .collect();
    let bad = json!({
        "blocks": [
            { "type": "header", "text": { "type": "mrkdwn", "text": "h".repeat(151) } },
            { "type": "section", "fields": fields },
            { "type": "section", "text": { "type": "mrkdwn", "text": "s".repeat(3001) } },
            { "type": "table" },
            { "type": "divider", "text": "no" }
        ]
    });
    let response = post_json(&slack.url(), &bad).await;
    assert_eq!(response.status(), 400);
    let problems = slack.problems();
    for expected in [
        "$.text: missing",
        "$.blocks[0].text.type: must be plain_text",
        "$.blocks[0].text.text: 151 characters, Slack takes at most 150",
        "$.blocks[1].fields: 11 fields, Slack takes at most 10",
        "$.blocks[2].text.text: 3001 characters, Slack takes at most 3000",
        "$.blocks[3].type: \"table\" is not one of",
        "$.blocks[4].text: unknown field of a divider",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "no {expected:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 7, "{problems:#?}");
}

#[tokio::test]
async fn wait_for_panics_with_what_it_got() {
    let chat = Receiver::start(ReceiverKind::GoogleChat);
    chat.script([Behaviour::Status(503)]);
    post_json(&chat.url(), &json!({ "text": "hi" })).await;
    let waiting = tokio::spawn(async move {
        chat.wait_for(1, Duration::from_millis(300)).await;
    });
    let message = match waiting.await {
        Err(e) if e.is_panic() => e
            .into_panic()
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
        other => panic!(
            "wait_for returned instead of panicking: {:?}",
            other.is_ok()
        ),
    };
    assert!(
        message.contains("expected 1 requests accepted (2xx)"),
        "{message}"
    );
    assert!(
        message.contains("Status(503)") && message.contains("-> 503"),
        "{message}"
    );
}

/// The validator on its own, with a small discovery document exercising what the Chat
/// schema does not: maps, int64 and byte strings.
#[test]
fn the_validator_follows_the_discovery_types() {
    let doc = json!({
        "schemas": {
            "Thing": {
                "id": "Thing",
                "type": "object",
                "properties": {
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                    "parts": { "type": "object", "additionalProperties": { "$ref": "Part" } },
                    "size": { "type": "string", "format": "int64" },
                    "count": { "type": "integer", "format": "uint32" },
                    "blob": { "type": "string", "format": "byte" },
                    "ratio": { "type": "number", "format": "double" },
                    "tags": { "type": "array", "items": { "type": "string", "enum": ["A", "B"] } }
                }
            },
            "Part": { "id": "Part", "type": "object", "properties": { "n": { "type": "integer", "format": "int32" } } }
        }
    });
    let schemas = Schemas::from_discovery(&doc.to_string()).expect("a document");
    let good = json!({
        "labels": { "a": "x" },
        "parts": { "p": { "n": 1 } },
        "size": "9007199254740993",
        "count": 4294967295u32,
        "blob": "aGk=",
        "ratio": "NaN",
        "tags": ["A", "B"]
    });
    assert_eq!(schemas.validate("Thing", &good), Vec::<String>::new());
    assert_eq!(
        schemas.validate("Thing", &json!({ "size": 12 })),
        Vec::<String>::new()
    );

    let bad = json!({
        "labels": { "a": 1, "b": null },
        "parts": { "p": { "n": 1, "m": 2 } },
        "size": "12.5",
        "count": -1,
        "blob": "not base64!",
        "ratio": true,
        "tags": ["C", null]
    });
    let problems = schemas.validate("Thing", &bad);
    for expected in [
        "$.labels[\"a\"]: expected a string, got a number",
        "$.labels[\"b\"]: null is not allowed as a map value",
        "$.parts[\"p\"].m: unknown field of Part",
        "$.size: expected an int64 as a decimal string",
        "$.count: -1 is out of range for uint32",
        "$.blob: expected base64",
        "$.ratio: expected a number, got a boolean",
        "$.tags[0]: \"C\" is not one of A, B",
        "$.tags[1]: null is not allowed in an array",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "no {expected:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 9, "{problems:#?}");
    assert!(Schemas::from_discovery("{}").is_err());
}

#[test]
fn the_vendored_chat_schema_is_the_documented_revision() {
    let chat = Schemas::chat();
    assert_eq!(chat.revision(), "20261107");
    // The schema is complete enough to resolve every $ref of a full message.
    assert_eq!(
        chat.validate("Message", &card_message()),
        Vec::<String>::new()
    );
    assert_eq!(chat.validate("NoSuchType", &json!({})).len(), 1);
}
