"""Client of the milvus-backup gRPC API (package ``milvus.backup.v1``).

The stubs in ``milvus_backup_client.v1`` are generated from
``proto/milvus/backup/v1/backup.proto`` by ``scripts/gen_clients.sh``::

    import grpc
    from milvus_backup_client import connect, pb

    stub = connect("127.0.0.1:8080")
    for msg in stub.CreateBackup(pb.CreateBackupRequest(backup_name="b1", collection_names=["hello_milvus"])):
        print(msg.backup.state, msg.backup.progress.percent)
"""

from __future__ import annotations

import grpc

from .v1 import backup_pb2 as pb
from .v1 import backup_pb2_grpc as pb_grpc

__all__ = ["connect", "pb", "pb_grpc"]


def connect(address: str, *, token: str | None = None) -> pb_grpc.BackupServiceStub:
    """A stub for the server at ``host:port`` (plaintext; add a token if the server wants one)."""
    channel = grpc.insecure_channel(address)
    if token:
        channel = grpc.intercept_channel(channel, _Bearer(token))
    return pb_grpc.BackupServiceStub(channel)


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._md = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        md = list(details.metadata or []) + [self._md]
        return details._replace(metadata=md)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)
