#!/usr/bin/env python3
"""Streaming S3 -> Azure Blob Storage: our backup against rclone's azureblob
backend on the same binlogs, measured on the TEST environment (Milvus 2.3.5
on moto, Azurite; `scripts/testenv/up.sh`). Both stream every byte through
this machine (two different services: no server-side copy), so the ratio
is the figure, not the seconds.

    .it-env/pymilvus/bin/python scripts/bench/azure.py [--rows 200000] [--runs 3]

Needs rclone (apt) and `cargo build [--release] --bin milvus-backup`; the
newest build is used. Prints the figures and writes .bench-azure.json.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from incremental import BIN, ENV, fresh_collection, log
from pymilvus import utility

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".bench-azure"
COLL = "bench_azure"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def our_config(run=RUN, bucket="bench-ours", backup_extra=""):
    """Our config in `run`: Milvus on the test S3, backups in Azurite's `bucket`."""
    host, port = ENV["S3_ENDPOINT"].split("//")[1].split(":")
    mhost, mport = ENV["MILVUS_ADDR"].split("//")[1].split(":")
    run.mkdir(exist_ok=True)
    cfg = run / "config.yaml"
    cfg.write_text(
        f"milvus:\n  address: {mhost}\n  port: {mport}\n"
        f"minio:\n  address: {host}\n  port: {port}\n  accessKeyID: {ENV['S3_ACCESS_KEY']}\n"
        f"  secretAccessKey: {ENV['S3_SECRET_KEY']}\n  bucketName: {ENV['S3_BUCKET']}\n"
        f"  rootPath: {ENV['S3_ROOTPATH']}\n"
        f"  backupStorageType: azure\n  backupAddress: {ENV['AZURE_BLOB_ENDPOINT']}\n"
        f"  backupAccessKeyID: devstoreaccount1\n  backupSecretAccessKey: {KEY}\n"
        f"  backupBucketName: {bucket}\n  backupRootPath: backup\n"
        f"backup:\n  stateDir: {run / 'state'}\n{backup_extra}")
    return cfg


def sas(string_to_sign, **fields):
    """A SAS query string signed with Azurite's account key."""
    sig = hmac.new(base64.b64decode(KEY), string_to_sign.encode(), hashlib.sha256).digest()
    return urllib.parse.urlencode({**fields, "sig": base64.b64encode(sig).decode()})


def rclone_target(container):
    """Creates `container` (account SAS) and returns a container SAS URL for rclone:
    Debian's rclone 1.60 cannot reach Azurite with account and key (it builds
    https://{account}.{endpoint}), but takes a SAS URL."""
    acct, sv, st, se = "devstoreaccount1", "2019-02-02", "2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z"
    q = sas("\n".join([acct, "rwdlac", "b", "sco", st, se, "", "", sv, ""]),
            sv=sv, ss="b", srt="sco", sp="rwdlac", st=st, se=se)
    base = ENV["AZURE_BLOB_ENDPOINT"]
    try:
        urllib.request.urlopen(urllib.request.Request(f"{base}/{container}?restype=container&{q}", method="PUT",
                                                      data=b"", headers={"x-ms-version": sv}))
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise
    q = sas("\n".join(["racwdl", st, se, f"/blob/{acct}/{container}", "", "", "", sv, "c", "", "", "", "", "", ""]),
            sv=sv, st=st, se=se, sr="c", sp="racwdl")
    return f"{base}/{container}?{q}"


def ours(cfg, name):
    started = time.time()
    subprocess.run([str(BIN), "--config", str(cfg), "create", "-n", name, "-c", COLL],
                   check=True, capture_output=True)
    seconds = time.time() - started
    subprocess.run([str(BIN), "--config", str(cfg), "delete", "-n", name], check=True, capture_output=True)
    return seconds


def rclone(collection_id, run, sas_url):
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    host = ENV["S3_ENDPOINT"]
    env.update({
        "RCLONE_CONFIG_SRC_TYPE": "s3", "RCLONE_CONFIG_SRC_PROVIDER": "Other",
        "RCLONE_CONFIG_SRC_ENDPOINT": host, "RCLONE_CONFIG_SRC_ACCESS_KEY_ID": ENV["S3_ACCESS_KEY"],
        "RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY": ENV["S3_SECRET_KEY"],
        "RCLONE_CONFIG_AZ_TYPE": "azureblob", "RCLONE_CONFIG_AZ_SAS_URL": sas_url,
    })
    started = time.time()
    for kind in ("insert_log", "delta_log", "stats_log"):
        src = f"src:{ENV['S3_BUCKET']}/{ENV['S3_ROOTPATH']}/{kind}/{collection_id}"
        subprocess.run(["rclone", "copy", "--s3-force-path-style", src, f"az:bench-rclone/{run}/{kind}"],
                       check=True, env=env, capture_output=True)
    seconds = time.time() - started
    subprocess.run(["rclone", "purge", f"az:bench-rclone/{run}"], env=env, capture_output=True)
    return seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    coll = fresh_collection(COLL, args.rows)
    collection_id = coll.describe()["collection_id"]
    cfg = our_config()
    log(f"server {BIN}; {args.rows} rows, collection {collection_id}")
    sas_url = rclone_target("bench-rclone")
    pairs = []
    for i in range(args.runs):
        a = ours(cfg, f"bench_azure_{i}")
        b = rclone(collection_id, i, sas_url)
        log(f"run {i}: ours {a:.2f} s, rclone {b:.2f} s")
        pairs.append((a, b))
    f = {
        "rows": args.rows, "build": BIN.parent.name,
        "ours_s": statistics.median(a for a, _ in pairs),
        "rclone_s": statistics.median(b for _, b in pairs),
        "ratio": statistics.median(b / a for a, b in pairs),
    }
    utility.drop_collection(COLL)
    (ROOT / ".bench-azure.json").write_text(json.dumps(f, indent=1))
    print(json.dumps(f, indent=1))


if __name__ == "__main__":
    main()
