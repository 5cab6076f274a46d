//! Shared helpers of the integration tests: the real test environment
//! (`scripts/testenv/up.sh` writes `.it-run/env`), our server on 127.0.0.1:0,
//! and the `hello_milvus` collection of the Go tool's example.
#![allow(dead_code)]

pub mod curl;
pub mod data;
pub mod faults;
pub mod flows;
pub mod hello;
pub mod incr;
pub mod policies;
pub mod process;
pub mod restores;
pub mod runs;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::api::{Server, ServerHandle};
use milvus_backup::config::{Config, Secret};
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use milvus_backup::jobs::JobStore;
use milvus_backup::milvus::MilvusClient;
use tonic::transport::Channel;

/// The `KEY=VALUE` file `up.sh` writes; `MILVUS_BACKUP_IT_ENV` overrides its path.
pub fn env_file() -> PathBuf {
    std::env::var_os("MILVUS_BACKUP_IT_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".it-run/env"))
}

fn host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let (host, port) = rest.rsplit_once(':').expect("address with a port");
    (
        host.to_string(),
        port.trim_end_matches('/').parse().expect("port"),
    )
}

/// The configuration of the running test environment. Panics (fails the test)
/// when the environment is not up: these tests never pass without the real parts.
pub fn config() -> Config {
    let path = env_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the test environment is not up ({}: {e}); run scripts/test.sh, or \
             scripts/testenv/setup.sh .it-env && scripts/testenv/up.sh .it-env .it-run",
            path.display()
        )
    });
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing in {}", path.display()))
            .to_string()
    };
    let mut cfg = Config::default();
    let (host, port) = host_port(&get("MILVUS_ADDR"));
    cfg.milvus.address = host;
    cfg.milvus.port = port;
    let (host, port) = host_port(&get("S3_ENDPOINT"));
    cfg.minio.address = host;
    cfg.minio.port = port;
    cfg.minio.access_key_id = get("S3_ACCESS_KEY");
    cfg.minio.secret_access_key = Secret::new(get("S3_SECRET_KEY"));
    cfg.minio.bucket_name = get("S3_BUCKET");
    cfg.minio.root_path = get("S3_ROOTPATH");
    cfg.minio.backup_bucket_name = get("S3_BUCKET");
    cfg.minio.backup_root_path = "backup".into();
    cfg
}

/// `cfg` with its backups in bucket `offsite` of the test environment's
/// second S3 server, with that server's own keys.
#[allow(dead_code)]
pub fn backups_on_second_s3(mut cfg: Config) -> Config {
    let (host, port) = second_s3();
    cfg.minio.backup_address = host;
    cfg.minio.backup_port = port;
    cfg.minio.backup_access_key_id = "offsite-key".into();
    cfg.minio.backup_secret_access_key = Secret::new("offsite-secret");
    cfg.minio.backup_bucket_name = "offsite".into();
    cfg
}

/// Host and port of the second S3 server of the test environment.
pub fn second_s3() -> (String, u16) {
    let text = std::fs::read_to_string(env_file()).expect("test environment env file");
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("S3B_ENDPOINT="))
        .expect("S3B_ENDPOINT in the env file (scripts/testenv/up.sh starts a second S3)");
    host_port(url)
}

/// One line of the env file `up.sh` writes.
fn env_value(key: &str) -> String {
    let text = std::fs::read_to_string(env_file()).expect("test environment env file");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in the env file (scripts/testenv/up.sh starts it)"))
        .to_string()
}

/// Azurite's well-known account and key (public: the emulator's documented defaults).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// `cfg` with its backups in a new container of the test environment's
/// Azurite (the Milvus side stays on S3).
pub fn backups_on_azurite(mut cfg: Config) -> Config {
    cfg.minio.backup_storage_type = "azure".into();
    cfg.minio.backup_address = env_value("AZURE_BLOB_ENDPOINT");
    cfg.minio.backup_access_key_id = AZURITE_ACCOUNT.into();
    cfg.minio.backup_secret_access_key = Secret::new(AZURITE_KEY);
    cfg.minio.backup_bucket_name = format!("backups-{}", uuid::Uuid::new_v4().simple());
    cfg
}

/// Azurite's Blob endpoint and its request log (`up.sh` starts it with `--debug`).
pub fn azurite() -> (String, PathBuf) {
    let log = env_file().with_file_name("azurite").join("debug.log");
    (env_value("AZURE_BLOB_ENDPOINT"), log)
}

/// Restarts the test environment's Milvus with its storage on `storage`
/// (`s3`, its usual one, or `azure`: Azurite), each with its own data
/// (scripts/testenv/milvus.sh). Panics if Milvus does not come up healthy.
pub fn restart_milvus_on(storage: &str) {
    let run = env_file().parent().expect("run dir").to_path_buf();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/testenv/milvus.sh");
    let args = [
        env_value("IT_PREFIX"),
        run.display().to_string(),
        storage.into(),
    ];
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .status();
    assert!(
        status.expect("run milvus.sh").success(),
        "Milvus did not come up healthy on {storage} (its output is above)"
    );
}

/// `cfg` with its backups in a new bucket of the test environment's
/// gcp-storage-emulator (the Milvus side stays on S3).
pub fn backups_on_gcs_emulator(mut cfg: Config, credential_json: &Path) -> Config {
    cfg.minio.backup_storage_type = "gcpnative".into();
    cfg.minio.backup_address = env_value("GCS_ENDPOINT");
    cfg.minio.backup_gcp_credential_json = Secret::new(credential_json.display().to_string());
    cfg.minio.backup_bucket_name = format!("backups-{}", uuid::Uuid::new_v4().simple());
    cfg
}

/// A gcp-storage-emulator of the caller's own on a free port (the test
/// environment's serves one request at a time: a slow one would hold every
/// other test's), killed by its PID when dropped, and its endpoint.
#[allow(dead_code)]
pub async fn own_gcs_emulator() -> (process::ServerProcess, String) {
    let bin = PathBuf::from(env_value("IT_PREFIX")).join("gcs-venv/bin/gcp-storage-emulator");
    let port = process::free_port();
    let child = std::process::Command::new(bin)
        .args([
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--in-memory",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start gcp-storage-emulator");
    let guard = process::ServerProcess::new(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "the emulator listens");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    (guard, format!("http://127.0.0.1:{port}"))
}

/// Restarts the test environment's Milvus (on S3) when dropped, if it no
/// longer takes connections: a test whose restore could crash it (2.3.5
/// panics on a damaged binlog) leaves a running Milvus to the tests after
/// it, whether it passed or not.
#[allow(dead_code)]
pub struct RestartsMilvusIfDown(SocketAddr);

#[allow(dead_code)]
impl RestartsMilvusIfDown {
    pub fn new(cfg: &Config) -> Self {
        let addr = format!("{}:{}", cfg.milvus.address, cfg.milvus.port);
        Self(addr.parse().expect("Milvus's address"))
    }
}

impl Drop for RestartsMilvusIfDown {
    fn drop(&mut self) {
        if std::net::TcpStream::connect_timeout(&self.0, Duration::from_secs(2)).is_err() {
            eprintln!("Milvus is down after this test: restarting it for the tests after");
            restart_milvus_on("s3");
        }
    }
}

/// A Milvus client for the test environment.
pub fn milvus(cfg: &Config) -> MilvusClient {
    MilvusClient::new(&cfg.milvus).expect("milvus client")
}

/// Our server on 127.0.0.1:0 and a connected client.
pub struct TestServer {
    pub handle: ServerHandle,
    pub engine: std::sync::Arc<Engine>,
    /// The context the engine runs over (the test looks at its stores).
    pub ctx: Context,
    pub client: BackupServiceClient<Channel>,
}

impl TestServer {
    /// Starts a server for `cfg`.
    pub async fn start(cfg: &Config) -> Self {
        Self::start_with(Context::from_config(cfg).expect("context")).await
    }

    /// Starts a server over `ctx`.
    pub async fn start_with(mut ctx: Context) -> Self {
        ctx.timing.poll_interval = Duration::from_millis(200);
        Self::start_engine(ctx.clone(), Engine::new(ctx)).await
    }

    /// Starts a server for `cfg` whose job records are kept in `state`, with
    /// at most `max_jobs` jobs at once.
    pub async fn start_with_records(cfg: &Config, state: &Path, max_jobs: usize) -> Self {
        let ctx = Context::from_config(cfg).unwrap();
        let engine =
            Engine::with_records(ctx.clone(), JobStore::open(state).unwrap(), max_jobs).await;
        Self::start_engine(ctx, engine).await
    }

    /// Starts a server over `engine`, which runs over `ctx`.
    pub async fn start_engine(ctx: Context, engine: std::sync::Arc<Engine>) -> Self {
        init_logs();
        let handle = Server::new(engine.clone())
            .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("server");
        let client = connect(handle.addr).await;
        Self {
            handle,
            engine,
            ctx,
            client,
        }
    }

    /// Another client of the same server.
    pub async fn client(&self) -> BackupServiceClient<Channel> {
        connect(self.handle.addr).await
    }
}

/// A client of the server at `addr`.
pub async fn connect(addr: SocketAddr) -> BackupServiceClient<Channel> {
    BackupServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to our server")
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,milvus_backup=info".into()),
        )
        .with_test_writer()
        .try_init();
}
