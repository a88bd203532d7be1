//! `verify --url`: audit a live server against its own signed checkpoints and against the
//! checkpoints an auditor kept from earlier runs.

use super::frontier::Frontier;
use super::leaf::parse_event;
use super::{event_label, load_verifier, split_notes, split_origin, Report, VerifyArgs};
use crate::client::{Client, Refused};
use crate::ServerArgs;
use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trailkeep_tlog::hash::{decode_hash, encode_hash};
use trailkeep_tlog::{open_checkpoint, verify_consistency, Checkpoint, Hash, Verifier, EMPTY_ROOT};

/// Events per listing request (the API's maximum).
const PAGE: u64 = 1000;
/// Leaf hashes per `/leaves` request (the API's maximum).
const LEAVES_PAGE: u64 = 10_000;
/// How long to wait for a tenant's first checkpoint (they are signed at most once per second).
const CHECKPOINT_WAIT: Duration = Duration::from_secs(3);

/// An earlier checkpoint the auditor kept, opened with the log key.
struct Saved {
    label: String,
    cp: Checkpoint,
}

pub fn run(url: &str, args: &VerifyArgs, report: &mut Report) -> Result<()> {
    let client = Client::new(&ServerArgs {
        url: url.to_string(),
        key: args.key.clone(),
    })?;
    let pinned = args.public_key.as_deref().map(load_verifier).transpose()?;
    // Read every saved checkpoint before anything is written by --save-checkpoint.
    let files = read_checkpoint_files(&args.checkpoints)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(audit(&client, pinned, files, args, report))
}

/// (label, text) of every `--checkpoint` file; a directory contributes its `*.txt` files.
fn read_checkpoint_files(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        let mut list: Vec<PathBuf> = if meta.is_dir() {
            std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "txt"))
                .collect()
        } else {
            vec![p.clone()]
        };
        list.sort();
        for f in list {
            let text = std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            files.push((f.display().to_string(), text));
        }
    }
    Ok(files)
}

fn is_status(e: &anyhow::Error, status: u16) -> bool {
    e.downcast_ref::<Refused>()
        .is_some_and(|r| r.status == status)
}

/// The server's message when it refused because its stored data failed an integrity check
/// (codes `corrupt` and `quarantined`).
fn integrity_refusal(e: &anyhow::Error) -> Option<String> {
    let r = e.downcast_ref::<Refused>()?;
    let code = r.envelope()?.get("code")?.as_str()?.to_string();
    matches!(code.as_str(), "corrupt" | "quarantined").then(|| r.message())
}

async fn get(client: &Client, path: &str) -> Result<Vec<u8>> {
    client.send(reqwest::Method::GET, path, None, None).await
}

async fn audit(
    client: &Client,
    pinned: Option<Verifier>,
    files: Vec<(String, String)>,
    args: &VerifyArgs,
    report: &mut Report,
) -> Result<()> {
    let vkey = get(client, "/v1/public-key")
        .await
        .context("fetching the log's public key (GET /v1/public-key)")?;
    let vkey = String::from_utf8_lossy(&vkey).trim().to_string();
    let verifier = match Verifier::from_vkey(&vkey) {
        Ok(v) => v,
        Err(e) => {
            report.fail(format!("the server's public key {vkey:?}: {e}"));
            return Ok(());
        }
    };
    if let Some(p) = pinned {
        if p != verifier {
            report.fail(format!(
                "the server's public key {vkey} is not the key you gave ({}): its checkpoints \
                 prove nothing about the log you trust",
                p.to_vkey()
            ));
            return Ok(());
        }
    }

    // Earlier checkpoints, by tenant.
    let mut saved: BTreeMap<String, Vec<Saved>> = BTreeMap::new();
    for (file, text) in files {
        let notes = split_notes(&text);
        if notes.is_empty() {
            report.fail(format!(
                "checkpoint file {file}: holds no signed checkpoint"
            ));
            continue;
        }
        let many = notes.len() > 1;
        for (k, note) in notes.iter().enumerate() {
            let label = if many {
                format!("{file} (note {})", k + 1)
            } else {
                file.clone()
            };
            match open_checkpoint(note, &verifier) {
                Err(e) => report.fail(format!("checkpoint {label}: {e}")),
                Ok(cp) => match split_origin(&cp.origin) {
                    None => report.fail(format!(
                        "checkpoint {label}: origin {:?} is not trailkeep/<log>/<tenant>",
                        cp.origin
                    )),
                    Some((_, t)) => saved
                        .entry(t.to_string())
                        .or_default()
                        .push(Saved { label, cp }),
                },
            }
        }
    }

    let mut tenants: Vec<String> = if args.tenant.is_empty() {
        #[derive(Deserialize)]
        struct Tenants {
            tenants: Vec<TenantRow>,
        }
        #[derive(Deserialize)]
        struct TenantRow {
            tenant_id: String,
        }
        let body = get(client, "/v1/tenants")
            .await
            .context("listing tenants (GET /v1/tenants)")?;
        let list: Tenants =
            serde_json::from_slice(&body).context("the tenant list is not the expected JSON")?;
        list.tenants.into_iter().map(|t| t.tenant_id).collect()
    } else {
        if let Some(bad) = args
            .tenant
            .iter()
            .find(|t| !trailkeep_core::validate::is_tenant_id(t))
        {
            anyhow::bail!("--tenant {bad:?} is not a valid tenant id");
        }
        args.tenant.clone()
    };
    tenants.extend(saved.keys().cloned());
    tenants.sort();
    tenants.dedup();
    if tenants.is_empty() {
        report.ok("no tenant has a log yet: nothing to verify");
    }

    for tenant in &tenants {
        let kept = saved.remove(tenant).unwrap_or_default();
        if let Some(note) = audit_tenant(client, &verifier, tenant, &kept, report).await? {
            if let Some(dir) = &args.save_checkpoint {
                let path = save_checkpoint(dir, tenant, &note)?;
                eprintln!("saved tenant {tenant}'s checkpoint to {}", path.display());
            }
        }
    }
    Ok(())
}

fn save_checkpoint(dir: &Path, tenant: &str, note: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{tenant}.txt"));
    let tmp = dir.join(format!(".{tenant}.txt.tmp"));
    std::fs::write(&tmp, note).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The tenant's latest signed checkpoint, or why the server gave none. A 404 (no checkpoint
/// yet: they follow new events within a second) is retried for a few seconds.
async fn fetch_checkpoint(client: &Client, tenant: &str) -> Result<Result<String, String>> {
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    loop {
        match get(client, &format!("/v1/tenants/{tenant}/checkpoint")).await {
            Ok(b) => return Ok(Ok(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if is_status(&e, 404) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) if e.downcast_ref::<Refused>().is_some() => {
                return Ok(Err(format!("the server gave no signed checkpoint ({e})")));
            }
            Err(e) => {
                return Err(e.context(format!("fetching tenant {tenant}'s checkpoint")));
            }
        }
    }
}

/// Audits one tenant's log; returns its latest checkpoint note if everything verified.
async fn audit_tenant(
    client: &Client,
    verifier: &Verifier,
    tenant: &str,
    kept: &[Saved],
    report: &mut Report,
) -> Result<Option<String>> {
    let fail = |report: &mut Report, what: String| report.fail(format!("tenant {tenant}: {what}"));
    let note = match fetch_checkpoint(client, tenant).await? {
        Ok(note) => note,
        Err(why) => {
            fail(report, why);
            return Ok(None);
        }
    };
    let cp = match open_checkpoint(&note, verifier) {
        Ok(cp) => cp,
        Err(e) => {
            fail(report, format!("latest checkpoint: {e}"));
            return Ok(None);
        }
    };
    if split_origin(&cp.origin).map(|(_, t)| t) != Some(tenant) {
        fail(
            report,
            format!(
                "latest checkpoint is for log {:?}, not trailkeep/<log>/{tenant}",
                cp.origin
            ),
        );
        return Ok(None);
    }

    // Roots needed at earlier sizes.
    let wanted: BTreeSet<u64> = kept.iter().map(|s| s.cp.size).collect();
    let mut roots: HashMap<u64, Hash> = HashMap::new();
    if wanted.contains(&0) {
        roots.insert(0, EMPTY_ROOT);
    }
    let mut tree = Frontier::new();
    let mut leaves: Vec<Hash> = Vec::with_capacity(cp.size.min(1 << 24) as usize);

    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        events: Vec<&'a RawValue>,
    }
    while tree.size() < cp.size {
        let next = tree.size();
        let body = match get(
            client,
            &format!("/v1/events?tenant_id={tenant}&from_seq={next}&limit={PAGE}"),
        )
        .await
        {
            Ok(b) => b,
            // The server found its own stored data altered: a failed check, not an I/O error.
            Err(e) if integrity_refusal(&e).is_some() => {
                let why = integrity_refusal(&e).unwrap_or_default();
                fail(
                    report,
                    format!("the server cannot serve the events from seq {next}: {why}"),
                );
                return Ok(None);
            }
            Err(e) => {
                return Err(e.context(format!("fetching tenant {tenant}'s events from seq {next}")))
            }
        };
        let page: Page = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                fail(
                    report,
                    format!("the listing of events from seq {next} is not the expected JSON ({e})"),
                );
                return Ok(None);
            }
        };
        if page.events.is_empty() {
            fail(
                report,
                format!(
                    "event seq {next}{} missing: the server lists {next} events but its checkpoint \
                     covers {}",
                    if cp.size - 1 > next {
                        format!("..{} are", cp.size - 1)
                    } else {
                        " is".into()
                    },
                    cp.size
                ),
            );
            return Ok(None);
        }
        for raw in page.events {
            let expected = tree.size();
            if expected == cp.size {
                break;
            }
            let ev = match parse_event(raw.get()) {
                Ok(ev) => ev,
                Err(e) => {
                    fail(
                        report,
                        format!("the event listed where seq {expected} was expected: {e}"),
                    );
                    return Ok(None);
                }
            };
            let label = event_label(ev.seq, &ev.event_id);
            if ev.seq != expected {
                fail(
                    report,
                    format!(
                        "{label} listed where seq {expected} was expected: events missing or out \
                         of order"
                    ),
                );
                return Ok(None);
            }
            if ev.tenant_id != tenant {
                fail(
                    report,
                    format!("{label}: tenant_id is {:?}, not this log's", ev.tenant_id),
                );
                return Ok(None);
            }
            let leaf = match ev.checked_leaf() {
                Ok(l) => l,
                Err(e) => {
                    fail(report, format!("{label}: {e}"));
                    return Ok(None);
                }
            };
            tree.push(leaf);
            leaves.push(leaf);
            if wanted.contains(&tree.size()) {
                roots.insert(tree.size(), tree.root());
            }
        }
    }

    let root = tree.root();
    if root != cp.root {
        let why = localize(client, tenant, &leaves).await;
        fail(
            report,
            format!(
                "rebuilt root {} of events seq 0..{} does not match checkpoint {} root {}: {why}",
                encode_hash(&root),
                cp.size.saturating_sub(1),
                cp.size,
                encode_hash(&cp.root)
            ),
        );
        return Ok(None);
    }
    report.ok(format!(
        "tenant {tenant}: {} events, root {} matches checkpoint {}",
        cp.size,
        encode_hash(&root),
        cp.size
    ));

    let mut all_ok = true;
    for s in kept {
        let m = s.cp.size;
        let proof = if m > 0 && m < cp.size {
            Some(fetch_consistency(client, tenant, m, cp.size).await?)
        } else {
            None
        };
        match check_saved(&s.cp, &cp, roots.get(&m).copied(), proof) {
            Ok(how) => report.ok(format!(
                "tenant {tenant}: checkpoint {} (size {m}) {how}",
                s.label
            )),
            Err(why) => {
                all_ok = false;
                fail(report, format!("checkpoint {} (size {m}): {why}", s.label));
            }
        }
    }
    Ok(all_ok.then_some(note))
}

/// The server's consistency proof from `from` to `to`, or why there is none.
async fn fetch_consistency(
    client: &Client,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Result<Vec<Hash>, String>> {
    #[derive(Deserialize)]
    struct Consistency {
        from: u64,
        to: u64,
        proof: Vec<String>,
    }
    let body = match get(
        client,
        &format!("/v1/tenants/{tenant}/proof/consistency?from={from}&to={to}"),
    )
    .await
    {
        Ok(b) => b,
        Err(e) if e.downcast_ref::<Refused>().is_some() => {
            return Ok(Err(format!(
                "the server gave no consistency proof from {from} to {to} ({e})"
            )))
        }
        Err(e) => return Err(e.context(format!("fetching tenant {tenant}'s consistency proof"))),
    };
    let c: Consistency = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Err(format!(
                "the consistency proof is not the expected JSON ({e})"
            )))
        }
    };
    if c.from != from || c.to != to {
        return Ok(Err(format!(
            "asked for a consistency proof from {from} to {to}, got one from {} to {}",
            c.from, c.to
        )));
    }
    Ok(c.proof
        .iter()
        .map(|h| decode_hash(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the consistency proof: {e}")))
}

/// Checks an earlier, signed checkpoint against the latest one: same log, not larger, equal to
/// the tree rebuilt from the events at its size, and linked by the server's consistency proof
/// (`None` when the sizes need none: 0 or equal). Returns how it was proven, or why not.
fn check_saved(
    saved: &Checkpoint,
    latest: &Checkpoint,
    rebuilt_root: Option<Hash>,
    proof: Option<Result<Vec<Hash>, String>>,
) -> Result<String, String> {
    let (m, n) = (saved.size, latest.size);
    if saved.origin != latest.origin {
        return Err(format!(
            "its origin {:?} is not the latest checkpoint's {:?}",
            saved.origin, latest.origin
        ));
    }
    if m > n {
        return Err(format!(
            "it is larger than the server's latest checkpoint ({n}): the log was truncated or \
             rolled back since"
        ));
    }
    match rebuilt_root {
        Some(r) if r == saved.root => {}
        Some(r) => {
            return Err(format!(
                "its root {} differs from the root {} of the tree rebuilt from the server's \
                 events at size {m}: the log was rewritten since this checkpoint",
                encode_hash(&saved.root),
                encode_hash(&r)
            ))
        }
        None => return Err(format!("no rebuilt tree of size {m} to compare with")),
    }
    if m == 0 || m == n {
        return Ok(format!(
            "is consistent with checkpoint {n} (the rebuilt tree has its root)"
        ));
    }
    let proof = match proof {
        Some(Ok(p)) => p,
        Some(Err(why)) => return Err(why),
        None => return Err(format!("no consistency proof from {m} to {n}")),
    };
    verify_consistency(m, n, &saved.root, &latest.root, &proof).map_err(|e| {
        format!("the server's consistency proof to checkpoint {n} does not verify: {e}")
    })?;
    Ok(format!(
        "is consistent with checkpoint {n} (consistency proof and rebuilt tree)"
    ))
}

/// After a root mismatch: finds the first seq where the server's stored leaves differ from
/// the leaves recomputed from its events, to name the altered event.
async fn localize(client: &Client, tenant: &str, ours: &[Hash]) -> String {
    #[derive(Deserialize)]
    struct Leaves {
        leaves: Vec<String>,
    }
    let total = ours.len() as u64;
    let mut start = 0u64;
    while start < total {
        let end = (start + LEAVES_PAGE).min(total);
        let Ok(body) = get(
            client,
            &format!("/v1/tenants/{tenant}/leaves?start={start}&end={end}"),
        )
        .await
        else {
            break;
        };
        let Ok(page) = serde_json::from_slice::<Leaves>(&body) else {
            break;
        };
        if page.leaves.is_empty() {
            break;
        }
        for (j, b64) in page.leaves.iter().enumerate() {
            let seq = start + j as u64;
            let Some(mine) = ours.get(seq as usize) else {
                break;
            };
            if decode_hash(b64).ok().as_ref() != Some(mine) {
                let id = event_id_at(client, tenant, seq)
                    .await
                    .unwrap_or_else(|| "?".into());
                return format!(
                    "{} is the first event whose leaf differs from the server's tree: the event \
                     and its leaf_hash were altered after it was logged",
                    event_label(seq, &id)
                );
            }
        }
        start += page.leaves.len() as u64;
        if start >= total {
            return "the server's stored leaves equal the recomputed ones, so its tree does not \
                    match the checkpoint it signed"
                .into();
        }
    }
    "events were altered together with their leaf_hash or replaced (the server's leaves could \
     not be compared)"
        .into()
}

async fn event_id_at(client: &Client, tenant: &str, seq: u64) -> Option<String> {
    let body = get(
        client,
        &format!("/v1/events?tenant_id={tenant}&from_seq={seq}&limit=1"),
    )
    .await
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["events"][0]["event_id"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailkeep_tlog::{leaf_hash, prove_consistency, tree_hash, MemoryHashes};

    fn log(n: u32, salt: u8) -> MemoryHashes {
        MemoryHashes::from_leaves(
            (0..n).map(|i| leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat())),
        )
    }

    fn cp(mem: &MemoryHashes, size: u64) -> Checkpoint {
        Checkpoint::new("trailkeep/default/t_1", size, tree_hash(size, mem).unwrap())
    }

    #[test]
    fn consistent_checkpoint_passes() {
        let mem = log(25, 0);
        let latest = cp(&mem, 25);
        for m in [0u64, 1, 7, 8, 24, 25] {
            let saved = cp(&mem, m);
            let proof = (m > 0 && m < 25).then(|| Ok(prove_consistency(m, 25, &mem).unwrap()));
            let got = check_saved(&saved, &latest, Some(saved.root), proof);
            assert!(got.is_ok(), "{m}: {got:?}");
        }
    }

    #[test]
    fn inconsistent_checkpoints_fail() {
        let mem = log(25, 0);
        let latest = cp(&mem, 25);
        let other = log(10, 1);
        // A forked log: the saved root is not the rebuilt tree's.
        let forked = cp(&other, 10);
        let rebuilt = tree_hash(10, &mem).unwrap();
        let proof = Some(Ok(prove_consistency(10, 25, &mem).unwrap()));
        assert!(check_saved(&forked, &latest, Some(rebuilt), proof.clone()).is_err());
        // Even if the rebuilt root matched, the server's proof must link the two roots.
        assert!(check_saved(&forked, &latest, Some(forked.root), proof).is_err());
        // A saved checkpoint larger than the latest: rolled back.
        let bigger = cp(&log(30, 0), 30);
        assert!(check_saved(&bigger, &latest, None, None).is_err());
        // Another log's checkpoint.
        let mut foreign = cp(&mem, 10);
        foreign.origin = "trailkeep/default/t_2".into();
        assert!(check_saved(&foreign, &latest, Some(foreign.root), None).is_err());
        // A proof the server refused to give.
        let saved = cp(&mem, 10);
        assert!(check_saved(&saved, &latest, Some(saved.root), Some(Err("404".into()))).is_err());
        // A tampered proof.
        let mut p = prove_consistency(10, 25, &mem).unwrap();
        p[0][0] ^= 1;
        assert!(check_saved(&saved, &latest, Some(saved.root), Some(Ok(p))).is_err());
    }

    /// A misbehaving server: serves a log whose listing, proofs or leaves can be altered.
    mod fake {
        use super::super::*;
        use crate::verify::testlog::{event, signer, TestLog, TENANT};
        use axum::extract::{Query, State};
        use axum::routing::get;
        use axum::{Json, Router};
        use std::sync::Arc;
        use trailkeep_tlog::prove_consistency;

        pub struct Fake {
            /// What `/v1/events?from_seq` lists.
            pub listed: Vec<String>,
            pub log: TestLog,
            pub size: u64,
            pub tamper_proof: bool,
        }

        type Q = Query<HashMap<String, String>>;

        fn num(q: &Q, k: &str) -> u64 {
            q.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
        }

        pub fn serve(fake: Fake) -> String {
            let fake = Arc::new(fake);
            let app =
                Router::new()
                    .route(
                        "/v1/public-key",
                        get(|| async { signer().verifier().to_vkey() }),
                    )
                    .route(
                        "/v1/tenants",
                        get(|| async {
                            Json(serde_json::json!({"tenants": [{"tenant_id": TENANT}]}))
                        }),
                    )
                    .route(
                        "/v1/tenants/t_1/checkpoint",
                        get(|State(f): State<Arc<Fake>>| async move {
                            f.log.checkpoint(f.size, &signer())
                        }),
                    )
                    .route(
                        "/v1/events",
                        get(|State(f): State<Arc<Fake>>, q: Q| async move {
                            let from = num(&q, "from_seq") as usize;
                            let to = (from + num(&q, "limit") as usize).min(f.listed.len());
                            let evs = f.listed.get(from..to).unwrap_or_default().join(",");
                            format!(r#"{{"events":[{evs}],"next_cursor":null}}"#)
                        }),
                    )
                    .route(
                        "/v1/tenants/t_1/proof/consistency",
                        get(|State(f): State<Arc<Fake>>, q: Q| async move {
                            let (from, to) = (num(&q, "from"), num(&q, "to"));
                            let mut proof = prove_consistency(from, to, &f.log.tree).unwrap();
                            if f.tamper_proof {
                                proof[0][0] ^= 1;
                            }
                            let proof: Vec<String> = proof.iter().map(encode_hash).collect();
                            Json(serde_json::json!({"from": from, "to": to, "proof": proof}))
                        }),
                    )
                    .route(
                        "/v1/tenants/t_1/leaves",
                        get(|State(f): State<Arc<Fake>>, q: Q| async move {
                            let (start, end) = (num(&q, "start"), num(&q, "end").min(f.size));
                            let leaves: Vec<String> = (start..end)
                                .map(|i| encode_hash(&event(TENANT, i).leaf_hash))
                                .collect();
                            Json(serde_json::json!({"start": start, "end": end, "leaves": leaves}))
                        }),
                    )
                    .with_state(fake);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send(l.local_addr().unwrap()).unwrap();
                    axum::serve(l, app).await.unwrap();
                });
            });
            format!("http://{}", rx.recv().unwrap())
        }

        pub fn audit(fake: Fake, checkpoints: Vec<PathBuf>) -> Report {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let url = serve(fake);
            let args = VerifyArgs {
                path: None,
                event: None,
                public_key: Some(signer().verifier().to_vkey()),
                url: Some(url.clone()),
                key: Some("k".into()),
                tenant: vec![],
                checkpoints,
                save_checkpoint: None,
            };
            let mut report = Report::default();
            run(&url, &args, &mut report).unwrap();
            report
        }
    }

    use crate::verify::testlog::{event, signer, TestLog};
    use fake::{audit, Fake};

    fn honest(n: u64) -> Fake {
        let log = TestLog::new(n);
        Fake {
            listed: log.lines.clone(),
            log,
            size: n,
            tamper_proof: false,
        }
    }

    fn saved_at(dir: &Path, size: u64, n: u64) -> PathBuf {
        let path = dir.join(format!("saved-{size}.txt"));
        std::fs::write(&path, TestLog::new(n).checkpoint(size, &signer())).unwrap();
        path
    }

    #[test]
    fn fake_server_honest() {
        let dir = tempfile::tempdir().unwrap();
        let r = audit(honest(2500), vec![saved_at(dir.path(), 1000, 2500)]);
        assert!(!r.failed(), "{:?}", r.lines);
        assert!(
            r.lines[0].starts_with("ok: tenant t_1: 2500 events"),
            "{:?}",
            r.lines
        );
        assert!(
            r.lines[1].contains("(size 1000) is consistent with checkpoint 2500"),
            "{:?}",
            r.lines
        );
    }

    #[test]
    fn fake_server_altered_event_is_named_from_the_leaves() {
        let mut f = honest(30);
        // Event 6 altered in storage with its leaf_hash recomputed (the salt is public).
        let mut e = event("t_1", 6);
        e.actor = "user:mallory@example.com".into();
        let json = trailkeep_core::render::event_json(&e);
        e.leaf_hash = super::super::leaf::parse_event(&json)
            .unwrap()
            .recompute_leaf()
            .unwrap();
        f.listed[6] = trailkeep_core::render::event_json(&e);
        let r = audit(f, vec![]);
        assert!(r.failed());
        assert!(
            r.lines[0].contains(&format!(
                "event seq 6 (id {}) is the first event whose leaf differs",
                e.event_id
            )),
            "{:?}",
            r.lines
        );
    }

    #[test]
    fn fake_server_hiding_or_losing_events() {
        let mut f = honest(12);
        f.listed.remove(4);
        let r = audit(f, vec![]);
        assert!(
            r.failed()
                && r.lines[0].contains("event seq 5 (id ")
                && r.lines[0].contains("seq 4 was expected"),
            "{:?}",
            r.lines
        );
        let mut f = honest(12);
        f.listed.truncate(9);
        let r = audit(f, vec![]);
        assert!(
            r.failed() && r.lines[0].contains("event seq 9..11 are missing"),
            "{:?}",
            r.lines
        );
    }

    #[test]
    fn fake_server_bad_consistency_proof() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = honest(40);
        f.tamper_proof = true;
        let r = audit(f, vec![saved_at(dir.path(), 13, 40)]);
        assert!(r.failed(), "{:?}", r.lines);
        assert!(
            r.lines[0].starts_with("ok: tenant t_1: 40 events"),
            "{:?}",
            r.lines
        );
        assert!(
            r.lines[1].contains("consistency proof to checkpoint 40 does not verify"),
            "{:?}",
            r.lines
        );
    }
}
