"""Drop hello_milvus, hello_milvus2 and their _recover twins.

    python examples/clean_data.py [--uri http://127.0.0.1:19530]
"""

import argparse

from pymilvus import connections, utility


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", default="http://127.0.0.1:19530")
    args = ap.parse_args()
    connections.connect(uri=args.uri)
    for name in ["hello_milvus", "hello_milvus2", "hello_milvus_recover", "hello_milvus2_recover"]:
        if utility.has_collection(name):
            utility.drop_collection(name)
            print(f"dropped {name}")


if __name__ == "__main__":
    main()
