"""The benchmark's dataset, generated once from a seed into the benchmark's
own Milvus (its data stays in .bench/run between runs).

- bench_big_a, bench_big_b: 1,000,000 rows each, pk INT64 + FLOAT_VECTOR dim 128,
  inserted in 20k-row batches and flushed every 100k rows (many segments);
  about 0.5 GiB of binlogs each.
- bench_small_0000 .. bench_small_0999: 100 rows each (pk + FLOAT_VECTOR dim 8),
  one shard, for the scaling figures.

    python scripts/bench/dataset.py --seed 42 [--small 1000] [--rows 1000000]
"""

import argparse
import concurrent.futures
import time

import numpy as np
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility


def big(name, rows, rng):
    if utility.has_collection(name):
        c = Collection(name)
        if c.num_entities == rows:
            print(f"{name}: {rows} rows already there")
            return
        utility.drop_collection(name)
    schema = CollectionSchema([
        FieldSchema(name="pk", dtype=DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema(name="vec", dtype=DataType.FLOAT_VECTOR, dim=128),
    ], f"benchmark: {rows} x 128")
    c = Collection(name, schema, shards_num=2)
    started = time.time()
    batch, flush_every = 20_000, 100_000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        pks = np.arange(start, start + n, dtype=np.int64)
        vecs = rng.random((n, 128), dtype=np.float32)
        c.insert([pks.tolist(), vecs], partition_name="_default")
        if (start + n) % flush_every == 0 or start + n == rows:
            c.flush()
            print(f"{name}: {start + n} rows, {time.time() - started:.0f} s", flush=True)


def small(i, rng_seed):
    name = f"bench_small_{i:04d}"
    if utility.has_collection(name):
        return
    rng = np.random.default_rng(rng_seed + i)
    schema = CollectionSchema([
        FieldSchema(name="pk", dtype=DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema(name="vec", dtype=DataType.FLOAT_VECTOR, dim=8),
    ], "benchmark: a small collection")
    c = Collection(name, schema, shards_num=1)
    c.insert([list(range(100)), rng.random((100, 8), dtype=np.float32)], partition_name="_default")
    c.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", default="http://127.0.0.1:19530")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=1000)
    args = ap.parse_args()
    connections.connect(uri=args.uri)
    rng = np.random.default_rng(args.seed)
    for name in ["bench_big_a", "bench_big_b"]:
        big(name, args.rows, rng)
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for n, _ in enumerate(pool.map(lambda i: small(i, args.seed), range(args.small)), 1):
            if n % 100 == 0:
                print(f"small collections: {n}, {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
