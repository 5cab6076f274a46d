from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class Progress(_message.Message):
    __slots__ = ("percent", "bytes_done", "bytes_total", "files_done", "files_total", "collections_done", "collections_total", "totals_growing")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_DONE_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TOTALS_GROWING_FIELD_NUMBER: _ClassVar[int]
    percent: int
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    collections_done: int
    collections_total: int
    totals_growing: bool
    def __init__(self, percent: _Optional[int] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., files_done: _Optional[int] = ..., files_total: _Optional[int] = ..., collections_done: _Optional[int] = ..., collections_total: _Optional[int] = ..., totals_growing: bool = ...) -> None: ...

class BackupCollection(_message.Message):
    __slots__ = ("db_name", "collection_name", "collection_id", "row_count", "size_bytes", "partition_count", "segment_count", "backup_timestamp")
    DB_NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARTITION_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    BACKUP_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    db_name: str
    collection_name: str
    collection_id: int
    row_count: int
    size_bytes: int
    partition_count: int
    segment_count: int
    backup_timestamp: int
    def __init__(self, db_name: _Optional[str] = ..., collection_name: _Optional[str] = ..., collection_id: _Optional[int] = ..., row_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., partition_count: _Optional[int] = ..., segment_count: _Optional[int] = ..., backup_timestamp: _Optional[int] = ...) -> None: ...

class Backup(_message.Message):
    __slots__ = ("id", "name", "state", "error_message", "progress", "size_bytes", "milvus_version", "collections", "backup_timestamp", "start_time", "end_time", "meta_only", "incremental", "based_on", "files_reused", "bytes_reused", "phases", "error_kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MILVUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    BACKUP_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    META_ONLY_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    BASED_ON_FIELD_NUMBER: _ClassVar[int]
    FILES_REUSED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REUSED_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    state: JobState
    error_message: str
    progress: Progress
    size_bytes: int
    milvus_version: str
    collections: _containers.RepeatedCompositeFieldContainer[BackupCollection]
    backup_timestamp: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    meta_only: bool
    incremental: bool
    based_on: _containers.RepeatedScalarFieldContainer[str]
    files_reused: int
    bytes_reused: int
    phases: _containers.RepeatedCompositeFieldContainer[Phase]
    error_kind: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., error_message: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., size_bytes: _Optional[int] = ..., milvus_version: _Optional[str] = ..., collections: _Optional[_Iterable[_Union[BackupCollection, _Mapping]]] = ..., backup_timestamp: _Optional[int] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., meta_only: bool = ..., incremental: bool = ..., based_on: _Optional[_Iterable[str]] = ..., files_reused: _Optional[int] = ..., bytes_reused: _Optional[int] = ..., phases: _Optional[_Iterable[_Union[Phase, _Mapping]]] = ..., error_kind: _Optional[str] = ...) -> None: ...

class Phase(_message.Message):
    __slots__ = ("name", "seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    seconds: float
    def __init__(self, name: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class CreateBackupRequest(_message.Message):
    __slots__ = ("backup_name", "collection_names", "database_names", "meta_only", "request_id", "incremental")
    BACKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    DATABASE_NAMES_FIELD_NUMBER: _ClassVar[int]
    META_ONLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    backup_name: str
    collection_names: _containers.RepeatedScalarFieldContainer[str]
    database_names: _containers.RepeatedScalarFieldContainer[str]
    meta_only: bool
    request_id: str
    incremental: bool
    def __init__(self, backup_name: _Optional[str] = ..., collection_names: _Optional[_Iterable[str]] = ..., database_names: _Optional[_Iterable[str]] = ..., meta_only: bool = ..., request_id: _Optional[str] = ..., incremental: bool = ...) -> None: ...

class CreateBackupResponse(_message.Message):
    __slots__ = ("backup",)
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    backup: Backup
    def __init__(self, backup: _Optional[_Union[Backup, _Mapping]] = ...) -> None: ...

class WatchBackupRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchBackupResponse(_message.Message):
    __slots__ = ("backup",)
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    backup: Backup
    def __init__(self, backup: _Optional[_Union[Backup, _Mapping]] = ...) -> None: ...

class ListBackupsRequest(_message.Message):
    __slots__ = ("collection_name",)
    COLLECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    collection_name: str
    def __init__(self, collection_name: _Optional[str] = ...) -> None: ...

class ListBackupsResponse(_message.Message):
    __slots__ = ("backup",)
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    backup: Backup
    def __init__(self, backup: _Optional[_Union[Backup, _Mapping]] = ...) -> None: ...

class GetBackupRequest(_message.Message):
    __slots__ = ("name", "id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetBackupResponse(_message.Message):
    __slots__ = ("backup",)
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    backup: Backup
    def __init__(self, backup: _Optional[_Union[Backup, _Mapping]] = ...) -> None: ...

class DeleteBackupRequest(_message.Message):
    __slots__ = ("name", "detached")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    name: str
    detached: bool
    def __init__(self, name: _Optional[str] = ..., detached: bool = ...) -> None: ...

class DeleteBackupResponse(_message.Message):
    __slots__ = ("name", "objects_deleted", "objects_kept", "job")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    name: str
    objects_deleted: int
    objects_kept: int
    job: DeleteJob
    def __init__(self, name: _Optional[str] = ..., objects_deleted: _Optional[int] = ..., objects_kept: _Optional[int] = ..., job: _Optional[_Union[DeleteJob, _Mapping]] = ...) -> None: ...

class DeleteJob(_message.Message):
    __slots__ = ("id", "backup_name", "state", "error_message", "objects_deleted", "objects_total", "objects_kept", "start_time", "end_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    BACKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    backup_name: str
    state: JobState
    error_message: str
    objects_deleted: int
    objects_total: int
    objects_kept: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., backup_name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., error_message: _Optional[str] = ..., objects_deleted: _Optional[int] = ..., objects_total: _Optional[int] = ..., objects_kept: _Optional[int] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchDeleteRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchDeleteResponse(_message.Message):
    __slots__ = ("delete",)
    DELETE_FIELD_NUMBER: _ClassVar[int]
    delete: DeleteJob
    def __init__(self, delete: _Optional[_Union[DeleteJob, _Mapping]] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("backup_name", "collection_names", "collection_suffix", "collection_renames", "drop_existing_collections", "skip_create_collection", "restore_index", "load", "meta_only", "request_id", "database_names")
    class CollectionRenamesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BACKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_SUFFIX_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_RENAMES_FIELD_NUMBER: _ClassVar[int]
    DROP_EXISTING_COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    SKIP_CREATE_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    RESTORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    META_ONLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATABASE_NAMES_FIELD_NUMBER: _ClassVar[int]
    backup_name: str
    collection_names: _containers.RepeatedScalarFieldContainer[str]
    collection_suffix: str
    collection_renames: _containers.ScalarMap[str, str]
    drop_existing_collections: bool
    skip_create_collection: bool
    restore_index: bool
    load: bool
    meta_only: bool
    request_id: str
    database_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, backup_name: _Optional[str] = ..., collection_names: _Optional[_Iterable[str]] = ..., collection_suffix: _Optional[str] = ..., collection_renames: _Optional[_Mapping[str, str]] = ..., drop_existing_collections: bool = ..., skip_create_collection: bool = ..., restore_index: bool = ..., load: bool = ..., meta_only: bool = ..., request_id: _Optional[str] = ..., database_names: _Optional[_Iterable[str]] = ...) -> None: ...

class RestoreCollection(_message.Message):
    __slots__ = ("source_db_name", "source_collection_name", "target_db_name", "target_collection_name", "state", "row_count", "imported_rows", "error_message", "temp_collection_name")
    SOURCE_DB_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_COLLECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_DB_NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLLECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_ROWS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TEMP_COLLECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    source_db_name: str
    source_collection_name: str
    target_db_name: str
    target_collection_name: str
    state: JobState
    row_count: int
    imported_rows: int
    error_message: str
    temp_collection_name: str
    def __init__(self, source_db_name: _Optional[str] = ..., source_collection_name: _Optional[str] = ..., target_db_name: _Optional[str] = ..., target_collection_name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., row_count: _Optional[int] = ..., imported_rows: _Optional[int] = ..., error_message: _Optional[str] = ..., temp_collection_name: _Optional[str] = ...) -> None: ...

class PhaseTime(_message.Message):
    __slots__ = ("phase", "seconds")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    phase: str
    seconds: float
    def __init__(self, phase: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class RestoreJob(_message.Message):
    __slots__ = ("id", "backup_name", "state", "error_message", "progress", "collections", "start_time", "end_time", "phase", "phases", "verified_files", "verified_bytes", "error_kind", "staging_left")
    ID_FIELD_NUMBER: _ClassVar[int]
    BACKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FILES_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    STAGING_LEFT_FIELD_NUMBER: _ClassVar[int]
    id: str
    backup_name: str
    state: JobState
    error_message: str
    progress: Progress
    collections: _containers.RepeatedCompositeFieldContainer[RestoreCollection]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    phase: str
    phases: _containers.RepeatedCompositeFieldContainer[PhaseTime]
    verified_files: int
    verified_bytes: int
    error_kind: str
    staging_left: str
    def __init__(self, id: _Optional[str] = ..., backup_name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., error_message: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., collections: _Optional[_Iterable[_Union[RestoreCollection, _Mapping]]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., phase: _Optional[str] = ..., phases: _Optional[_Iterable[_Union[PhaseTime, _Mapping]]] = ..., verified_files: _Optional[int] = ..., verified_bytes: _Optional[int] = ..., error_kind: _Optional[str] = ..., staging_left: _Optional[str] = ...) -> None: ...

class RestoreResponse(_message.Message):
    __slots__ = ("restore",)
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    restore: RestoreJob
    def __init__(self, restore: _Optional[_Union[RestoreJob, _Mapping]] = ...) -> None: ...

class WatchRestoreRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchRestoreResponse(_message.Message):
    __slots__ = ("restore",)
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    restore: RestoreJob
    def __init__(self, restore: _Optional[_Union[RestoreJob, _Mapping]] = ...) -> None: ...

class GetRestoreRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetRestoreResponse(_message.Message):
    __slots__ = ("restore",)
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    restore: RestoreJob
    def __init__(self, restore: _Optional[_Union[RestoreJob, _Mapping]] = ...) -> None: ...

class VerifyBackupRequest(_message.Message):
    __slots__ = ("name", "detached")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    name: str
    detached: bool
    def __init__(self, name: _Optional[str] = ..., detached: bool = ...) -> None: ...

class DamagedObject(_message.Message):
    __slots__ = ("key", "problem")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    key: str
    problem: str
    def __init__(self, key: _Optional[str] = ..., problem: _Optional[str] = ...) -> None: ...

class VerifyBackupResponse(_message.Message):
    __slots__ = ("objects_done", "objects_total", "bytes_done", "bytes_total", "damaged")
    OBJECTS_DONE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_FIELD_NUMBER: _ClassVar[int]
    objects_done: int
    objects_total: int
    bytes_done: int
    bytes_total: int
    damaged: _containers.RepeatedCompositeFieldContainer[DamagedObject]
    def __init__(self, objects_done: _Optional[int] = ..., objects_total: _Optional[int] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., damaged: _Optional[_Iterable[_Union[DamagedObject, _Mapping]]] = ...) -> None: ...

class CancelBackupRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelBackupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CancelRestoreRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelRestoreResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("milvus_address", "milvus_version", "milvus_storage", "backup_storage", "backup_count", "conditional_writes")
    MILVUS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MILVUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    MILVUS_STORAGE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_STORAGE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONDITIONAL_WRITES_FIELD_NUMBER: _ClassVar[int]
    milvus_address: str
    milvus_version: str
    milvus_storage: str
    backup_storage: str
    backup_count: int
    conditional_writes: bool
    def __init__(self, milvus_address: _Optional[str] = ..., milvus_version: _Optional[str] = ..., milvus_storage: _Optional[str] = ..., backup_storage: _Optional[str] = ..., backup_count: _Optional[int] = ..., conditional_writes: bool = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "schedule", "time_zone", "collection_names", "database_names", "all_collections", "incremental", "name_template", "retention", "enabled")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    DATABASE_NAMES_FIELD_NUMBER: _ClassVar[int]
    ALL_COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    NAME_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    schedule: str
    time_zone: str
    collection_names: _containers.RepeatedScalarFieldContainer[str]
    database_names: _containers.RepeatedScalarFieldContainer[str]
    all_collections: bool
    incremental: bool
    name_template: str
    retention: Retention
    enabled: bool
    def __init__(self, name: _Optional[str] = ..., schedule: _Optional[str] = ..., time_zone: _Optional[str] = ..., collection_names: _Optional[_Iterable[str]] = ..., database_names: _Optional[_Iterable[str]] = ..., all_collections: bool = ..., incremental: bool = ..., name_template: _Optional[str] = ..., retention: _Optional[_Union[Retention, _Mapping]] = ..., enabled: bool = ...) -> None: ...

class Retention(_message.Message):
    __slots__ = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "max_age")
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    KEEP_HOURLY_FIELD_NUMBER: _ClassVar[int]
    KEEP_DAILY_FIELD_NUMBER: _ClassVar[int]
    KEEP_WEEKLY_FIELD_NUMBER: _ClassVar[int]
    KEEP_MONTHLY_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    keep_last: int
    keep_hourly: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    max_age: str
    def __init__(self, keep_last: _Optional[int] = ..., keep_hourly: _Optional[int] = ..., keep_daily: _Optional[int] = ..., keep_weekly: _Optional[int] = ..., keep_monthly: _Optional[int] = ..., max_age: _Optional[str] = ...) -> None: ...

class PolicyRun(_message.Message):
    __slots__ = ("slot", "backup_name", "state", "error_message", "attempts", "start_time", "end_time", "manual", "error_kind")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    BACKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    slot: _timestamp_pb2.Timestamp
    backup_name: str
    state: JobState
    error_message: str
    attempts: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    manual: bool
    error_kind: str
    def __init__(self, slot: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., backup_name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., error_message: _Optional[str] = ..., attempts: _Optional[int] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., manual: bool = ..., error_kind: _Optional[str] = ...) -> None: ...

class PolicyStatus(_message.Message):
    __slots__ = ("policy", "last_run", "last_success", "last_failure", "next_run", "backups")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_FIELD_NUMBER: _ClassVar[int]
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    last_run: PolicyRun
    last_success: PolicyRun
    last_failure: PolicyRun
    next_run: _timestamp_pb2.Timestamp
    backups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., last_run: _Optional[_Union[PolicyRun, _Mapping]] = ..., last_success: _Optional[_Union[PolicyRun, _Mapping]] = ..., last_failure: _Optional[_Union[PolicyRun, _Mapping]] = ..., next_run: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., backups: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class UpdatePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class CreatePolicyResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PolicyStatus
    def __init__(self, status: _Optional[_Union[PolicyStatus, _Mapping]] = ...) -> None: ...

class UpdatePolicyResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PolicyStatus
    def __init__(self, status: _Optional[_Union[PolicyStatus, _Mapping]] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PolicyStatus
    def __init__(self, status: _Optional[_Union[PolicyStatus, _Mapping]] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeletePolicyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyStatus]
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyStatus, _Mapping]]] = ...) -> None: ...

class RunPolicyNowRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RunPolicyNowResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: PolicyRun
    def __init__(self, run: _Optional[_Union[PolicyRun, _Mapping]] = ...) -> None: ...

class PreviewRetentionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RetentionDecision(_message.Message):
    __slots__ = ("backup_name", "time", "keep", "reason")
    BACKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    backup_name: str
    time: _timestamp_pb2.Timestamp
    keep: bool
    reason: str
    def __init__(self, backup_name: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., keep: bool = ..., reason: _Optional[str] = ...) -> None: ...

class PreviewRetentionResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[RetentionDecision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[RetentionDecision, _Mapping]]] = ...) -> None: ...
