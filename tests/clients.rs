//! The generated clients work against our server and the real Milvus 2.3.5:
//! the Python client's example (installed from clients/python into its own
//! venv by scripts/test.sh) and the Go client's example (built offline with
//! Debian's Go by scripts/build_go_client.sh) each back up a collection, watch
//! it, restore it and watch the restore; the restored rows are compared here.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::data::{self, Spec};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn check_restored(m: &milvus_backup::milvus::MilvusClient, spec: &Spec, suffix: &str) {
    let target = format!("{}{suffix}", spec.name);
    data::index(m, &spec.db, &target).await;
    data::load(m, &spec.db, &target).await;
    let a = data::rows(m, spec, &spec.db, &spec.name, &[]).await;
    let b = data::rows(m, spec, &spec.db, &target, &[]).await;
    assert_eq!(a.len(), 120);
    data::assert_rows_equal(&target, &a, &b);
    data::drop_if_exists(m, &spec.db, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_and_go_clients_back_up_and_restore() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let addr = server.handle.addr.to_string();
    let spec = Spec::new(&common::unique("clients_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..120, 71).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;

    // The Python client's README's commands, as documented; `.venv` is the
    // virtual environment scripts/test.sh makes with the same two lines.
    let venv = root().join(".it-env/pyclient");
    assert!(
        venv.join("bin/python").exists(),
        "the Python client venv is missing: run scripts/test.sh (ensure_python_client)"
    );
    let documented = documented_python_commands();
    let run_line = documented.last().unwrap().clone();
    let mut words: Vec<String> = run_line.split_whitespace().map(str::to_string).collect();
    words[0] = words[0].replacen(".venv", venv.to_str().unwrap(), 1);
    let set = |words: &mut Vec<String>, flag: &str, value: &str| match words
        .iter()
        .position(|w| w == flag)
    {
        Some(i) => words[i + 1] = value.to_string(),
        None => words.extend([flag.to_string(), value.to_string()]),
    };
    set(&mut words, "--server", &addr);
    set(&mut words, "--collection", &spec.name);
    set(&mut words, "--suffix", "_py");
    set(&mut words, "--name", &common::unique("py"));
    let out = tokio::task::block_in_place(|| {
        Command::new(&words[0])
            .args(&words[1..])
            .current_dir(root())
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python example: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-> ") && text.contains("120 rows"), "{text}");
    check_restored(&m, &spec, "_py").await;

    let bin_dir = std::env::temp_dir().join(common::unique("go-client"));
    let out = tokio::task::block_in_place(|| {
        Command::new("bash")
            .arg(root().join("scripts/build_go_client.sh"))
            .arg(&bin_dir)
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::task::block_in_place(|| {
        Command::new(bin_dir.join("backup_and_restore"))
            .args([
                "-server",
                &addr,
                "-collection",
                &spec.name,
                "-suffix",
                "_go",
                "-name",
                &common::unique("go"),
            ])
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go example: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("120 rows"), "{text}");
    assert!(
        text.contains("detaching") && text.contains("SUCCEEDED 100% (re-attached)"),
        "the Go example re-attaches with WatchBackup: {text}"
    );
    check_restored(&m, &spec, "_go").await;

    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    let _ = std::fs::remove_dir_all(bin_dir);
    server.handle.stop().await.unwrap();
}

/// The shell lines of the Python client's README: make a venv, install the
/// client into it, run the example.
fn documented_python_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("clients/python/README.md")).unwrap();
    let block: Vec<String> = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in clients/python/README.md")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(block.len(), 3, "{block:?}");
    assert_eq!(block[0], "python3 -m venv .venv");
    assert_eq!(block[1], ".venv/bin/pip install ./clients/python");
    assert!(
        block[2].starts_with(".venv/bin/python clients/python/examples/backup_and_restore.py "),
        "{block:?}"
    );
    // scripts/env.sh makes the test's venv with the same two commands.
    let env_sh = std::fs::read_to_string(root().join("scripts/env.sh")).unwrap();
    assert!(
        env_sh.contains("python3 -m venv \"$IT_ENV/pyclient\"")
            && env_sh.contains("\"$IT_ENV/pyclient/bin/pip\" install -q \"$ROOT/clients/python\""),
        "scripts/env.sh no longer makes the venv as the README says"
    );
    block
}

/// The hash `go` keeps in go.sum for a go.mod file: `h1:` + base64(sha256 of
/// the line "<sha256 hex>  go.mod\n").
fn go_mod_hash(path: &std::path::Path) -> String {
    let out = Command::new("bash")
        .args([
            "-c",
            "printf '%s  go.mod\\n' \"$(sha256sum < \"$1\" | cut -d' ' -f1)\" | sha256sum | cut -d' ' -f1 | xxd -r -p | base64",
            "go_mod_hash",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("h1:{}", String::from_utf8_lossy(&out.stdout).trim())
}

/// The Go client is a module: go.mod names the documented path, go.sum has
/// both hashes of every module go.mod requires, and another module builds it
/// offline (scripts/build_go_client.sh: module mode, vendored Debian sources).
#[test]
fn the_go_client_is_a_module_another_module_builds_offline() {
    let go_mod = std::fs::read_to_string(root().join("clients/go/go.mod")).unwrap();
    let go_sum = std::fs::read_to_string(root().join("clients/go/go.sum")).unwrap();
    let module = "github.com/milvus-backup-rs/clients/go";
    assert!(
        go_mod.starts_with(&format!("module {module}\n")),
        "{go_mod}"
    );
    let readme = std::fs::read_to_string(root().join("clients/go/README.md")).unwrap();
    assert!(
        readme.contains(&format!("go mod edit -require {module}@v0.1.0")),
        "the README documents how to require the module"
    );
    let required: Vec<(String, String)> = go_mod
        .lines()
        .map(|l| l.split("//").next().unwrap().trim())
        .filter(|l| l.contains(" v") && !l.starts_with("go ") && !l.starts_with("module"))
        .map(|l| {
            let l = l.trim_start_matches("require ").trim();
            let (path, version) = l.split_once(' ').unwrap();
            (path.to_string(), version.trim().to_string())
        })
        .collect();
    assert!(required.len() >= 7, "{required:?}");
    for (path, version) in &required {
        for line in [
            format!("{path} {version} h1:"),
            format!("{path} {version}/go.mod h1:"),
        ] {
            assert!(go_sum.contains(&line), "go.sum lacks {line}");
        }
    }
    // The go.mod hashes of grpc and protobuf, recomputed from Debian's copies
    // of those very versions' go.mod.
    for (path, version) in [
        ("google.golang.org/grpc", "v1.33.3"),
        ("google.golang.org/protobuf", "v1.28.1"),
    ] {
        let debian = std::path::Path::new("/usr/share/gocode/src")
            .join(path)
            .join("go.mod");
        let hash = go_mod_hash(&debian);
        assert!(
            go_sum.contains(&format!("{path} {version}/go.mod {hash}\n")),
            "{path} {version}/go.mod {hash} is not in go.sum"
        );
    }
    let bin_dir = std::env::temp_dir().join(common::unique("go-module"));
    let out = Command::new("bash")
        .arg(root().join("scripts/build_go_client.sh"))
        .arg(&bin_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build as another module: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin_dir.join("consumer")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "JOB_STATE_SUCCEEDED true"
    );
    let _ = std::fs::remove_dir_all(bin_dir);
}
