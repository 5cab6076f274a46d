"""Create hello_milvus and hello_milvus2, as in the Go tool's guide.

hello_milvus: pk INT64 (auto_id off), random DOUBLE, var VARCHAR, embeddings
FLOAT_VECTOR dim 8; 3000 rows in 3 inserts; IVF_FLAT index; loaded.
hello_milvus2: the same fields in the default partition and two more
partitions, with a dynamic field; 2000 rows.

    python examples/prepare_data.py [--uri http://127.0.0.1:19530]
"""

import argparse
import random

from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

DIM = 8


def fields():
    return [
        FieldSchema(name="pk", dtype=DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema(name="random", dtype=DataType.DOUBLE),
        FieldSchema(name="var", dtype=DataType.VARCHAR, max_length=65535),
        FieldSchema(name="embeddings", dtype=DataType.FLOAT_VECTOR, dim=DIM),
    ]


def rows(start, n, rng, dynamic=False):
    out = []
    for i in range(start, start + n):
        row = {
            "pk": i,
            "random": float(rng.randrange(-20, -10)),
            "var": str(rng.randint(0, 10**9)),
            "embeddings": [rng.random() for _ in range(DIM)],
        }
        if dynamic:
            row["color"] = f"c{i % 5}"
        out.append(row)
    return out


def index_and_load(c):
    c.create_index("embeddings", {"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 128}})
    c.load()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", default="http://127.0.0.1:19530")
    args = ap.parse_args()
    connections.connect(uri=args.uri)
    rng = random.Random(19530)

    for name in ["hello_milvus", "hello_milvus2"]:
        if utility.has_collection(name):
            utility.drop_collection(name)

    c1 = Collection("hello_milvus", CollectionSchema(fields(), "hello_milvus is the simplest demo to introduce the APIs"), consistency_level="Strong")
    for b in range(3):
        # pymilvus 3 against Milvus 2.3 needs the partition named explicitly.
        c1.insert(rows(b * 1000, 1000, rng), partition_name="_default")
    c1.flush()
    index_and_load(c1)
    print(f"hello_milvus: {c1.num_entities} entities")

    c2 = Collection("hello_milvus2", CollectionSchema(fields(), "hello_milvus2 has partitions and dynamic keys", enable_dynamic_field=True), consistency_level="Strong")
    c2.create_partition("part_a")
    c2.create_partition("part_b")
    c2.insert(rows(0, 1000, rng, True), partition_name="_default")
    c2.insert(rows(1000, 600, rng, True), partition_name="part_a")
    c2.insert(rows(1600, 400, rng, True), partition_name="part_b")
    c2.flush()
    index_and_load(c2)
    print(f"hello_milvus2: {c2.num_entities} entities")


if __name__ == "__main__":
    main()
