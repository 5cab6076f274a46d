//! The binary as a newcomer meets it: every flag has help text, errors speak
//! the CLI's flag names, a taken port has its own exit code and message, logs
//! carry no colour codes unless stderr is a terminal, and a server reachable
//! beyond loopback without a token or TLS says, once, how to turn
//! authentication on, and one-shot commands follow `log.level` beyond `info`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_milvus-backup");

/// The shipped config with a state directory of its own.
fn config() -> PathBuf {
    config_at_level("info")
}

/// [`config`] with `log.level` set to `level`.
fn config_at_level(level: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/backup.yaml"))
        .unwrap()
        .replacen("\n  level: info ", &format!("\n  level: {level} "), 1);
    let dir = std::env::temp_dir().join(common::unique("cli-flags"));
    std::fs::create_dir_all(&dir).unwrap();
    let text = text.replacen(
        "\nbackup:\n",
        &format!("\nbackup:\n  stateDir: {}\n", dir.join("state").display()),
        1,
    );
    let path = dir.join("backup.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_with(config(), args, env)
}

fn run_with(config: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    cmd.env_remove("RUST_LOG")
        .env_remove("MILVUS_BACKUP_TOKEN")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_flag_of_every_command_has_help_text() {
    let commands = [
        vec![],
        vec!["server"],
        vec!["create"],
        vec!["list"],
        vec!["get"],
        vec!["restore"],
        vec!["delete"],
        vec!["verify"],
        vec!["check"],
    ];
    for command in commands {
        let out = Command::new(BIN).args(&command).arg("-h").output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        let mut options = 0;
        for line in help
            .lines()
            .skip_while(|l| !l.starts_with("Options:"))
            .skip(1)
        {
            let l = line.trim_start();
            if !l.starts_with('-') {
                continue;
            }
            options += 1;
            // "-n, --name <NAME>  The backup's name": text after the flag's spec.
            let described = l
                .split_once("  ")
                .is_some_and(|(_, text)| !text.trim().is_empty());
            assert!(described, "{command:?}: no help for {l:?}\n{help}");
        }
        assert!(options >= 2, "{command:?}: {help}");
        for sub in help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| !l.is_empty())
        {
            assert!(
                sub.trim().split_once("  ").is_some(),
                "command without help: {sub:?}"
            );
        }
    }
}

/// An empty item in a list flag (an empty variable in a script) is refused
/// naming the flag, before anything runs: left out, the flag would mean
/// every collection, and `restore --drop_exist_collection` would replace
/// them all. (Before, `-c ""` and `-c ","` silently meant every collection.)
#[test]
fn an_empty_item_in_a_list_flag_is_refused_naming_it() {
    for (args, flag) in [
        (&["create", "-n", "b", "--colls", ""][..], "--colls"),
        (
            &["restore", "-n", "b", "-c", ",", "--drop_exist_collection"][..],
            "--collections",
        ),
        (&["restore", "-n", "b", "-c", "a,,b"][..], "--collections"),
        (&["restore", "-n", "b", "-d", ""][..], "--databases"),
        (&["restore", "-n", "b", "-r", "a:b,"][..], "--rename"),
        (
            &[
                "policy",
                "create",
                "-n",
                "p",
                "--schedule",
                "0 * * * *",
                "-c",
                "",
            ][..],
            "--collections",
        ),
    ] {
        let out = run(args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag) && err.contains("empty item"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn errors_name_the_flags_the_user_typed() {
    let out = run(
        &[
            "restore",
            "-n",
            "some_backup",
            "--drop_exist_collection",
            "--skip_create_collection",
        ],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--drop_exist_collection and --skip_create_collection"),
        "{err}"
    );
    assert!(!err.contains("drop_existing_collections"), "{err}");
    // A unit check of the rewriting: whole words only, no double dashes.
    let flags = &[
        ("collection_names", "--collections"),
        ("meta_only", "--meta_only"),
        ("load", "--load"),
        ("schedule", "--schedule"),
    ];
    assert_eq!(
        milvus_backup::cli::in_flag_words(
            "collection_names and --meta_only, not my_collection_names_x",
            flags
        ),
        "--collections and --meta_only, not my_collection_names_x"
    );
    // A plain word is a field only where a value follows it.
    assert_eq!(
        milvus_backup::cli::in_flag_words(
            "schedule \"* *\": bad; cannot load the schedule; load: true",
            flags
        ),
        "--schedule \"* *\": bad; cannot load the schedule; --load: true"
    );
}

#[test]
fn a_taken_port_exits_with_its_own_code_and_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&["server", "--address", "127.0.0.1", "-p", &port], &[]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(milvus_backup::cli::EXIT_PORT_IN_USE),
        "{err}"
    );
    assert!(
        err.contains(&format!("port {port} is already in use")) && err.contains("--port"),
        "{err}"
    );
    drop(taken);
}

/// Starts the server on a free loopback port and returns its stderr up to the
/// "serving" line; the process is stopped by its id.
fn server_start_lines(env: &[(&str, &str)], through_terminal: bool) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let config = config();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "server",
        "--address",
        "127.0.0.1",
        "-p",
        &port,
    ];
    let mut cmd = if through_terminal {
        // `script` gives the server a pseudo-terminal as stdout and stderr.
        let line = std::iter::once(BIN)
            .chain(args)
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut c = Command::new("script");
        c.args(["-qfec", &line, "/dev/null"]);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        c
    } else {
        let mut c = Command::new(BIN);
        c.args(args);
        c.stderr(Stdio::piped()).stdout(Stdio::null());
        c
    };
    cmd.env_remove("RUST_LOG")
        .env_remove("MILVUS_BACKUP_TOKEN")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let pipe: Box<dyn std::io::Read + Send> = if through_terminal {
        Box::new(child.stdout.take().unwrap())
    } else {
        Box::new(child.stderr.take().unwrap())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains("serving gRPC and REST") {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    // Stop what we started, by its id (script passes SIGTERM on to the server).
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(
        text.contains("serving gRPC and REST"),
        "no start line: {text}"
    );
    text
}

#[test]
fn logs_have_colours_only_on_a_terminal() {
    let piped = server_start_lines(&[], false);
    assert!(
        !piped.contains('\x1b'),
        "ANSI codes in piped logs: {piped:?}"
    );
    let tty = server_start_lines(&[], true);
    assert!(tty.contains('\x1b'), "a terminal gets colours: {tty:?}");
    let no_color = server_start_lines(&[("NO_COLOR", "1")], true);
    assert!(!no_color.contains('\x1b'), "NO_COLOR: {no_color:?}");
}

#[test]
fn an_open_server_warns_once_how_to_turn_authentication_on() {
    // 192.0.2.1 (TEST-NET-1) is not on this machine: the warning comes
    // first, then the bind fails; nothing listens beyond loopback.
    let out = run(&["server", "--address", "192.0.2.1", "-p", "18080"], &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(
        err.matches("without authentication or TLS").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("security.token") && err.contains("MILVUS_BACKUP_TOKEN"),
        "{err}"
    );
    let out = run(
        &["server", "--address", "192.0.2.1", "-p", "18080"],
        &[("MILVUS_BACKUP_TOKEN", "s3cret-token")],
    );
    assert!(
        !stderr(&out).contains("without authentication"),
        "{}",
        stderr(&out)
    );
    // Loopback is not exposed.
    let lines = server_start_lines(&[], false);
    assert!(!lines.contains("without authentication"), "{lines}");
    use std::net::IpAddr;
    let any: IpAddr = "0.0.0.0".parse().unwrap();
    assert!(milvus_backup::cli::exposure_warning(any, false, false).is_some());
    assert!(milvus_backup::cli::exposure_warning(any, true, false).is_none());
    assert!(milvus_backup::cli::exposure_warning(any, false, true).is_none());
    assert!(milvus_backup::cli::exposure_warning("::1".parse().unwrap(), false, false).is_none());
}

/// A one-shot command keeps its logs to warnings at the default `log.level`
/// (it prints its own progress), and follows any other level: `debug` shows
/// its debug lines. Before, every one-shot command logged at `warn`, so a
/// `debug` in the config was silently ignored. Against the test
/// environment's S3 (`list`).
#[test]
fn a_one_shot_command_follows_a_log_level_other_than_info() {
    let quiet = run(&["list"], &[]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(
        !stderr(&quiet).contains("INFO") && !stderr(&quiet).contains("DEBUG"),
        "{}",
        stderr(&quiet)
    );
    let loud = run_with(config_at_level("debug"), &["list"], &[]);
    assert!(loud.status.success(), "{}", stderr(&loud));
    assert!(stderr(&loud).contains("DEBUG"), "{}", stderr(&loud));
}
