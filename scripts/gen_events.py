#!/usr/bin/env python3
"""Deterministic generator of realistic audit events for an AI-assistant SaaS platform.

usage: scripts/gen_events.py N [--seed S] [--tenants T] [--format ndjson|csv]

Writes N events, one per line, to stdout: the built-in catalogue's types in a realistic mix
(crawl runs and logins most, prompt edits, policy and threshold changes, billing, impersonation
sessions, kill switches rarely), tenants skewed like real platforms (a few tenants produce most
events), each with event_id, event_type, actor, tenant_id, payload (before/after), timestamp
(UTC, milliseconds, increasing from 2026-01-01) and usually source_ip. Impersonation sessions
are coherent, as ingest requires: an end closes a session of its tenant that started at least
SESSION_GAP events earlier (so that concurrent clients sending consecutive batches do not get
an end to the server before its start, even when one request is held up for dozens of others);
when the tenant has none, a start is written instead. Smaller files have starts only. The same N, seed and
tenant count always give the same bytes, so benchmarks and tests are reproducible. Used by the
README's Quick start, bench/*.sh and the tests.
"""
import argparse, hashlib, json, random, sys, uuid, datetime as dt

TYPES = [
    ("prompt.update", 10), ("crawl.run", 40), ("policy.update", 6), ("threshold.update", 6),
    ("impersonation.start", 2), ("impersonation.end", 2), ("billing.plan.change", 2),
    ("billing.quota.override", 2), ("billing.grace.start", 1), ("billing.grace.end", 1),
    ("killswitch.embed.disable", 1), ("killswitch.embed.enable", 1), ("auth.login", 26),
]
REASONS = ["customer request", "tone fix for pricing page", "security answer correction",
           "incident INC-{n} mitigation", "quarterly review", "legal asked to remove claim",
           "reduce hallucinations on refunds", "A/B test winner"]
DOMAINS = ["docs.{t}.com", "www.{t}.io", "help.{t}.com", "{t}.example.org"]
SESSION_GAP = 50000

def h(x):
    return "sha256:" + hashlib.sha256(x.encode()).hexdigest()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tenants", type=int, default=200)
    ap.add_argument("--format", default="ndjson", choices=["ndjson", "csv"])
    a = ap.parse_args()
    r = random.Random(a.seed)
    names, weights = zip(*TYPES)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    ts = t0
    open_sessions = {}  # tenant -> [(index of the start, session id, impersonator, impersonated)]
    out = sys.stdout
    if a.format == "csv":
        out.write("event_id,event_type,actor,tenant_id,payload,timestamp,source_ip\n")
    for i in range(a.n):
        # zipf-ish tenant skew: a few tenants produce most events
        tnum = min(int(r.paretovariate(1.1)) - 1, a.tenants - 1)
        tenant = f"t_{tnum:04d}"
        et = r.choices(names, weights)[0]
        user = f"user:{r.choice(['ana','bo','chen','dev','eli','fay','gus'])}{r.randint(1,40)}@{tenant}.example"
        admin = f"admin:{r.choice(['ops1','ops2','sre3','cs4'])}@threada.example"
        actor = user
        reason = r.choice(REASONS).format(n=r.randint(100, 999))
        if et == "prompt.update":
            p = {"before": {"prompt_hash": h(f"{tenant}{i}a")}, "after": {"prompt_hash": h(f"{tenant}{i}b")},
                 "editor": user, "reason": reason, "prompt_id": f"pr_{r.randint(1,30)}"}
        elif et == "crawl.run":
            actor = "svc:crawler"
            ok = r.random() > 0.08
            p = {"domain": r.choice(DOMAINS).format(t=tenant), "run_id": str(uuid.UUID(int=r.getrandbits(128))),
                 "pages_crawled": r.randint(1, 5000), "pages_failed": 0 if ok else r.randint(1, 300),
                 "status": "success" if ok else "failure",
                 "trigger": r.choices(["schedule", "manual", "indexnow"], [70, 10, 20])[0]}
        elif et in ("policy.update", "threshold.update"):
            old = round(r.random(), 2)
            p = {"setting": r.choice(["answer_confidence_threshold", "max_tokens", "pii_filter", "handoff_score"]),
                 "before": old, "after": round(min(1, old + r.uniform(-0.2, 0.2)), 2), "justification": reason}
        elif et.startswith("impersonation"):
            actor = admin
            mine = open_sessions.setdefault(tenant, [])
            if et.endswith("end") and mine and mine[0][0] <= i - SESSION_GAP:
                _, sid, admin, user = mine.pop(0)
                actor = admin
                p = {"impersonator": admin, "impersonated": user, "session_id": sid,
                     "actions_taken": r.randint(0, 25)}
            else:
                et = "impersonation.start"
                sid = f"imp_{i}_{r.randint(1, 10**6)}"
                mine.append((i, sid, admin, user))
                p = {"impersonator": admin, "impersonated": user, "session_id": sid, "reason": reason}
        elif et.startswith("billing"):
            actor = r.choice([admin, "svc:billing"])
            p = {"before": {"plan": r.choice(["free", "starter", "pro"]), "quota": r.randint(1, 100) * 1000},
                 "after": {"plan": r.choice(["starter", "pro", "enterprise"]), "quota": r.randint(1, 100) * 1000},
                 "reason": reason}
        elif et.startswith("killswitch"):
            actor = admin
            p = {"target": "embed", "scope": r.choices(["tenant", "global"], [95, 5])[0], "reason": reason}
            if p["scope"] == "global":
                tenant = "_global"
        else:
            p = {"method": r.choice(["password", "sso", "api_key"]), "success": r.random() > 0.05}
        ts = ts + dt.timedelta(milliseconds=r.randint(1, 400))
        ev = {"event_id": str(uuid.UUID(int=r.getrandbits(128), version=4)), "event_type": et, "actor": actor,
              "tenant_id": tenant, "payload": p,
              "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"}
        if r.random() < 0.7:
            ev["source_ip"] = f"203.0.{r.randint(0,255)}.{r.randint(1,254)}" if r.random() < 0.8 else f"2001:db8::{r.randint(1,65535):x}"
        if a.format == "ndjson":
            out.write(json.dumps(ev, separators=(",", ":")) + "\n")
        else:
            import csv, io
            buf = io.StringIO()
            csv.writer(buf).writerow([ev["event_id"], et, actor, tenant, json.dumps(p, separators=(",", ":")),
                                      ev["timestamp"], ev.get("source_ip", "")])
            out.write(buf.getvalue())

if __name__ == "__main__":
    main()
