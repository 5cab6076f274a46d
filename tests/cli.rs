//! The CLI (`milvus-backup create|list|get|restore|delete|check`), run as a
//! process against the real Milvus 2.3.5 and S3: exit code 0 on success, one
//! line and a distinct exit code per kind of failure, plain progress lines when
//! the output is not a terminal.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::data::{self, Spec};

fn write_config(cfg: &milvus_backup::config::Config, milvus_port: u16) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}.yaml", common::unique("cli-config")));
    let mut cfg = cfg.clone();
    cfg.milvus.port = milvus_port;
    std::fs::write(&path, common::process::config_yaml_same_bucket(&cfg)).unwrap();
    path
}

fn run(config: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A CLI config on a backup root of its own, with a policy of `collection`
/// on `schedule` made by `policy create` (`extra` flags added): the state
/// directory, the config, the root and the policy's name.
fn cli_policy(
    cfg: &milvus_backup::config::Config,
    tag: &str,
    (schedule, collection): (&str, &str),
    extra: &[&str],
) -> (PathBuf, PathBuf, String, String) {
    use common::process::{config_with, root_backups_at};
    let root = common::unique(&format!("{tag}_root"));
    let (state, config) = config_with(cfg, tag, "");
    root_backups_at(&config, &root);
    let policy = common::unique(tag);
    let mut args = vec![
        "policy",
        "create",
        "-n",
        &policy,
        "--schedule",
        schedule,
        "-c",
        collection,
    ];
    args.extend_from_slice(extra);
    let out = run(&config, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (state, config, root, policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_commands_and_exit_codes() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let config = write_config(&cfg, cfg.milvus.port);
    let spec = Spec::new(&common::unique("cli_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..250, 61).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    let name = common::unique("cli");

    let out =
        tokio::task::block_in_place(|| run(&config, &["create", "-n", &name, "-c", &spec.name]));
    assert!(
        out.status.success(),
        "create: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("succeeded"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("backup Succeeded 100%"),
        "plain progress lines: {}",
        text(&out.stderr)
    );

    // The Go tool's output: a header, then one bare name per line (scripts
    // read them; this printed state, size and collections after each name).
    let out = tokio::task::block_in_place(|| run(&config, &["list"]));
    assert!(out.status.success());
    let listed = text(&out.stdout);
    assert!(listed.starts_with(">> Backups:\n"), "{listed}");
    assert!(listed.lines().any(|l| l == name), "{listed}");
    let out = tokio::task::block_in_place(|| run(&config, &["list", "--long"]));
    let long = text(&out.stdout);
    assert!(
        long.lines()
            .any(|l| l.starts_with(&format!("{name}\tSucceeded\t"))),
        "{long}"
    );

    let out = tokio::task::block_in_place(|| run(&config, &["get", "-n", &name, "--detail"]));
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], name.as_str());
    assert_eq!(
        json["collection_backups"][0]["collection_name"],
        spec.name.as_str()
    );

    let target = format!("{}_cli", spec.name);
    let out = tokio::task::block_in_place(|| {
        run(
            &config,
            &[
                "restore",
                "-n",
                &name,
                "-r",
                &format!("{}:{target}", spec.name),
                "--restore_index",
                "--load",
            ],
        )
    });
    assert!(
        out.status.success(),
        "restore: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("250 rows imported"),
        "{}",
        text(&out.stdout)
    );
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("cli restore", &source, &restored);

    // One line and a distinct exit code per kind of failure.
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["create".into(), "-n".into(), "../x".into()], 2, "../x"),
        (
            vec!["get".into(), "-n".into(), "no_such_backup_cli".into()],
            3,
            "no_such_backup_cli",
        ),
        // A collection named like a flag's field is named as it is
        // (it read "default.--meta_only" before).
        (
            vec![
                "create".into(),
                "-n".into(),
                common::unique("cli_flagword"),
                "-c".into(),
                "meta_only".into(),
            ],
            3,
            "default.meta_only",
        ),
        (
            vec![
                "create".into(),
                "-n".into(),
                name.clone(),
                "-c".into(),
                spec.name.clone(),
            ],
            4,
            &name,
        ),
        (
            vec!["restore".into(), "-n".into(), name.clone()],
            5,
            &spec.name,
        ),
        (
            vec![
                "restore".into(),
                "-n".into(),
                name.clone(),
                "-r".into(),
                "nocolon".into(),
            ],
            2,
            "nocolon",
        ),
    ];
    for (args, code, mention) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tokio::task::block_in_place(|| run(&config, &args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
        assert!(err.contains(mention), "{args:?}: {err}");
    }
    let down = write_config(&cfg, 1);
    let out = tokio::task::block_in_place(|| run(&down, &["check"]));
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("127.0.0.1:1"));

    let out = tokio::task::block_in_place(|| run(&config, &["delete", "-n", &name]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Its progress, as create's (nothing was shown before its end).
    assert!(
        text(&out.stderr).contains("delete Succeeded 100%"),
        "{}",
        text(&out.stderr)
    );
    let out = tokio::task::block_in_place(|| run(&config, &["get", "-n", &name]));
    assert_eq!(out.status.code(), Some(3));

    // No name: the Go tool's `backup_<UTC time>`, said at the end (a clap
    // error, exit 2, on the code before).
    let out = tokio::task::block_in_place(|| run(&config, &["create", "-c", &spec.name]));
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    let generated = said
        .split_whitespace()
        .find(|w| w.starts_with("backup_20"))
        .unwrap_or_else(|| panic!("no generated name in {said}"))
        .to_string();
    let out = tokio::task::block_in_place(|| run(&config, &["delete", "-n", &generated]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

/// `policy run` interrupted with Ctrl-C (SIGINT) while its backup copies
/// (held at `backup.described`) ends the run FAILED (`cancelled`) and
/// removes its backup; a server started on the same root afterwards leaves
/// it so. Before, the run stayed RUNNING and the server took it over after
/// the lease expired, making the backup the user stopped (and applying
/// retention).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_ends_a_cli_policy_run_cancelled_for_good() {
    use common::process::{Proc, interrupted_cli, rooted_bucket};
    use milvus_backup::policy::{PolicyStore, RunState};
    use std::time::Duration;

    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("cli_prun_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 5).await;
    let (state, config, root, policy) = cli_policy(
        &cfg,
        "cli_prun",
        ("0 0 1 1 *", &spec.name),
        &["--keep_last", "1"],
    );

    let (status, said) = interrupted_cli(
        &config,
        &["policy", "run", "-n", &policy],
        Some("backup.described"),
        "failpoint reached",
        async {},
    )
    .await;
    assert!(!status.success(), "{said}");
    assert!(said.contains("interrupted"), "{said}");

    let runs = PolicyStore::new(rooted_bucket(&cfg), &root);
    let ended = runs.runs(&policy).await.unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].state, RunState::Failed, "{ended:?}");
    assert_eq!(
        ended[0].error_kind.as_deref(),
        Some("cancelled"),
        "{ended:?}"
    );
    let store = rooted_bucket(&cfg);
    let folder = format!("{root}/{}/", ended[0].backup);
    assert!(
        store.list(&folder).await.unwrap().is_empty(),
        "its backup removed"
    );

    // A server on the same root past three lease TTLs and a sweep: the run
    // is not taken over.
    let server = Proc::start_rooted(&cfg, "cli-prun-server", &root, "").await;
    tokio::time::sleep(Duration::from_secs(13)).await;
    let after = runs.runs(&policy).await.unwrap();
    assert_eq!(after, ended, "not taken over");
    assert!(
        store.list(&folder).await.unwrap().is_empty(),
        "not made again"
    );
    server.finish();
    let _ = std::fs::remove_dir_all(&state);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// `policy run` interrupted with Ctrl-C while it waits to try its backup
/// again (its collection does not exist yet): the run ends FAILED
/// (`cancelled`), not left RUNNING. The interrupt also stops the engine,
/// and the wait now looks at the interrupt first (before, either could win).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_during_a_policy_runs_retry_wait_ends_it_cancelled() {
    use common::process::{interrupted_cli, rooted_bucket};
    use milvus_backup::policy::{PolicyStore, RunState};

    let cfg = common::config();
    let missing = common::unique("not_there_yet");
    let (state, config, root, policy) = cli_policy(&cfg, "cli_pwait", ("0 0 1 1 *", &missing), &[]);
    let (status, said) = interrupted_cli(
        &config,
        &["policy", "run", "-n", &policy],
        None,
        "policy run failed",
        async {},
    )
    .await;
    assert!(!status.success(), "{said}");
    let runs = PolicyStore::new(rooted_bucket(&cfg), &root)
        .runs(&policy)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, RunState::Failed, "{runs:?}");
    assert_eq!(runs[0].error_kind.as_deref(), Some("cancelled"), "{runs:?}");
    let _ = std::fs::remove_dir_all(&state);
}

/// `policy run` whose backup would take the name of a slot due and not
/// started (no server runs the policy's slots here: every minute at second
/// 0, named by the minute) exits 5 (FailedPrecondition) naming the backup
/// and that slot; nothing runs. On the code before, it ran, and the slot's
/// run, once a server took it, would have failed ALREADY_EXISTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_run_never_takes_the_name_of_a_slot_due_and_not_started() {
    use chrono::{Timelike, Utc};
    use common::process::rooted_bucket;
    use milvus_backup::policy::PolicyStore;

    let cfg = common::config();
    let missing = common::unique("never_backed_up");
    let (state, config, root, policy) = cli_policy(
        &cfg,
        "cli_due",
        ("0 * * * * *", &missing),
        &["--name_template", "{policy}_{yyyyMMdd_HHmm}"],
    );
    // A slot passes after the policy was made: the next minute, then a
    // second more, and in the minute's first half: the CLI, started on a
    // loaded machine, reaches its name check well before the next slot
    // (otherwise the next minute is waited for).
    let made = Utc::now();
    loop {
        let now = Utc::now();
        let passed = now.with_second(0).unwrap().with_nanosecond(0).unwrap() > made;
        if passed && (1..30).contains(&now.second()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let minute = Utc::now().format("%Y%m%d_%H%M").to_string();
    let out = tokio::task::block_in_place(|| run(&config, &["policy", "run", "-n", &policy]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("{policy}_{minute}")) && err.contains("not started"),
        "{err}"
    );
    let runs = PolicyStore::new(rooted_bucket(&cfg), &root)
        .runs(&policy)
        .await
        .unwrap();
    assert!(runs.is_empty(), "nothing ran: {runs:?}");
    let out = run(&config, &["policy", "delete", "-n", &policy]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&state);
}
