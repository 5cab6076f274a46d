"""Generated stubs of milvus.backup.v1."""
