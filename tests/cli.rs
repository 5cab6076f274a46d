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

    let out = tokio::task::block_in_place(|| run(&config, &["list"]));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&name));

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
    let out = tokio::task::block_in_place(|| run(&config, &["get", "-n", &name]));
    assert_eq!(out.status.code(), Some(3));
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}
