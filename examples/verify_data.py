"""Check the restored hello_milvus_recover and hello_milvus2_recover against
their sources. Unlike the Go tool's version, it asserts: same row counts, every
row equal field by field (per partition for hello_milvus2, dynamic keys
included), and a vector search that finds the same neighbours. Exits non-zero
on any difference.

    python examples/verify_data.py [--uri http://127.0.0.1:19530]
"""

import argparse
import sys

from pymilvus import Collection, connections, utility

FIELDS = ["pk", "random", "var", "embeddings"]


def load(name):
    c = Collection(name)
    if not c.indexes:
        c.create_index("embeddings", {"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 128}})
    c.load()
    return c


def all_rows(c, partition=None, dynamic=False):
    out = c.query(
        "pk >= 0",
        output_fields=FIELDS + (["color"] if dynamic else []),
        partition_names=[partition] if partition else None,
        limit=16384,
    )
    return sorted(({k: (list(v) if k == "embeddings" else v) for k, v in r.items()} for r in out), key=lambda r: r["pk"])


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {msg}")


def compare(source, restored, partitions, dynamic):
    check(utility.has_collection(restored), f"{restored} exists")
    a, b = load(source), load(restored)
    check(a.num_entities == b.num_entities, f"{restored} has {b.num_entities} entities like {source}")
    for p in partitions:
        ra, rb = all_rows(a, p, dynamic), all_rows(b, p, dynamic)
        check(len(ra) > 0 or p != "_default", f"{source}/{p} has rows")
        check(ra == rb, f"{restored}/{p}: {len(rb)} rows equal field by field")
    probe = all_rows(a)[:3]
    vectors = [r["embeddings"] for r in probe]
    params = {"metric_type": "L2", "params": {"nprobe": 128}}
    ha = a.search(vectors, "embeddings", params, limit=5)
    hb = b.search(vectors, "embeddings", params, limit=5)
    ids_a = [[h.id for h in hits] for hits in ha]
    ids_b = [[h.id for h in hits] for hits in hb]
    check(ids_a == ids_b, f"{restored}: search finds the same neighbours {ids_b}")
    check(all(ids[0] == r["pk"] for ids, r in zip(ids_b, probe)), f"{restored}: each probe finds itself first")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", default="http://127.0.0.1:19530")
    args = ap.parse_args()
    connections.connect(uri=args.uri)
    compare("hello_milvus", "hello_milvus_recover", ["_default"], False)
    compare("hello_milvus2", "hello_milvus2_recover", ["_default", "part_a", "part_b"], True)
    print("verified")


if __name__ == "__main__":
    main()
