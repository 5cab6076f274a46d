"""The cost of a restore's verify phase (every object proven before Milvus
imports it), as a ratio to the same restore without it, measured in one run
from the job's own phase timings.

Needs a running Milvus and our server (any storage):

    python scripts/bench/verify_cost.py --server http://127.0.0.1:8080 (a server started with --address 127.0.0.1) \
        --milvus http://127.0.0.1:19530 [--rows 200000] [--runs 3]

Prints one markdown row for docs/benchmarks.md. scripts/bench/measure.py takes
the same figure on the benchmark's Garage setup.
"""

import argparse
import json
import statistics
import time
import urllib.error
import urllib.request

import numpy as np
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

SRC = "verify_cost_src"
BACKUP = "verify_cost_backup"


def call(server, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.loads(r.read())


def make_source(rows):
    if utility.has_collection(SRC):
        utility.drop_collection(SRC)
    schema = CollectionSchema([
        FieldSchema(name="pk", dtype=DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema(name="vec", dtype=DataType.FLOAT_VECTOR, dim=128),
    ], "verify cost")
    c = Collection(SRC, schema, shards_num=1)
    rng = np.random.default_rng(42)
    for start in range(0, rows, 20_000):
        n = min(20_000, rows - start)
        c.insert([list(range(start, start + n)), rng.random((n, 128), dtype=np.float32)])
        if (start + n) % 50_000 == 0 or start + n == rows:
            c.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="http://127.0.0.1:8080")
    ap.add_argument("--milvus", default="http://127.0.0.1:19530")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    connections.connect(uri=args.milvus)
    make_source(args.rows)
    try:
        call(args.server, "DELETE", f"/api/v1/delete?backup_name={BACKUP}")
    except urllib.error.HTTPError:
        pass  # no such backup yet
    r = call(args.server, "POST", "/api/v1/create",
             {"backup_name": BACKUP, "collection_names": [SRC], "async": False})
    assert r["code"] == 0, r
    size = r["data"]["size"]
    totals, verifies = [], []
    for i in range(args.runs):
        target = f"{SRC}_vc{i}"
        if utility.has_collection(target):
            utility.drop_collection(target)
        started = time.time()
        r = call(args.server, "POST", "/api/v1/restore",
                 {"backup_name": BACKUP, "collection_names": [SRC], "collection_suffix": f"_vc{i}",
                  "async": False})
        total = time.time() - started
        assert r["code"] == 0 and r["data"]["state_code"] == 2, r
        phases = {p["phase"]: p["seconds"] for p in r["data"]["phases"]}
        totals.append(total)
        verifies.append(phases["verify"])
        print(f"run {i}: restore {total:.2f} s, verify phase {phases['verify']:.3f} s, phases {phases}",
              flush=True)
        utility.drop_collection(target)
    call(args.server, "DELETE", f"/api/v1/delete?backup_name={BACKUP}")
    utility.drop_collection(SRC)
    total, verify = statistics.median(totals), statistics.median(verifies)
    print(f"| restore of {args.rows:,} rows × dim 128 ({size / 2**20:.0f} MiB), verify phase vs the restore "
          f"without it | {total:.2f} s, of which verify {verify:.2f} s ({size / 2**20 / verify:.0f} MiB/s) "
          f"| {total - verify:.2f} s | {total / (total - verify):.3f} (time) |")


if __name__ == "__main__":
    main()
