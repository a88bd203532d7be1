#!/usr/bin/env python3
"""Resident memory of `trailkeep serve` with many idle keep-alive connections.

Starts a server on a fresh data directory, then records its RSS (VmRSS, and VmHWM the peak):
idle; with N connections open that each made one keep-alive request (`GET /healthz`) and then
sit idle; and after all of them closed. Run it for each allocator setting to compare, e.g.

    bench/keepalive_rss.py --bin target/release/trailkeep --connections 10000
    MALLOC_ARENA_MAX=2 bench/keepalive_rss.py --bin target/release/trailkeep

Needs a file descriptor limit above N (it raises its own soft limit as far as the hard one
allows; the server inherits it). Loopback only; nothing is written outside a temporary
directory. Prints one line per phase; BENCHMARKS.md records the figures.
"""
import argparse
import os
import re
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    get = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1)) // 1024
    return get("VmRSS"), get("VmHWM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/trailkeep")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--gdb-trim", action="store_true",
                    help="at the end, call glibc malloc_trim(0) in the server through gdb and "
                         "report RSS again (what trimming after connections close would give)")
    ap.add_argument("--data-dir", help="serve this data directory (e.g. one holding a million "
                    "events, to see the trim's pause on a large heap) instead of a fresh one")
    ap.add_argument("--settle", type=float, default=12.0,
                    help="seconds to wait after the connections closed (the server looks at "
                         "its connection count every 5 s)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.connections + 1000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < args.connections + 100:
        sys.exit(f"the open-file limit ({hard}) is too low for {args.connections} connections")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILKEEP_")}
    env["TRAILKEEP_LOG"] = "warn,trailkeep::http=debug"
    with tempfile.TemporaryDirectory() as d:
        # The server's log goes to a file: a pipe nobody reads would fill up and stall it.
        log_path = os.path.join(d, "serve.log")
        log = open(log_path, "w")
        srv = subprocess.Popen(
            [args.bin, "serve", "--listen", "127.0.0.1:0",
             "--data-dir", args.data_dir or os.path.join(d, "data")],
            env=env, stderr=log, text=True)
        try:
            addr = None
            for _ in range(600):
                with open(log_path) as f:
                    m = re.search(r"listening on http://(\S+)", f.read())
                if m:
                    addr = m.group(1)
                    break
                if srv.poll() is not None:
                    break
                time.sleep(0.1)
            if not addr:
                sys.exit("the server did not report its address")
            host, port = addr.rsplit(":", 1)
            time.sleep(1)
            print(f"idle: rss {rss(srv.pid)[0]} MiB", flush=True)
            req = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"
            socks = []
            for i in range(args.connections):
                s = socket.create_connection((host, int(port)))
                s.sendall(req)
                socks.append(s)
                # Read answers in bunches to keep the number in flight bounded.
                if len(socks) % 200 == 0:
                    for t in socks[-200:]:
                        t.recv(4096)
            for t in socks[len(socks) - len(socks) % 200:]:
                t.recv(4096)
            time.sleep(2)
            cur, peak = rss(srv.pid)
            print(f"{len(socks)} idle keep-alive connections: rss {cur} MiB (peak {peak} MiB), {fds(srv.pid)} open files", flush=True)
            for s in socks:
                s.close()
            time.sleep(args.settle)
            cur, peak = rss(srv.pid)
            print(f"after they closed: rss {cur} MiB (peak {peak} MiB), {fds(srv.pid)} open files", flush=True)
            if args.gdb_trim:
                subprocess.run(["gdb", "-p", str(srv.pid), "-batch", "-ex",
                                "call (int) malloc_trim(0)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                time.sleep(1)
                print(f"after malloc_trim(0): rss {rss(srv.pid)[0]} MiB", flush=True)
        finally:
            srv.terminate()
            srv.wait()
            log.close()
            # The server's own report of the trim (its duration), if it ran.
            with open(log_path) as f:
                for line in f:
                    if "given back" in line:
                        print("server:", line.strip())


if __name__ == "__main__":
    main()
