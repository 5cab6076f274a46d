"""Create a backup, watch it, restore it with a suffix, and watch the restore.

    python backup_and_restore.py --server 127.0.0.1:8080 --collection hello_milvus --suffix _py

Exits non-zero unless both jobs succeed.
"""

import argparse
import sys
import time

from milvus_backup_client import connect, pb


def state(s: int) -> str:
    return pb.JobState.Name(s).removeprefix("JOB_STATE_")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:8080")
    ap.add_argument("--collection", default="hello_milvus")
    ap.add_argument("--name", default=f"py_backup_{int(time.time())}")
    ap.add_argument("--suffix", default="_py")
    args = ap.parse_args()
    stub = connect(args.server)

    # Start the backup, read one snapshot, then re-attach with WatchBackup.
    stream = stub.CreateBackup(pb.CreateBackupRequest(backup_name=args.name, collection_names=[args.collection]))
    first = next(stream).backup
    print(f"backup {first.name} id={first.id} {state(first.state)}")
    stream.cancel()  # the job goes on without us
    last = None
    for msg in stub.WatchBackup(pb.WatchBackupRequest(name=args.name)):
        last = msg.backup
        print(f"backup {state(last.state)} {last.progress.percent}% {last.progress.files_done}/{last.progress.files_total} files")
    if last.state != pb.JOB_STATE_SUCCEEDED:
        print(f"backup failed: {last.error_message}", file=sys.stderr)
        return 1
    rows = sum(c.row_count for c in last.collections)
    print(f"backup done: {rows} rows, {last.size_bytes} bytes")

    # Restore, and watch it from a second stream.
    restore_stream = stub.Restore(pb.RestoreRequest(backup_name=args.name, collection_suffix=args.suffix, drop_existing_collections=True))
    job_id = next(restore_stream).restore.id
    last = None
    for msg in stub.WatchRestore(pb.WatchRestoreRequest(id=job_id)):
        last = msg.restore
        print(f"restore {state(last.state)} {last.progress.percent}%")
    if last.state != pb.JOB_STATE_SUCCEEDED:
        print(f"restore failed: {last.error_message}", file=sys.stderr)
        return 1
    for c in last.collections:
        print(f"restored {c.source_collection_name} -> {c.target_collection_name}: {c.imported_rows} rows")
    got = stub.GetRestore(pb.GetRestoreRequest(id=job_id)).restore
    assert got.state == pb.JOB_STATE_SUCCEEDED
    return 0


if __name__ == "__main__":
    sys.exit(main())
