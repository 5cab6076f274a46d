#!/usr/bin/env python3
"""The bandwidth cap, second by second: a streaming backup (from Milvus's
bucket to Azurite, or with --local to the local disk) under
`backup.rateLimitMiBps`, with our `milvus_backup_streamed_bytes_total`
sampled every 100 ms, against the environment in $IT_RUN (see
incremental.py). For binlogs above 100 MiB, start Milvus with a larger insert
buffer (`MILVUS_INSERT_BUF_MIB=256` for scripts/testenv/milvus.sh): the
collection is flushed once, so each field is one binlog.

    IT_RUN=.bench/run .it-env/pymilvus/bin/python scripts/bench/rate_cap.py \
        [--rows 200000] [--cap 20] [--local]

Prints the per-second series and writes .bench-rate-cap.json.
"""

import argparse
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

from azure import ROOT, our_config
from incremental import BIN, ENV, fresh_collection
from pymilvus import utility

RUN = ROOT / ".bench-rate-cap"
COLL = "bench_rate_cap"


def start_server(cap, local=None):
    cfg = our_config(RUN, "bench-cap", f"  rateLimitMiBps: {cap}\n")
    if local:
        text = cfg.read_text()
        start = text.index("  backupStorageType: azure")
        end = text.index("backup:\n")
        cfg.write_text(text[:start] + f"  backupStorageType: local\n  backupRootPath: {local}\n" + text[end:])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(BIN), "--config", str(cfg), "server", "--address", "127.0.0.1", "-p", str(port)],
                            stderr=open(RUN / "server.log", "w"))
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/metrics", timeout=2).read()
            return proc, base
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def streamed(base):
    text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("milvus_backup_streamed_bytes_total "):
            return int(float(line.split()[1]))
    return 0  # not counted yet


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--cap", type=float, default=20.0)
    ap.add_argument("--local", action="store_true", help="back up to the local disk, not Azurite")
    args = ap.parse_args()
    fresh_collection(COLL, args.rows)
    local = RUN / "local-backups" if args.local else None
    if local:
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
    proc, base = start_server(args.cap, local)
    largest = 0
    samples, done = [], threading.Event()

    def sample():
        t0 = time.time()
        while not done.is_set():
            samples.append((time.time() - t0, streamed(base)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    name = f"bench_cap_{int(time.time())}"
    try:
        body = json.dumps({"backup_name": name, "collection_names": [COLL]}).encode()
        req = urllib.request.Request(f"{base}/api/v1/create", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        r = json.loads(urllib.request.urlopen(req, timeout=3600).read())
        if r.get("code") != 0:
            raise RuntimeError(f"backup failed: {r}")
    finally:
        time.sleep(0.3)
        done.set()
        sampler.join()
        if local:
            largest = max((f.stat().st_size for f in local.rglob("*") if f.is_file()), default=0)
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/delete?backup_name={name}", method="DELETE"))
        proc.terminate()
        proc.wait()
        utility.drop_collection(COLL)
    first = next(t for t, b in samples if b > samples[0][1])
    base_bytes = samples[0][1]
    per_second = []
    second = 1
    while True:
        window = [b for t, b in samples if first + second - 1 <= t < first + second]
        after = [b for t, b in samples if t >= first + second]
        if not after:
            break
        start = [b for t, b in samples if t < first + second - 1][-1] if second > 1 else base_bytes
        end = [b for t, b in samples if t < first + second][-1]
        per_second.append((end - start) / 2**20)
        second += 1
    total = (samples[-1][1] - base_bytes) / 2**20
    (RUN / "samples.json").write_text(json.dumps(samples))
    f = {"cap_mib_s": args.cap, "total_mib": round(total, 1), "build": BIN.parent.name,
         "largest_object_mib": round(largest / 2**20, 1) if local else None,
         "per_second_mib": [round(x, 2) for x in per_second]}
    (ROOT / ".bench-rate-cap.json").write_text(json.dumps(f, indent=1))
    print(json.dumps(f, indent=1))


if __name__ == "__main__":
    main()
