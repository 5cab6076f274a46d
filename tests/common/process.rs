//! The `milvus-backup` binary as a server process: a config file for the test
//! environment, a free port, and a started server with a connected client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::config::Config;
use tonic::transport::Channel;

/// A port nobody listens on right now, and that no other test of this
/// binary was given: two servers started at once on one port would leave
/// one exiting ("port in use") and both tests talking to the other.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The `milvus:` and `minio:` sections of a config file for `cfg`, the
/// backups under `backup` in `backup_storage`'s bucket (`minio:` lines,
/// indented two spaces, e.g. `"  backupBucketName: b\n"`).
pub fn config_yaml(cfg: &Config, backup_storage: &str) -> String {
    format!(
        "milvus:\n  address: {}\n  port: {}\nminio:\n  address: {}\n  port: {}\n  accessKeyID: {}\n  \
         secretAccessKey: {}\n  bucketName: {}\n  rootPath: {}\n  backupRootPath: backup\n{backup_storage}",
        cfg.milvus.address,
        cfg.milvus.port,
        cfg.minio.address,
        cfg.minio.port,
        cfg.minio.access_key_id,
        cfg.minio.secret_access_key.expose(),
        cfg.minio.bucket_name,
        cfg.minio.root_path,
    )
}

/// `config_yaml` with the backups in Milvus's bucket.
pub fn config_yaml_same_bucket(cfg: &Config) -> String {
    config_yaml(
        cfg,
        &format!("  backupBucketName: {}\n", cfg.minio.bucket_name),
    )
}

/// Writes a config file for the test environment, with `backup:` lines
/// (indented two spaces, e.g. `"  stateDir: /tmp/x\n"`) appended.
pub fn write_config(cfg: &Config, path: &Path, backup: &str) {
    let yaml = format!("{}backup:\n{backup}", config_yaml_same_bucket(cfg));
    std::fs::write(path, yaml).unwrap();
}

/// Starts `milvus-backup server` with `config` on a free port and connects to it.
pub async fn start_server(
    config: &Path,
    stderr: Stdio,
) -> (ServerProcess, u16, BackupServiceClient<Channel>) {
    start_server_with(config, stderr, &[]).await
}

/// Starts the server with extra environment variables (such as
/// `MILVUS_BACKUP_FAILPOINTS`), its log lines going to `stderr`.
pub async fn start_server_with(
    config: &Path,
    stderr: Stdio,
    envs: &[(&str, &str)],
) -> (ServerProcess, u16, BackupServiceClient<Channel>) {
    start_server_args(config, stderr, envs, &[]).await
}

/// `start_server_with`, with global flags (such as `--log-format json`).
pub async fn start_server_args(
    config: &Path,
    stderr: Stdio,
    envs: &[(&str, &str)],
    flags: &[&str],
) -> (ServerProcess, u16, BackupServiceClient<Channel>) {
    let port = free_port();
    let mut server = ServerProcess(Some(
        Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
            .arg("--config")
            .arg(config)
            .args(flags)
            .args(["server", "--address", "127.0.0.1", "-p", &port.to_string()])
            .envs(envs.iter().copied())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = BackupServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            // Another server on the port answered, and ours exited.
            if let Some(out) = server.try_exited() {
                panic!("the server on port {port} exited at start ({})", out.status);
            }
            return (server, port, c);
        }
        // The guard stops it.
        assert!(Instant::now() <= deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the CLI with `config` and `args` (paused at `failpoint` if given),
/// and once its log holds `reached` runs `then` and sends it Ctrl-C
/// (SIGINT); waits for its end: its exit status and what it logged.
pub async fn interrupted_cli(
    config: &Path,
    args: &[&str],
    failpoint: Option<&str>,
    reached: &str,
    then: impl std::future::Future<Output = ()>,
) -> (std::process::ExitStatus, String) {
    interrupted_cli_then(config, args, failpoint, reached, then, async {}).await
}

/// [`interrupted_cli`], running `after` once Ctrl-C was sent (a failpoint
/// `point@PATH` released only then).
pub async fn interrupted_cli_then(
    config: &Path,
    args: &[&str],
    failpoint: Option<&str>,
    reached: &str,
    then: impl std::future::Future<Output = ()>,
    after: impl std::future::Future<Output = ()>,
) -> (std::process::ExitStatus, String) {
    let log = std::env::temp_dir().join(super::unique("cli-interrupted.log"));
    let mut cli = Command::new(env!("CARGO_BIN_EXE_milvus-backup"));
    cli.arg("--config").arg(config).args(args);
    if let Some(point) = failpoint {
        cli.env("MILVUS_BACKUP_FAILPOINTS", point);
    }
    let mut cli = cli
        .stdout(Stdio::null())
        .stderr(log_file(&log))
        .spawn()
        .unwrap();
    wait_for_log(&log, reached, Duration::from_secs(120)).await;
    then.await;
    Command::new("kill")
        .args(["-INT", &cli.id().to_string()])
        .status()
        .unwrap();
    after.await;
    let status = tokio::task::spawn_blocking(move || cli.wait().unwrap())
        .await
        .unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    (status, said)
}

/// A file to send a server's log lines to.
pub fn log_file(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).unwrap())
}

/// Waits until the log at `path` holds `needle`; panics after `timeout`.
pub async fn wait_for_log(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} did not appear in {} within {timeout:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A started server process, SIGKILLed when dropped while it runs: a test
/// that panics leaves no server behind.
pub struct ServerProcess(Option<Child>);

impl ServerProcess {
    /// `child`, SIGKILLed when dropped.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// Its process id (0 once ended).
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Whether it was neither killed nor seen to exit.
    pub fn is_running(&self) -> bool {
        self.0.is_some()
    }

    /// SIGKILLs and reaps it (once).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            kill9(&mut child);
        }
    }

    /// Its exit status and output once it exited by itself; `None` while it runs.
    pub fn try_exited(&mut self) -> Option<std::process::Output> {
        self.0.as_mut()?.try_wait().unwrap()?;
        Some(self.0.take()?.wait_with_output().unwrap())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILLs the process and reaps it.
pub fn kill9(child: &mut Child) {
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
}

pub fn config_for(cfg: &milvus_backup::config::Config, tag: &str) -> (PathBuf, PathBuf) {
    config_with(cfg, tag, "")
}

/// A server config with its own state directory, a 3 s lease TTL and `extra` `backup:` lines.
pub fn config_with(
    cfg: &milvus_backup::config::Config,
    tag: &str,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let state = std::env::temp_dir().join(super::unique(tag));
    let config = state.with_extension("yaml");
    write_config(
        cfg,
        &config,
        &format!(
            "  stateDir: {}\n  leaseTtlSeconds: 3\n{extra}",
            state.display()
        ),
    );
    (state, config)
}

/// Keeps the backups of the server config at `config` (written by
/// [`config_with`]) under `root` instead of `backup`.
/// Sets the lease TTL of config file `config` (written by [`config_with`],
/// 3 s) to `ttl_s` seconds.
#[allow(dead_code)]
pub fn set_lease_ttl(config: &Path, ttl_s: u32) {
    let yaml = std::fs::read_to_string(config).unwrap();
    assert!(yaml.contains("  leaseTtlSeconds: 3\n"), "{yaml}");
    let yaml = yaml.replace(
        "  leaseTtlSeconds: 3\n",
        &format!("  leaseTtlSeconds: {ttl_s}\n"),
    );
    std::fs::write(config, yaml).unwrap();
}

pub fn root_backups_at(config: &Path, root: &str) {
    let yaml = std::fs::read_to_string(config).unwrap();
    assert!(yaml.contains("backupRootPath: backup\n"), "{yaml}");
    let yaml = yaml.replace(
        "backupRootPath: backup\n",
        &format!("backupRootPath: {root}\n"),
    );
    std::fs::write(config, yaml).unwrap();
}

/// Points the server config at `config` (written by [`config_with`]) to S3
/// through a proxy on 127.0.0.1:`port` instead of `cfg`'s S3.
#[allow(dead_code)]
pub fn route_s3_through(cfg: &Config, config: &Path, port: u16) {
    let direct = format!(
        "minio:\n  address: {}\n  port: {}\n",
        cfg.minio.address, cfg.minio.port
    );
    let yaml = std::fs::read_to_string(config).unwrap();
    assert!(yaml.contains(&direct), "{yaml}");
    let yaml = yaml.replacen(
        &direct,
        &format!("minio:\n  address: 127.0.0.1\n  port: {port}\n"),
        1,
    );
    std::fs::write(config, yaml).unwrap();
}

/// The bucket the servers of [`Proc::start_rooted`] keep their backups in
/// (Milvus's bucket, as `write_config` sets it).
#[allow(dead_code)]
pub fn rooted_bucket(cfg: &Config) -> std::sync::Arc<dyn milvus_backup::storage::ObjectStore> {
    let mut c = cfg.clone();
    c.minio.backup_bucket_name = c.minio.bucket_name.clone();
    milvus_backup::storage::open(&c.minio.backup_bucket().unwrap()).unwrap()
}

/// A server process on a backup root of its own (its name returned),
/// reaching S3 through a fault proxy (returned) that forwards everything
/// until told otherwise.
#[allow(dead_code)]
pub async fn behind_fault_proxy(
    cfg: &Config,
    tag: &str,
) -> (super::faults::FaultProxy, Proc, String) {
    behind_fault_proxy_paused(cfg, tag, None).await
}

/// [`behind_fault_proxy`], paused at `failpoint` if given.
#[allow(dead_code)]
pub async fn behind_fault_proxy_paused(
    cfg: &Config,
    tag: &str,
    failpoint: Option<&str>,
) -> (super::faults::FaultProxy, Proc, String) {
    let s3: std::net::SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let proxy = super::faults::start(s3, super::faults::Rates::default()).await;
    let (state, config) = config_with(cfg, tag, "");
    route_s3_through(cfg, &config, proxy.addr.port());
    let root = super::unique(&format!("{tag}_root"));
    root_backups_at(&config, &root);
    (proxy, Proc::on(state, config, failpoint).await, root)
}

/// A server process of its own (state directory, 3 s lease TTL), its log in a file.
pub struct Proc {
    process: ServerProcess,
    pub client: BackupServiceClient<Channel>,
    /// Its gRPC and REST port.
    pub port: u16,
    state: PathBuf,
    config: PathBuf,
    pub log: PathBuf,
}

impl Proc {
    /// Starts one with `extra` `backup:` lines, paused at `failpoint` if given.
    pub async fn start(
        cfg: &milvus_backup::config::Config,
        tag: &str,
        extra: &str,
        failpoint: Option<&str>,
    ) -> Self {
        let (state, config) = config_with(cfg, tag, extra);
        Self::on(state, config, failpoint).await
    }

    /// `start` with the backups under `root` (not `backup`) of the same bucket,
    /// so that only servers on `root` see what it stores there.
    pub async fn start_rooted(
        cfg: &milvus_backup::config::Config,
        tag: &str,
        root: &str,
        extra: &str,
    ) -> Self {
        Self::start_rooted_paused(cfg, tag, root, extra, None).await
    }

    /// `start_rooted`, paused at `failpoint` if given.
    pub async fn start_rooted_paused(
        cfg: &milvus_backup::config::Config,
        tag: &str,
        root: &str,
        extra: &str,
        failpoint: Option<&str>,
    ) -> Self {
        let (state, config) = config_with(cfg, tag, extra);
        root_backups_at(&config, root);
        Self::on(state, config, failpoint).await
    }

    /// Its config file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Whether it is still running (not killed).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    pub async fn on(state: PathBuf, config: PathBuf, failpoint: Option<&str>) -> Self {
        let log = state.with_extension(format!("log{}", uuid::Uuid::new_v4().simple()));
        let envs: Vec<(&str, &str)> = failpoint
            .map(|f| ("MILVUS_BACKUP_FAILPOINTS", f))
            .into_iter()
            .collect();
        let (process, port, client) = start_server_with(&config, log_file(&log), &envs).await;
        Self {
            process,
            client,
            port,
            state,
            config,
            log,
        }
    }

    /// Its process id (0 once killed).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// How many lines of its log contain `needle`.
    #[allow(dead_code)]
    pub fn logged(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// SIGKILLs it (once).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sends it `signal` (`STOP`, `CONT`, ...).
    #[allow(dead_code)]
    pub fn signal(&self, signal: &str) {
        assert!(self.process.is_running(), "kill -{signal}: not running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.process.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits until a job of this server paused at its failpoint.
    pub async fn wait_paused(&self, timeout: Duration) {
        wait_for_log(&self.log, "failpoint reached", timeout).await;
    }

    /// SIGKILLs it (if still running) and starts another server on the same state directory.
    pub async fn kill_and_restart(mut self) -> Self {
        self.kill();
        Self::on(self.state.clone(), self.config.clone(), None).await
    }

    /// SIGKILLs it and removes its state directory (a test that fails before
    /// this still stops it: see `ServerProcess`).
    pub fn finish(mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
