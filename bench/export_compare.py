#!/usr/bin/env python3
"""Export speed and server memory: trailkeep's streamed export vs PostgreSQL's COPY, side by side.

    bench/export_compare.py --bin-dir target/release --events 1000000 [--events 5000000]

For each N: generates N events of one tenant (t_0000) with scripts/gen_events.py (cached),
stores them in a fresh embedded trailkeep server (batched ingest) and in PostgreSQL's indexed
`bench_events` table (`trailkeep-bench pg-copy`, the table of bench/compare.sh). Then, RUNS
times alternated, each export of that tenant's N events newest first:

  - trailkeep `GET /v1/export?tenant_id=t_0000&format=ndjson|csv|parquet` with curl to
    /dev/null (all N events, ordered by (timestamp, event_id) descending);
  - PostgreSQL `COPY (SELECT … WHERE tenant_id = 't_0000' ORDER BY ts DESC, event_id DESC)
    TO STDOUT` in text and CSV format through psql to /dev/null;
  - and an evidence bundle of the tenant (`/v1/export/bundle`), then `trailkeep verify` of it.

It records wall time, bytes, events/s, and the server's resident memory before and at its peak
during each export (sampled every 20 ms from /proc). Prints a Markdown table per N with each
side's median run. Needs PostgreSQL at --pg (default postgres://postgres@127.0.0.1:5432/test),
curl and psql; loopback only; temporary data is removed at exit.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "bench-admin-secret-0123456789abcdef0123456789"


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) / 1024 if m else 0.0
    except OSError:
        return 0.0


class Peak:
    """Samples a process's RSS every 20 ms while in use."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def __enter__(self):
        self.before = rss_mib(self.pid)
        self.peak = self.before
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
        return self

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()


def generate(n, cache):
    path = os.path.join(cache, f"events-{n}-t1.ndjson")
    if not os.path.exists(path):
        print(f"generating {n} events of one tenant ...", flush=True)
        with open(path + ".tmp", "w") as f:
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts/gen_events.py"),
                            "--tenants", "1", str(n)], stdout=f, check=True)
        os.rename(path + ".tmp", path)
    return path


def start_server(bin_dir, data, log_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILKEEP_")}
    env["TRAILKEEP_ADMIN_KEY"] = KEY
    env["TRAILKEEP_LOG"] = "warn"
    log = open(log_path, "w")
    srv = subprocess.Popen([os.path.join(bin_dir, "trailkeep"), "serve", "--listen",
                            "127.0.0.1:0", "--data-dir", data], env=env, stderr=log)
    for _ in range(600):
        with open(log_path) as f:
            m = re.search(r"listening on http://(\S+)", f.read())
        if m:
            return srv, "http://" + m.group(1)
        if srv.poll() is not None:
            sys.exit(f"the server exited; see {log_path}")
        time.sleep(0.1)
    sys.exit("the server did not report its address")


def timed(cmd, pid):
    with Peak(pid) as p:
        t = time.perf_counter()
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        secs = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return secs, out.stdout, p.before, p.peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--events", type=int, action="append")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reuse-pg", action="store_true",
                    help="keep bench_events when it already holds exactly N rows of t_0000 "
                         "(from an earlier run with the same N) instead of loading it again")
    ap.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/test")
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                     "trailkeep-bench-cache"))
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    bench = os.path.join(args.bin_dir, "trailkeep-bench")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    for n in args.events or [1_000_000]:
        src = generate(n, args.cache)
        with tempfile.TemporaryDirectory() as d:
            srv, url = start_server(args.bin_dir, os.path.join(d, "data"), os.path.join(d, "serve.log"))
            try:
                subprocess.run([bench, "wait-healthy", "--url", url], check=True)
                print(f"storing {n} events in trailkeep ...", flush=True)
                subprocess.run([bench, "ingest-batch", "--url", url, "--key", KEY, "--file", src],
                               check=True, stdout=subprocess.DEVNULL)
                have = subprocess.run(
                    ["psql", args.pg, "-qAtc", "SELECT count(*) FROM bench_events WHERE tenant_id = 't_0000'"],
                    capture_output=True, text=True).stdout.strip() if args.reuse_pg else ""
                if have == str(n) and subprocess.run(
                        ["psql", args.pg, "-qAtc", "SELECT count(*) FROM bench_events"],
                        capture_output=True, text=True).stdout.strip() == str(n):
                    print(f"PostgreSQL already holds these {n} events (--reuse-pg)", flush=True)
                else:
                    print(f"storing {n} events in PostgreSQL ...", flush=True)
                    subprocess.run([bench, "pg-copy", "--pg", args.pg, "--file", src], check=True,
                                   stdout=subprocess.DEVNULL)
                subprocess.run(["psql", args.pg, "-qc", "VACUUM ANALYZE bench_events"], check=True)
                sel = ("SELECT event_id, event_type, actor, tenant_id, ts, source_ip, payload "
                       "FROM bench_events WHERE tenant_id = 't_0000' ORDER BY ts DESC, event_id DESC")
                curl = lambda q: ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}",
                                  "-H", f"Authorization: Bearer {KEY}", f"{url}{q}"]
                cases = [
                    ("trailkeep NDJSON", curl("/v1/export?tenant_id=t_0000&format=ndjson"), False),
                    ("PostgreSQL COPY text", ["psql", args.pg, "-qc", f"COPY ({sel}) TO STDOUT"], True),
                    ("trailkeep CSV", curl("/v1/export?tenant_id=t_0000&format=csv"), False),
                    ("PostgreSQL COPY csv", ["psql", args.pg, "-qc", f"COPY ({sel}) TO STDOUT WITH (FORMAT csv)"], True),
                    ("trailkeep Parquet", curl("/v1/export?tenant_id=t_0000&format=parquet"), False),
                ]
                results = {name: [] for name, _, _ in cases}
                for r in range(args.runs):
                    for name, cmd, is_pg in cases:
                        secs, out, before, peak = timed(cmd, srv.pid)
                        size = len(out.encode()) if is_pg else int(out or 0)
                        results[name].append((secs, size, before, peak))
                        print(f"  run {r + 1} {name}: {secs:.2f} s, {n / secs:,.0f} events/s, "
                              f"{size / 1e6:.0f} MB, server RSS {before:.0f} -> peak {peak:.0f} MiB",
                              flush=True)
                bundle = os.path.join(d, "bundle.tar")
                bsecs, _, bbefore, bpeak = timed(
                    ["curl", "-sS", "--fail", "-o", bundle, "-H", f"Authorization: Bearer {KEY}",
                     f"{url}/v1/export/bundle?tenant_id=t_0000"], srv.pid)
                vk = os.path.join(d, "log.vkey")
                with open(vk, "w") as f:
                    f.write(subprocess.run(["curl", "-sS", f"{url}/v1/public-key"], capture_output=True,
                                           text=True, check=True).stdout.strip())
                t = time.perf_counter()
                v = subprocess.run([os.path.join(args.bin_dir, "trailkeep"), "verify", bundle,
                                    "--public-key", vk], capture_output=True, text=True)
                vsecs = time.perf_counter() - t
                if v.returncode != 0:
                    sys.exit(f"verify of the bundle failed: {v.stdout}{v.stderr}")
                bsize = os.path.getsize(bundle)
            finally:
                srv.terminate()
                srv.wait()
        print(f"\n#### {n:,} events of one tenant, newest first ({args.runs} runs alternated, "
              f"medians; commit {commit}, {time.strftime('%Y-%m-%d')})\n")
        print("| export | seconds | events/s | MB | server RSS before → peak |")
        print("|---|---|---|---|---|")
        for name, _, is_pg in cases:
            rows = sorted(results[name])
            secs, size, before, peak = rows[len(rows) // 2]
            mem = "—" if is_pg else f"{before:.0f} → {max(p for *_, p in rows):.0f} MiB"
            print(f"| {name} | {secs:.2f} | {n / secs:,.0f} | {size / 1e6:,.0f} | {mem} |")
        print(f"| trailkeep bundle (tar) | {bsecs:.2f} | {n / bsecs:,.0f} | {bsize / 1e6:,.0f} | "
              f"{bbefore:.0f} → {bpeak:.0f} MiB |")
        print(f"| `trailkeep verify` of that bundle | {vsecs:.2f} | {n / vsecs:,.0f} | | |")
        print()


if __name__ == "__main__":
    main()
