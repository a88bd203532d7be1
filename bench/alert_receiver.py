#!/usr/bin/env python3
"""A loopback alert receiver for the alert benchmarks: answers every POST 200 and records, per
alert, the time from the event's receipt by trailkeep (`event.received_at` in a webhook body)
to its arrival here.

usage: bench/alert_receiver.py PORT OUT_JSON
Runs until SIGTERM or SIGINT, then writes {"count", "p50_ms", "p99_ms", "max_ms"} to OUT_JSON.
"""
import datetime as dt, json, signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

latencies = []
lock = threading.Lock()


def parse(ts):
    # RFC 3339 with a Z and up to nanoseconds: keep microseconds.
    ts = ts.rstrip("Z")
    if "." in ts:
        head, frac = ts.split(".")
        ts = head + "." + frac[:6].ljust(6, "0")
    return dt.datetime.fromisoformat(ts).replace(tzinfo=dt.timezone.utc)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        now = dt.datetime.now(dt.timezone.utc)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            received = parse(json.loads(body)["event"]["received_at"])
            with lock:
                latencies.append((now - received).total_seconds() * 1000)
        except (ValueError, KeyError, TypeError):
            pass
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def stop(*_):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    with lock:
        v = sorted(latencies)
    pick = lambda q: round(v[min(len(v) - 1, int(q * len(v)))], 1) if v else None
    json.dump({"count": len(v), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
               "max_ms": round(v[-1], 1) if v else None}, open(out, "w"))


if __name__ == "__main__":
    main()
