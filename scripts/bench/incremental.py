#!/usr/bin/env python3
"""Incremental backups and ListBackups at scale, against the environment
whose `env` file is in $IT_RUN (default `.it-run`): the Garage setup of
`run.sh` (`IT_RUN=.bench/run`), or the test environment (moto, slower: there
the ratios, not the seconds, are the figures).

    IT_RUN=.bench/run .it-env/pymilvus/bin/python scripts/bench/incremental.py \
        [--rows 200000] [--backups 10000] [--runs 3]

Needs `cargo build [--release] --bin milvus-backup --example bench_tool`; the
newest build of each is used. Prints the figures and writes them to .bench-incremental.json.
"""

import argparse
import json
import os
import shutil
import statistics
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(line.split("=", 1) for line in (Path(os.environ.get("IT_RUN", ROOT / ".it-run")) / "env").read_text().split())
def newest(*paths):
    """The most recently built of `paths` (a stale release build is not taken)."""
    return max((p for p in paths if p.exists()), key=lambda p: p.stat().st_mtime)


BIN = newest(ROOT / "target/release/milvus-backup", ROOT / "target/debug/milvus-backup")
TOOL = newest(ROOT / "target/release/examples/bench_tool", ROOT / "target/debug/examples/bench_tool")
RUN = ROOT / ".bench-incremental"
COLL = "bench_incr"
DIM = 128


def median(xs):
    return statistics.median(xs)


def log(msg):
    print(f"[incremental] {msg}", flush=True)


class Server:
    def __init__(self, local=None, bucket=None, tag=""):
        RUN.mkdir(exist_ok=True)
        # A server with a bucket of its own runs beside the main one.
        tag = ("-" + bucket if bucket else "") + tag
        self.log = RUN / f"server{tag}.log"
        host, port = ENV["S3_ENDPOINT"].split("//")[1].split(":")
        mhost, mport = ENV["MILVUS_ADDR"].split("//")[1].split(":")
        cfg = RUN / f"config{tag}.yaml"
        cfg.write_text(
            f"milvus:\n  address: {mhost}\n  port: {mport}\n"
            f"minio:\n  address: {host}\n  port: {port}\n  accessKeyID: {ENV['S3_ACCESS_KEY']}\n"
            f"  secretAccessKey: {ENV['S3_SECRET_KEY']}\n  bucketName: {ENV['S3_BUCKET']}\n"
            f"  rootPath: {ENV['S3_ROOTPATH']}\n"
            + (f"  backupStorageType: local\n  backupRootPath: {local}\n" if local
               else f"  backupBucketName: {bucket or ENV['S3_BUCKET']}\n  backupRootPath: backup\n")
            + f"backup:\n  stateDir: {RUN / ('state' + tag)}\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([str(BIN), "--config", str(cfg), "--log-format", "json", "server", "--address", "127.0.0.1",
                                      "-p", str(self.port)], stderr=open(self.log, "w"))
        for _ in range(300):
            try:
                self.call("GET", "/api/v1/check")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def call(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.loads(r.read() or b"{}")

    def backup(self, name, incremental):
        started = time.time()
        r = self.call("POST", "/api/v1/create", {"backup_name": name, "collection_names": [COLL],
                                                 "incremental": incremental})
        seconds = time.time() - started
        got = self.call("GET", f"/api/v1/get_backup?backup_name={name}")["data"]
        if got.get("state_code") != 2:
            raise RuntimeError(f"backup {name} failed: {r}")
        reused = (got.get("incremental") or {}).get("reused_bytes", 0)
        return seconds, got["size"], got["size"] - reused

    def restore(self, name, suffix):
        target = COLL + suffix
        if utility.has_collection(target):
            utility.drop_collection(target)
        started = time.time()
        r = self.call("POST", "/api/v1/restore", {"backup_name": name, "collection_suffix": suffix})
        seconds = time.time() - started
        if r.get("code") != 0:
            raise RuntimeError(f"restore of {name} failed: {r}")
        utility.drop_collection(target)
        phases = {x["phase"]: round(x["seconds"], 2) for x in r.get("data", {}).get("phases", [])}
        log(f"restore of {name}: {seconds:.2f} s, phases {phases}")
        return seconds

    def phases(self, backup):
        """The phases the server logged for `backup`, in seconds."""
        out = {}
        for line in self.log.read_text().splitlines():
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if fields.get("message") == "phase ended" and fields.get("backup") == backup:
                out[fields["phase"]] = round(float(fields["seconds"]), 3)
        return out

    def delete(self, name):
        self.call("DELETE", f"/api/v1/delete?backup_name={name}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def insert(coll, start, n):
    rng = np.random.default_rng(start)
    for lo in range(start, start + n, 20000):
        hi = min(lo + 20000, start + n)
        coll.insert([list(range(lo, hi)), rng.random((hi - lo, DIM), dtype=np.float32)])
    coll.flush()


def fresh_collection(name, rows):
    """A new collection `name` (pk, dim-128 vector) with `rows` rows, flushed."""
    connections.connect(uri=ENV["MILVUS_ADDR"])
    if utility.has_collection(name):
        utility.drop_collection(name)
    schema = CollectionSchema([FieldSchema("pk", DataType.INT64, is_primary=True),
                               FieldSchema("v", DataType.FLOAT_VECTOR, dim=DIM)])
    coll = Collection(name, schema)
    insert(coll, 0, rows)
    return coll


def tool(*args, bucket=None):
    host = ENV["S3_ENDPOINT"]
    return subprocess.run([str(TOOL), "--endpoint", host, "--access-key", ENV["S3_ACCESS_KEY"],
                           "--secret-key", ENV["S3_SECRET_KEY"], "--bucket", bucket or ENV["S3_BUCKET"], *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def settle(limit_s=300):
    """Waits until Garage has digested a burst of writes (its CPU under 5% for
    5 s): 10,000 backups accumulate over months, not within the last second."""
    pid_file = Path(os.environ.get("IT_RUN", ROOT / ".it-run")) / "garage" / "garage.pid"
    if not pid_file.exists():
        return
    ticks = lambda: sum(int(x) for x in Path(f"/proc/{pid_file.read_text().strip()}/stat").read_text().split()[13:15])
    started = time.time()
    while time.time() - started < limit_s:
        before = ticks()
        time.sleep(5)
        if ticks() - before < 0.05 * 5 * os.sysconf("SC_CLK_TCK"):
            break
    log(f"store settled after {time.time() - started:.0f} s")


def garage_lists():
    """ListObjectsV2 requests Garage has served (its admin metrics), or None
    when the store is not the benchmark's Garage."""
    try:
        req = urllib.request.Request("http://127.0.0.1:3903/metrics",
                                     headers={"Authorization": "Bearer test-admin-token"})
        text = urllib.request.urlopen(req, timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('api_s3_request_counter{api_endpoint="ListObjectsV2"}'):
            return int(float(line.split()[-1]))
    return None


def many_backups(coll, count, f):
    """ListBackups, an incremental backup and a delete with `count` backups of
    another collection present (copies of one backup's meta, made as our
    writers make them), in a backup bucket of their own, new for this run:
    Garage keeps a deleted object's tombstone for a day and lists through it,
    so in a bucket that held earlier runs' 10,000 clones every listing would
    also measure the benchmark's own leftovers."""
    bucket = f"bench-many-{int(time.time())}"
    f["many_bucket"] = bucket
    other = fresh_collection(COLL + "_other", 100)
    server = Server(bucket=bucket)
    try:
        r = server.call("POST", "/api/v1/create", {"backup_name": "bench_incr_tpl",
                                                   "collection_names": [other.name]})
        if r.get("code") != 0:
            raise RuntimeError(f"template backup failed: {r}")
        out = tool("clone-backups", "--template", "bench_incr_tpl", "--prefix", "bench_incr_list_",
                   "--count", str(count), bucket=bucket)
        log(out)
        settle()
        lists_before = garage_lists()
        out = tool("time-list", "--server", f"http://127.0.0.1:{server.port}")
        lists_after = garage_lists()
        log(out)
        kv = dict(p.split("=") for p in out.split())
        if lists_before is not None and lists_after is not None:
            # time-list makes 5 calls; other requests of the server (its
            # background scans) may add a few.
            f["list_requests_per_call"] = (lists_after - lists_before) / 5
            log(f"LIST requests per ListBackups call: {f['list_requests_per_call']:.1f}")
        f["list_backups"] = int(kv["backups"])
        f["list_first_s"], f["list_median_s"] = float(kv["first_s"]), float(kv["median_s"])
        # The first call read every summary and packed them: a server started
        # now (a restart, another replica) reads the packs on its first call.
        packed = Server(bucket=bucket, tag="-packed")
        try:
            out = tool("time-list", "--server", f"http://127.0.0.1:{packed.port}")
        finally:
            packed.stop()
        log(f"a new server, with the packs: {out}")
        kv = dict(p.split("=") for p in out.split())
        f["list_first_packed_s"] = float(kv["first_s"])
        # A full backup of the big collection, then an unchanged incremental
        # one, and the delete of each, among the others.
        f["many_full_s"], _, _ = server.backup("bench_incr_base", False)
        f["many_incr_s"], _, f["many_incr_copied"] = server.backup("bench_incr_top", True)
        log(f"with {count} others: full {f['many_full_s']:.2f} s, unchanged incremental "
            f"{f['many_incr_s']:.2f} s ({f['many_incr_copied']} bytes copied), phases "
            f"{server.phases('bench_incr_top')}")
        for name in ["bench_incr_top", "bench_incr_base"]:
            started = time.time()
            server.delete(name)
            f[f"many_delete_{name}_s"] = time.time() - started
            log(f"delete of {name} with {count} others: {f[f'many_delete_{name}_s']:.2f} s")
    finally:
        tool("delete-prefix", "--prefix", "backup/bench_incr_list_", bucket=bucket)
        tool("delete-prefix", "--prefix", "backup/_catalog/bench_incr_list_", bucket=bucket)
        server.delete("bench_incr_tpl")
        server.stop()
        utility.drop_collection(other.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--backups", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only-many", action="store_true",
                    help="only the part with --backups other backups present")
    ap.add_argument("--local", action="store_true",
                    help="back up to the local disk (streaming copies) rather than into Milvus's bucket")
    args = ap.parse_args()
    coll = fresh_collection(COLL, args.rows)
    log(f"server {BIN}, tool {TOOL}")
    local = None
    if args.local:
        local = RUN / "local-backups"
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
    server = Server(local)
    f = {"rows": args.rows, "local": args.local}
    try:
        if args.only_many:
            many_backups(coll, args.backups, f)
            return
        # Full and unchanged incremental backups, each `runs` times (the
        # median); the last of each stays, as the next backups' base.
        full, same = [], []
        for i in range(args.runs):
            s_, f["full_bytes"], _ = server.backup(f"bench_incr_full_{i}", False)
            full.append(s_)
            log(f"full backup {i}: {s_:.2f} s, phases {server.phases(f'bench_incr_full_{i}')}")
            if i < args.runs - 1:
                server.delete(f"bench_incr_full_{i}")
        for i in range(args.runs):
            s_, _, f["unchanged_copied"] = server.backup(f"bench_incr_same_{i}", True)
            same.append(s_)
            log(f"unchanged incremental {i}: {s_:.2f} s, phases {server.phases(f'bench_incr_same_{i}')}")
            if i < args.runs - 1:
                server.delete(f"bench_incr_same_{i}")
        f["full_s"], f["unchanged_s"] = median(full), median(same)
        insert(coll, args.rows, args.rows // 10)
        f["plus10_s"], f["plus10_bytes"], f["plus10_copied"] = server.backup("bench_incr_more", True)
        f["full2_s"], f["full2_bytes"], _ = server.backup("bench_incr_full2", False)
        # Alternately, so that Milvus's state weighs on both alike.
        rf, ri = [], []
        for i in range(args.runs):
            rf.append(server.restore("bench_incr_full2", "_rf"))
            ri.append(server.restore("bench_incr_more", "_ri"))
        f["restore_full_s"], f["restore_incr_s"] = median(rf), median(ri)
        log(json.dumps(f))
        for name in ["bench_incr_more", f"bench_incr_same_{args.runs - 1}", f"bench_incr_full_{args.runs - 1}",
                     "bench_incr_full2"]:
            server.delete(name)
        if args.backups > 0 and not local:
            many_backups(coll, args.backups, f)
    finally:
        server.stop()
        utility.drop_collection(COLL)
        log(json.dumps(f))
    if args.only_many:
        return
    f["unchanged_copied_pct"] = 100 * f["unchanged_copied"] / f["full_bytes"]
    f["unchanged_time_pct"] = 100 * f["unchanged_s"] / f["full_s"]
    f["plus10_copied_pct"] = 100 * f["plus10_copied"] / f["plus10_bytes"]
    f["restore_ratio"] = f["restore_incr_s"] / f["restore_full_s"]
    (ROOT / f".bench-incremental{'-local' if local else ''}.json").write_text(json.dumps(f, indent=2))
    for k, v in f.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")


if __name__ == "__main__":
    main()
