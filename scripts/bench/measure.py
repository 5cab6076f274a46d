"""Runs the benchmark's measurements side by side and writes docs/benchmarks.md.

Called by scripts/bench/run.sh with Milvus 2.3.5 on Garage running and the
dataset in place. Every figure is a median of --runs runs unless it says so.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sys
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from pymilvus import Collection, connections, utility

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / ".bench"
RUN = BENCH / "run"
BIN = ROOT / "target/release/milvus-backup"
TOOL = ROOT / "target/release/examples/bench_tool"
BIG = ["bench_big_a", "bench_big_b"]
MIB = 1024 * 1024


def env():
    out = {}
    for line in (RUN / "env").read_text().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


E = env()
AK, SK, BUCKET, FILES = E["S3_ACCESS_KEY"], E["S3_SECRET_KEY"], E["S3_BUCKET"], E["S3_ROOTPATH"]
# (AWS_CA_BUNDLE, if set, makes rclone's S3 client fail: "unsupported transport".)
RCLONE_ENV = dict(
    {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
    RCLONE_CONFIG_GARAGE_TYPE="s3",
    RCLONE_CONFIG_GARAGE_PROVIDER="Other",
    RCLONE_CONFIG_GARAGE_ENDPOINT="http://127.0.0.1:3900",
    RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID=AK,
    RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY=SK,
    RCLONE_CONFIG_GARAGE_REGION="us-east-1",
    RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE="true",
)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def config(path, local_dir=None, state="state", rate=0):
    backup = (
        f"  backupStorageType: local\n  backupRootPath: {local_dir}\n"
        if local_dir
        else f"  backupBucketName: {BUCKET}\n  backupRootPath: backup\n"
    )
    path.write_text(
        "log:\n  level: info\n"
        "milvus:\n  address: 127.0.0.1\n  port: 19530\n"
        f"minio:\n  address: 127.0.0.1\n  port: 3900\n  accessKeyID: {AK}\n  secretAccessKey: {SK}\n"
        f"  bucketName: {BUCKET}\n  rootPath: {FILES}\n{backup}"
        f"backup:\n  stateDir: {RUN / state}\n  rateLimitMiBps: {rate}\n"
    )
    return path


class Server:
    """Our server as a process, for its wall times and its peak RSS."""

    def __init__(self, cfg):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = RUN / f"server-{self.port}.log"
        self.proc = subprocess.Popen([str(BIN), "--config", str(cfg), "--log-format", "json", "server",
                                      "--address", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        SERVERS.append(self)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                self.get("/api/v1/list")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def call(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=7200) as r:
            return json.loads(r.read() or b"{}")

    def get(self, path):
        return self.call("GET", path)

    def peak_rss_mib(self):
        if self.proc.poll() is not None:
            raise RuntimeError("the server is gone")
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def backup(self, name, collections):
        started = time.time()
        r = self.call("POST", "/api/v1/create", {"backup_name": name, "collection_names": collections, "async": False})
        seconds = time.time() - started
        got = self.get(f"/api/v1/get_backup?backup_name={name}")["data"]
        if got.get("state_code") != 2:
            raise RuntimeError(f"backup {name} failed: {r} {got}")
        self.phases = self.backup_phases(name)
        self.copy_seconds = self.phases["copy"]
        log(f"{name} phases: " + ", ".join(f"{p} {s:.2f} s" for p, s in self.phases.items()))
        return seconds, got["size"]

    def backup_phases(self, backup):
        """The `seconds` of each phase the server logged for a backup
        (`phase ended` lines: describe, flush and list; plan reuse; copy; meta)."""
        phases = {}
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            fields = entry.get("fields", {})
            if fields.get("message") == "phase ended" and fields.get("backup") == backup:
                phases[fields["phase"]] = float(fields["seconds"])
        if "copy" not in phases:
            raise RuntimeError(f"no 'phase ended' lines for {backup} in {self.log}")
        return phases

    def restore(self, name, collections, suffix):
        started = time.time()
        r = self.call("POST", "/api/v1/restore", {"backup_name": name, "collection_names": collections,
                                                  "collection_suffix": suffix, "async": False})
        seconds = time.time() - started
        if r.get("code") != 0 or r.get("data", {}).get("state_code") != 2:
            raise RuntimeError(f"restore of {name} failed: {r}")
        phases = {p["phase"]: p["seconds"] for p in r["data"].get("phases", [])}
        self.last_restore_phases = phases
        return seconds

    def delete(self, name):
        self.call("DELETE", f"/api/v1/delete?backup_name={name}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)


# Every server started, so that none outlives the benchmark.
SERVERS = []


def tool(*args):
    """Runs bench_tool; returns its output line."""
    return subprocess.run([str(TOOL), "--access-key", AK, "--secret-key", SK, "--bucket", BUCKET, *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def rclone(*args):
    started = time.time()
    subprocess.run(["rclone", *args], env=RCLONE_ENV, check=True, stdout=subprocess.DEVNULL)
    return time.time() - started


def collection_filters(names):
    connections.connect(uri="http://127.0.0.1:19530")
    ids = [Collection(n).describe()["collection_id"] for n in names]
    flags = []
    for i in ids:
        # What a backup copies: insert and delta logs (stats logs are rebuilt by the import).
        for kind in ["insert_log", "delta_log"]:
            flags += ["--include", f"/{kind}/{i}/**"]
    return ids, flags


def wait_flushable(name, within=180):
    """After a restart Milvus needs a while to hand the channels to the new
    data node ("session not found->datanode-1"); wait until a flush goes through."""
    deadline = time.time() + within
    while True:
        try:
            Collection(name).flush(timeout=30)
            return
        except Exception as e:  # noqa: BLE001 - any error is retried until the deadline
            if time.time() > deadline:
                raise
            log(f"Milvus not ready to flush yet: {str(e).splitlines()[0][:120]}")
            time.sleep(5)


def rclone_bytes(flags):
    out = subprocess.run(["rclone", "size", "--json", f"garage:{BUCKET}/{FILES}", *flags],
                         env=RCLONE_ENV, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["bytes"]


def raw_loop(ids, runs):
    """The store's limit: the median time of bare CopyObject calls, 256 at
    once, over the collections' insert and delta logs (listed untimed).
    The median time of the listing alone (every prefix at once) goes to
    RAW_LIST[ids' first id]."""
    raw, listing = [], []
    src = [f"{FILES}/{kind}/{i}/" for i in ids for kind in ["insert_log", "delta_log"]]
    for i in range(runs):
        out = subprocess.run([str(TOOL), "--access-key", AK, "--secret-key", SK, "--bucket", BUCKET,
                              "raw-copy", *sum([["--src", s] for s in src], []), "--dst", f"raw-copy/{i}"],
                             check=True, capture_output=True, text=True).stdout
        raw.append(float(out.split(" seconds=")[1]))
        listing.append(float(out.split("list_seconds=")[1].split()[0]))
        log(f"raw CopyObject run {i}: {raw[-1]:.2f} s ({out.strip()})")
        tool("delete-prefix", "--prefix", f"raw-copy/{i}/")
    RAW_LIST[ids[0]] = median(listing)
    return median(raw)


RAW_LIST = {}


def whole_job(server, figures, key, collections, runs):
    """Our backup of `collections`, `runs` times: the median whole job, its
    copy phase, and the median of each phase (figures `{key}_*`)."""
    times, phases = [], {}
    for i in range(runs):
        name = f"bench_{key}_{i}"
        seconds, nbytes = server.backup(name, collections)
        times.append(seconds)
        for p, s in server.phases.items():
            phases.setdefault(p, []).append(s)
        figures["backup_mib" if key == "same" else f"{key}_mib"] = nbytes / MIB
        log(f"ours {key} run {i}: {seconds:.2f} s, copy phase {server.copy_seconds:.2f} s, {nbytes / MIB:.1f} MiB")
        server.delete(name)
    figures[f"{key}_ours_s"] = median(times)
    figures[f"{key}_ours_copy_s"] = median(phases["copy"])
    figures[f"{key}_phases"] = {p: median(s) for p, s in phases.items()}


def restore_section(server, figures, runs):
    """Our restore of bench_big_a from a same-bucket backup against Milvus's
    import of the same binlogs alone, one of each in turn (Milvus's import
    time drifts by seconds over minutes: runs in turn share the drift), in
    the order A B, then B A (so that neither always runs first), each pair's
    collections dropped only after both ran."""
    server.backup("bench_restore_src", BIG[:1])
    rest, verify, alone = [], [], []

    def ours(i):
        rest.append(server.restore("bench_restore_src", BIG[:1], f"_r{i}"))
        verify.append(server.last_restore_phases.get("verify", 0.0))
        log(f"ours restore run {i}: {rest[-1]:.2f} s (verify phase {verify[-1]:.2f} s)")

    def import_alone(i):
        # The reference: Milvus's import of the same binlogs alone, into an
        # empty collection made beforehand (untimed); no copy is needed in
        # the same bucket.
        target = f"{BIG[0]}_i{i}"
        server.call("POST", "/api/v1/restore", {"backup_name": "bench_restore_src", "collection_names": BIG[:1],
                                                "collection_suffix": f"_i{i}", "metaOnly": True, "async": False})
        out = tool("import-alone", "--backup", "bench_restore_src", "--target", target)
        alone.append(float(out.split("seconds=")[1]))
        log(f"Milvus import alone run {i}: {alone[-1]:.2f} s ({out})")

    for i in range(runs):
        targets = [f"{BIG[0]}_r{i}", f"{BIG[0]}_i{i}"]
        for target in targets:
            if utility.has_collection(target):
                utility.drop_collection(target)
        for step in ([ours, import_alone] if i % 2 == 0 else [import_alone, ours]):
            step(i)
        for target in targets:
            utility.drop_collection(target)
    figures["restore_ours_s"] = median(rest)
    # The verify phase proves every object before Milvus imports it; the
    # restore without it would take the rest of the time.
    figures["restore_verify_s"] = median(verify)
    figures["restore_import_alone_s"] = median(alone)
    server.delete("bench_restore_src")


def only_restore(runs):
    """Re-measures the restore against Milvus's import alone, over the
    figures of the last full run."""
    path = RUN / "figures.json"
    figures = json.loads(path.read_text())
    connections.connect(uri="http://127.0.0.1:19530")
    wait_flushable(BIG[0])
    server = Server(config(RUN / "same.yaml"))
    try:
        server.delete("bench_restore_src")  # left by an interrupted run
    except urllib.error.HTTPError:
        pass
    restore_section(server, figures, runs)
    server.stop()
    log(f"restore {figures['restore_ours_s']:.2f} s (verify {figures['restore_verify_s']:.2f} s), "
        f"import alone {figures['restore_import_alone_s']:.2f} s, "
        f"ratio {figures['restore_ours_s'] / figures['restore_import_alone_s']:.3f}")
    path.write_text(json.dumps(figures, indent=2))
    write_report(figures)


def only_whole_job(runs):
    """Re-measures the whole-job ratios alone (printed, and merged into the
    figures of the last full run when there is one)."""
    path = RUN / "figures.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    ids, _ = collection_filters(BIG)
    small = [f"bench_small_{i:04d}" for i in range(100)]
    small_ids, _ = collection_filters(small)
    wait_flushable(BIG[0])
    server = Server(config(RUN / "same.yaml"))
    whole_job(server, figures, "same", BIG, runs)
    whole_job(server, figures, "small100", small, runs)
    server.stop()
    figures["same_raw_s"] = raw_loop(ids, runs)
    figures["same_raw_list_s"] = RAW_LIST[ids[0]]
    figures["small100_raw_s"] = raw_loop(small_ids, runs)
    figures["small100_raw_list_s"] = RAW_LIST[small_ids[0]]
    for key in ["same", "small100"]:
        log(f"{key}: whole job {figures[f'{key}_ours_s']:.3f} s, raw loop {figures[f'{key}_raw_s']:.3f} s, "
            f"ratio {figures[f'{key}_raw_s'] / figures[f'{key}_ours_s']:.2f}; phases {figures[f'{key}_phases']}")
    if "runs" in figures:
        path.write_text(json.dumps(figures, indent=2))
        write_report(figures)


def median(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--only-list", action="store_true", help="re-measure ListBackups alone")
    ap.add_argument("--only-restore", action="store_true",
                    help="re-measure the restore against Milvus's import alone, in turn")
    ap.add_argument("--only-whole-job", action="store_true",
                    help="re-measure the whole-job ratios alone (big and 100 small collections vs the raw loop)")
    args = ap.parse_args()
    runs = args.runs
    if args.only_list:
        return only_list(runs, args.small)
    if args.only_whole_job:
        return only_whole_job(runs)
    if args.only_restore:
        return only_restore(runs)
    figures = {}
    ids, flags = collection_filters(BIG)
    wait_flushable(BIG[0])
    size = rclone_bytes(flags)
    log(f"big collections {BIG} (ids {ids}): {size / MIB:.0f} MiB of binlogs")
    figures["data_mib"] = size / MIB

    # 1. Same endpoint: ours (server-side copy), rclone, raw CopyObject loop.
    server = Server(config(RUN / "same.yaml"))
    # Leftovers of an interrupted earlier run.
    tool("delete-prefix", "--prefix", "backup/bench_list_")
    tool("delete-prefix", "--prefix", "backup/_catalog/bench_list_")
    for b in server.get("/api/v1/list").get("data") or []:
        if b.get("name", "").startswith("bench_"):
            server.delete(b["name"])
    for name in utility.list_collections():
        if name.startswith("bench_big_a_"):
            utility.drop_collection(name)
    whole_job(server, figures, "same", BIG, runs)
    figures["same_rss_mib"] = server.peak_rss_mib()
    # The 100-small-collections set: fixed costs per collection dominate.
    small = [f"bench_small_{i:04d}" for i in range(min(100, args.small))]
    small_ids, _ = collection_filters(small)
    whole_job(server, figures, "small100", small, runs)
    figures["small100_raw_s"] = raw_loop(small_ids, runs)
    figures["small100_raw_list_s"] = RAW_LIST[small_ids[0]]
    server.stop()
    # Half the data, a fresh process: its peak RSS against the full run's.
    server = Server(config(RUN / "same.yaml"))
    server.backup("bench_same_half", BIG[:1])
    figures["same_rss_half_mib"] = server.peak_rss_mib()
    server.delete("bench_same_half")
    server.stop()

    rc = []
    for i in range(runs):
        rc.append(rclone("copy", f"garage:{BUCKET}/{FILES}", f"garage:{BUCKET}/rclone-copy/{i}",
                         "--transfers", "64", "--checkers", "64", *flags))
        log(f"rclone same-endpoint run {i}: {rc[-1]:.2f} s")
        rclone("purge", f"garage:{BUCKET}/rclone-copy/{i}")
    figures["same_rclone_s"] = median(rc)

    figures["same_raw_s"] = raw_loop(ids, runs)
    figures["same_raw_list_s"] = RAW_LIST[ids[0]]

    # 2. Streaming to the local filesystem: ours and rclone.
    local = RUN / "local-backups"
    stream_ours, stream_rss, stream_copy = [], [], []
    for i in range(runs):
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        server = Server(config(RUN / "local.yaml", local_dir=local))
        seconds, _ = server.backup(f"bench_local_{i}", BIG)
        stream_rss.append(server.peak_rss_mib())
        stream_copy.append(server.copy_seconds)
        for ph, sec in server.phases.items():
            figures.setdefault("stream_phase_runs", {}).setdefault(ph, []).append(sec)
        server.stop()
        stream_ours.append(seconds)
        log(f"ours streaming run {i}: {seconds:.2f} s, copy phase {stream_copy[-1]:.2f} s, peak RSS {stream_rss[-1]:.0f} MiB")
    shutil.rmtree(local, ignore_errors=True)
    figures["stream_ours_s"] = median(stream_ours)
    figures["stream_ours_copy_s"] = median(stream_copy)
    figures["stream_phases"] = {ph: median(x) for ph, x in figures.pop("stream_phase_runs").items()}
    figures["stream_rss_mib"] = max(stream_rss)
    stream_rc = []
    for i in range(runs):
        dst = RUN / "rclone-local"
        shutil.rmtree(dst, ignore_errors=True)
        stream_rc.append(rclone("copy", f"garage:{BUCKET}/{FILES}", str(dst), "--transfers", "64",
                                "--checkers", "64", *flags))
        log(f"rclone streaming run {i}: {stream_rc[-1]:.2f} s")
        shutil.rmtree(dst, ignore_errors=True)
    figures["stream_rclone_s"] = median(stream_rc)

    # The bandwidth cap: a streaming backup of both big collections at 50 MiB/s.
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    server = Server(config(RUN / "capped.yaml", local_dir=local, rate=50))
    seconds, nbytes = server.backup("bench_capped", BIG)
    server.stop()
    shutil.rmtree(local, ignore_errors=True)
    figures["cap_mibps"] = 50
    figures["cap_achieved_mibps"] = nbytes / MIB / server.copy_seconds
    figures["cap_wall_mibps"] = nbytes / MIB / seconds
    log(f"capped at 50 MiB/s: {nbytes / MIB:.0f} MiB, copy phase {server.copy_seconds:.2f} s "
        f"= {figures['cap_achieved_mibps']:.1f} MiB/s (whole job {figures['cap_wall_mibps']:.1f} MiB/s)")

    # 3. Restore of one big collection from a same-bucket backup (Milvus imports in place).
    server = Server(config(RUN / "same.yaml"))
    restore_section(server, figures, runs)

    # 5. Scaling: 100 and all small collections; ListBackups with 1,000 and 10,000 backups.
    small = [f"bench_small_{i:04d}" for i in range(args.small)]
    for n in sorted({min(100, len(small)), len(small)}):
        seconds, _ = server.backup(f"bench_scale_{n}", small[:n])
        figures[f"scale_{n}_s"] = seconds
        log(f"ours backup of {n} small collections: {seconds:.2f} s")
        server.delete(f"bench_scale_{n}")
    list_section(server, figures, runs, small)
    server.stop()
    figures["runs"] = runs
    (RUN / "figures.json").write_text(json.dumps(figures, indent=2))
    log(f"figures: {json.dumps(figures)}")
    write_report(figures)


def list_section(server, figures, runs, small):
    """ListBackups timed with 1,000 and 10,000 backups present (meta copies of a small one)."""
    server.backup("bench_tpl", small[:1])
    for total in [1000, 10000]:
        tool("clone-backups", "--template", "bench_tpl", "--prefix", "bench_list_", "--count", str(total))
        times = []
        for _ in range(runs):
            started = time.time()
            listed = server.get("/api/v1/list")
            times.append(time.time() - started)
        figures[f"list_{total}_s"] = median(times)
        log(f"ListBackups with {len(listed.get('data', []))} backups: {median(times):.2f} s")
    tool("delete-prefix", "--prefix", "backup/bench_list_")
    server.delete("bench_tpl")


def only_list(runs, small_count):
    """Re-measures ListBackups alone, over the figures of the last full run."""
    figures = json.loads((RUN / "figures.json").read_text())
    connections.connect(uri="http://127.0.0.1:19530")
    wait_flushable("bench_small_0000")
    server = Server(config(RUN / "same.yaml"))
    list_section(server, figures, runs, [f"bench_small_{i:04d}" for i in range(small_count)])
    server.stop()
    (RUN / "figures.json").write_text(json.dumps(figures, indent=2))
    write_report(figures)


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


def yes(ok):
    return "yes" if ok else "**no**"


def row(what, ours, ref, target, mib):
    """A throughput row: times, MiB/s of the backup's bytes, and ref/ours."""
    # Under 10 ms the copy phase is the last copy's answer, not a copy rate.
    if ours < 0.01:
        return (f"| {what} | {ours:.3f} s (all but the last answers copied while describing) "
                f"| {ref:.2f} s | | ≥ {target}× | (no copy left) |")
    ratio = ref / ours
    goal = "" if target is None else f"≥ {target}×"
    met = "" if target is None else yes(ratio >= target)
    return (f"| {what} | {ours:.2f} s ({mib / ours:.0f} MiB/s) | {ref:.2f} s ({mib / ref:.0f} MiB/s) "
            f"| {ratio:.2f}× | {goal} | {met} |")


def write_report(f):
    mib = f["backup_mib"]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = [
        "# Benchmarks",
        "",
        "Produced by `scripts/bench/run.sh` (by hand, never in CI). Every time is a",
        f"median of {f['runs']} runs unless marked. Raw figures: `.bench/run/figures.json`.",
        "The same-endpoint and 100-small-collections whole-job rows and their raw loops may",
        "come from a later `measure.py --only-whole-job --runs 5` (median of 5, one after the",
        "other in one run), the REST ListBackups rows from `--only-list`, and the restore rows",
        "from `--only-restore` (our restore and Milvus's import alone in turn, in the order",
        "A B, then B A).",
        "",
        f"- Machine: {os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}",
        f"- Milvus 2.3.5 standalone (PyPI wheel) on Garage: `{version([str(BENCH / 'tools/bin/garage'), '--version'])}`",
        f"- `{version(['rclone', 'version'])}`; milvus-backup at `{rev}` (release build)",
        f"- Data: bench_big_a and bench_big_b, 1,000,000 rows × dim 128 each, flushed every 100k rows: {f['data_mib']:.0f} MiB of insert and delta logs ({mib:.0f} MiB in a backup of both), plus 1,000 small collections of 100 rows",
        "",
        "Throughput ratio = the reference's time / ours (above 1: we are faster). \"Copy phase\" is",
        "the time our server logged for the copies after the collections were described; a full",
        "backup copies while it describes (what Milvus had flushed already, then each collection",
        "as it is described), so that phase holds only the rest. \"Whole job\" is what counts: it",
        "adds Milvus's flush, the listing and the meta writes, which rclone and the raw loop do not",
        "do. The rows \"with its listing\" add the LISTs any backup needs to the raw loop (no target).",
        "",
        "| measure | ours | reference | ratio | target | met |",
        "|---|---|---|---|---|---|",
        row("same endpoint, copy phase (what is left after describing) vs `rclone copy --transfers 64`", f["same_ours_copy_s"], f["same_rclone_s"], 0.95, mib),
        row("same endpoint, whole job vs `rclone copy --transfers 64`", f["same_ours_s"], f["same_rclone_s"], 0.95, mib),
        row("same endpoint, copy phase (what is left after describing) vs raw CopyObject loop (256 at once)", f["same_ours_copy_s"], f["same_raw_s"], 0.9, mib),
        row("same endpoint, whole job vs raw CopyObject loop (256 at once)", f["same_ours_s"], f["same_raw_s"], 0.9, mib),
        row("streaming to local disk, copy phase (what is left after describing) vs `rclone copy` to local disk", f["stream_ours_copy_s"], f["stream_rclone_s"], 0.9, mib),
        row("streaming to local disk, whole job vs `rclone copy` to local disk", f["stream_ours_s"], f["stream_rclone_s"], 0.9, mib),
        f"| peak RSS, same endpoint (half the data / all of it) | {f['same_rss_half_mib']:.0f} / {f['same_rss_mib']:.0f} MiB | | | ≤ 100 MB, flat | {yes(f['same_rss_mib'] * 1.048576 <= 100)} |",
        f"| peak RSS, streaming (largest of the runs) | {f['stream_rss_mib']:.0f} MiB | | | ≤ 100 MB | {yes(f['stream_rss_mib'] * 1.048576 <= 100)} |",
        f"| restore of bench_big_a vs Milvus's import alone (same bucket: no copy) | {f['restore_ours_s']:.2f} s | {f['restore_import_alone_s']:.2f} s | {f['restore_ours_s'] / f['restore_import_alone_s']:.2f} (time) | ≤ 1.1 (time) | {yes(f['restore_ours_s'] / f['restore_import_alone_s'] <= 1.1)} |",
        f"| restore's verify phase (every object proven before import) vs the restore without it | {f['restore_ours_s']:.2f} s, of which verify {f['restore_verify_s']:.2f} s | {f['restore_ours_s'] - f['restore_verify_s']:.2f} s | {f['restore_ours_s'] / (f['restore_ours_s'] - f['restore_verify_s']):.3f} (time) | | |",
        f"| `backup.rateLimitMiBps: {f['cap_mibps']}`, streaming, copy phase (1 run; whole job {f['cap_wall_mibps']:.1f}) | {f['cap_achieved_mibps']:.1f} MiB/s | {f['cap_mibps']} MiB/s | {f['cap_achieved_mibps'] / f['cap_mibps']:.2f} | within 10% | {yes(abs(f['cap_achieved_mibps'] / f['cap_mibps'] - 1) <= 0.1)} |",
    ]
    if "small100_ours_s" in f:
        lines.append(row("100 small collections, whole job vs raw CopyObject loop (256 at once)",
                         f["small100_ours_s"], f["small100_raw_s"], 0.8, f["small100_mib"]))
    # For reference, no target: the raw loop with the LISTs any backup needs
    # (every prefix at once, then the copies).
    for key, what, mib_key in [("same", "same endpoint", "backup_mib"), ("small100", "100 small collections", "small100_mib")]:
        if f"{key}_raw_list_s" in f and f"{key}_ours_s" in f:
            lines.append(row(f"{what}, whole job vs raw loop with its listing (LIST every prefix at once, then copy)",
                             f[f"{key}_ours_s"], f[f"{key}_raw_s"] + f[f"{key}_raw_list_s"], None, f[mib_key]))
    scale = sorted(k for k in f if k.startswith("scale_"))
    if len(scale) == 2:
        a, b = (f[k] for k in sorted(scale, key=lambda k: int(k.split("_")[1])))
        lines.append(f"| backup of 100 / 1000 small collections (1 run each) | {a:.1f} s / {b:.1f} s | | {b / a:.1f} (time) | ≤ 11 | {yes(b / a <= 11)} |")
    for n in [1000, 10000]:
        if f"list_{n}_s" in f:
            lines.append(f"| ListBackups (REST) with {n} backups present | {f[f'list_{n}_s']:.2f} s | | | | |")
    lines += ["", "Where the time of each backup went (the job's own phases, median of the runs; a full",
              "backup's copies made while it describes fall in the first phase):", "",
              "| case | " + " | ".join(PHASES) + " |", "|---|" + "---|" * len(PHASES)]
    for key, what in [("same", "same endpoint, both big collections"), ("small100", "100 small collections"),
                      ("stream", "streaming to local disk, both big collections")]:
        if f"{key}_phases" in f:
            ph = {("describe, flush and list" if p.startswith("describe") else p): v
                  for p, v in f[f"{key}_phases"].items()}
            cells = [f"{ph[p]:.2f} s" if p in ph else "" for p in PHASES]
            lines.append(f"| {what} | " + " | ".join(cells) + " |")
    # The sections after the table are kept as they are.
    doc = ROOT / "docs/benchmarks.md"
    old = doc.read_text()
    rest = old[old.index("\n## "):] if "\n## " in old else ""
    doc.write_text("\n".join(lines) + "\n" + rest)


PHASES = ["describe, flush and list", "plan reuse", "copy", "meta"]


if __name__ == "__main__":
    # A SIGTERM ends the run through `finally`, so no server outlives it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    finally:
        for server in SERVERS:
            server.stop()
