#!/usr/bin/env python3
"""Reads back three exports of the same events and checks them against each other.

usage: scripts/export_readback.py EVENTS.ndjson EVENTS.parquet EVENTS.csv

The NDJSON export is the reference: each line is the object `GET /v1/events/{id}` returns.
Every row of the Parquet export, read with pyarrow and again with DuckDB (two independent
readers), and every row of the CSV export (Python's csv module, strict) must hold the same
event in the same position, field by field, as docs/export.md defines the formats:

* Parquet: the 16 columns in their fixed order with their Parquet types (STRING, INT64,
  TIMESTAMP(MICROS, UTC), BOOLEAN) and nullability; timestamps equal to the API's text rounded
  down to the microsecond, `timestamp_text` equal to it exactly; `payload` equal to the NDJSON
  payload both as exact text and parsed; `purged`, salt and commitment as the API gives them.
* CSV: no BOM, CRLF line ends, the fixed header, each cell as the API gives the value (with
  the formula-defusing `'` applied), the payload's exact canonical text or `null`.

Prints one summary line and exits 0, or prints the first difference and exits 1.
Needs pyarrow and duckdb (scripts/test.sh installs them into its virtualenv).
"""
import csv
import datetime as dt
import io
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = [
    # name, pyarrow type, nullable, DuckDB type
    ("event_id", pa.string(), False, "VARCHAR"),
    ("tenant_id", pa.string(), False, "VARCHAR"),
    ("seq", pa.int64(), False, "BIGINT"),
    ("event_type", pa.string(), False, "VARCHAR"),
    ("actor", pa.string(), False, "VARCHAR"),
    ("timestamp", pa.timestamp("us", tz="UTC"), False, "TIMESTAMP WITH TIME ZONE"),
    ("received_at", pa.timestamp("us", tz="UTC"), False, "TIMESTAMP WITH TIME ZONE"),
    ("source_ip", pa.string(), True, "VARCHAR"),
    ("impersonation_session", pa.string(), True, "VARCHAR"),
    ("approval_id", pa.string(), True, "VARCHAR"),
    ("payload", pa.string(), True, "VARCHAR"),
    ("purged", pa.bool_(), False, "BOOLEAN"),
    ("payload_salt", pa.string(), True, "VARCHAR"),
    ("payload_commitment", pa.string(), True, "VARCHAR"),
    ("leaf_hash", pa.string(), False, "VARCHAR"),
    ("timestamp_text", pa.string(), False, "VARCHAR"),
]
NAMES = [c[0] for c in COLUMNS]
# The API object's keys that the Parquet columns hold (all of them).
API_KEYS = set(NAMES) - {"timestamp_text"}
CSV_HEADER = ["event_id", "event_type", "actor", "tenant_id", "timestamp", "source_ip", "seq", "payload"]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


def same(got, want, where):
    if got != want or type(got) is not type(want):
        raise Mismatch(f"{where}: got {got!r}, want {want!r}")


def micros(text):
    """Microseconds since 1970 of the API's `YYYY-MM-DDTHH:MM:SS.f+Z`, rounded down."""
    check(text.endswith("Z") and len(text) in (24, 27, 30), f"timestamp text {text!r}")
    whole = dt.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    frac = text[20:-1]
    nanos = int(frac) * 10 ** (9 - len(frac))
    secs = (whole - EPOCH) // dt.timedelta(seconds=1)
    return (secs * 1_000_000_000 + nanos) // 1000


def payload_text(line):
    """The payload's exact text inside an API object's line (the canonical JSON as stored)."""
    # `,"payload":` cannot occur inside an earlier string value (a quote there is escaped).
    start = line.index(',"payload":') + len(',"payload":')
    _, end = json.JSONDecoder().raw_decode(line, start)
    return line[start:end]


def read_ndjson(path):
    events = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, line in enumerate(f, 1):
            check(line.endswith("\n"), f"ndjson line {n} does not end with a newline")
            line = line[:-1]
            obj = json.loads(line)
            check(isinstance(obj, dict), f"ndjson line {n} is not an object")
            extra = set(obj) - API_KEYS
            check(not extra, f"ndjson line {n}: keys without a column: {sorted(extra)}")
            text = payload_text(line)
            same(json.loads(text), obj["payload"], f"ndjson line {n} payload text")
            obj["_payload_text"] = None if obj["payload"] is None else text
            events.append(obj)
    return events


def expected_row(obj):
    """The 16 column values an API object must become (timestamps as epoch microseconds)."""
    purged = obj.get("purged", False)
    return {
        "event_id": obj["event_id"],
        "tenant_id": obj["tenant_id"],
        "seq": obj["seq"],
        "event_type": obj["event_type"],
        "actor": obj["actor"],
        "timestamp": micros(obj["timestamp"]),
        "received_at": micros(obj["received_at"]),
        "source_ip": obj.get("source_ip"),
        "impersonation_session": obj.get("impersonation_session"),
        "approval_id": obj.get("approval_id"),
        "payload": obj["_payload_text"],
        "purged": purged,
        "payload_salt": obj.get("payload_salt"),
        "payload_commitment": obj.get("payload_commitment"),
        "leaf_hash": obj["leaf_hash"],
        "timestamp_text": obj["timestamp"],
    }


def compare_rows(reader, rows, events):
    same(len(rows), len(events), f"{reader}: row count")
    for i, (row, obj) in enumerate(zip(rows, events)):
        want = expected_row(obj)
        where = f"{reader} row {i} (event {obj['event_id']})"
        for name in NAMES:
            same(row[name], want[name], f"{where} column {name}")
        if row["payload"] is not None:
            same(json.loads(row["payload"]), obj["payload"], f"{where} payload parsed")


def check_parquet_pyarrow(path, events):
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    same(schema.names, NAMES, "parquet column order")
    for (name, typ, nullable, _), field in zip(COLUMNS, schema):
        check(field.type == typ, f"parquet column {name}: type {field.type}, want {typ}")
        same(field.nullable, nullable, f"parquet column {name} nullable")
    for i, (name, typ, nullable, _) in enumerate(COLUMNS):
        col = pf.schema.column(i)
        same(col.max_definition_level, 1 if nullable else 0, f"parquet column {name} repetition")
        logical = str(col.logical_type)
        if pa.types.is_timestamp(typ):
            same(col.physical_type, "INT64", f"parquet column {name} physical type")
            check("isAdjustedToUTC=true" in logical and "microseconds" in logical,
                  f"parquet column {name}: logical type {logical}")
        elif pa.types.is_string(typ):
            same(col.physical_type, "BYTE_ARRAY", f"parquet column {name} physical type")
            same(logical, "String", f"parquet column {name} logical type")
    table = pf.read()
    cols = {}
    for name, typ, _, _ in COLUMNS:
        c = table.column(name)
        if pa.types.is_timestamp(typ):
            c = c.cast(pa.int64())
        cols[name] = c.to_pylist()
    rows = [{n: cols[n][i] for n in NAMES} for i in range(table.num_rows)]
    compare_rows("parquet/pyarrow", rows, events)
    return pf.metadata.num_row_groups


def check_parquet_duckdb(path, events):
    con = duckdb.connect()
    described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
    same([d[0] for d in described], NAMES, "duckdb column order")
    for (name, _, _, want), d in zip(COLUMNS, described):
        same(d[1], want, f"duckdb column {name} type")
    select = ", ".join(
        f'epoch_us("{n}") AS "{n}"' if t.startswith("TIMESTAMP") else f'"{n}"' for n, _, _, t in COLUMNS
    )
    result = con.execute(
        f"SELECT {select} FROM read_parquet(?, file_row_number = true) ORDER BY file_row_number", [path]
    ).fetchall()
    rows = [dict(zip(NAMES, r)) for r in result]
    compare_rows("parquet/duckdb", rows, events)


def defused(value):
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def check_csv(path, events):
    with open(path, "rb") as f:
        raw = f.read()
    check(not raw.startswith(b"\xef\xbb\xbf"), "csv starts with a byte order mark")
    check(raw.startswith(",".join(CSV_HEADER).encode() + b"\r\n"), "csv header line")
    check(raw.endswith(b"\r\n"), "csv does not end with CRLF")
    reader = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), strict=True)
    rows = list(reader)
    same(rows[0], CSV_HEADER, "csv header")
    same(len(rows) - 1, len(events), "csv row count")
    for i, (row, obj) in enumerate(zip(rows[1:], events)):
        where = f"csv row {i} (event {obj['event_id']})"
        payload = "null" if obj["_payload_text"] is None else obj["_payload_text"]
        want = [obj["event_id"], obj["event_type"], obj["actor"], obj["tenant_id"], obj["timestamp"],
                obj.get("source_ip") or "", str(obj["seq"]), payload]
        same(len(row), len(CSV_HEADER), f"{where} cell count")
        for name, got, w in zip(CSV_HEADER, row, want):
            same(got, defused(w), f"{where} column {name}")
        same(json.loads(row[7]), obj["payload"], f"{where} payload parsed")


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    ndjson_path, parquet_path, csv_path = sys.argv[1:]
    try:
        events = read_ndjson(ndjson_path)
        groups = check_parquet_pyarrow(parquet_path, events)
        check_parquet_duckdb(parquet_path, events)
        check_csv(csv_path, events)
    except Mismatch as e:
        print(f"export_readback: MISMATCH: {e}")
        sys.exit(1)
    purged = sum(1 for e in events if e.get("purged"))
    print(f"export_readback: ok: {len(events)} events ({purged} purged); parquet ({len(NAMES)} columns, "
          f"{groups} row group{'' if groups == 1 else 's'}) read with pyarrow {pa.__version__} and duckdb {duckdb.__version__}, "
          f"and csv match the ndjson field by field")


if __name__ == "__main__":
    main()
