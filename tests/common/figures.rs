//! Figures the tests prove. A test calls [`publish`] only after every
//! assertion behind its figures passed; the lines go to
//! `target/test-figures/{test}.txt`, which `scripts/test.sh` prints after
//! `cargo test` (cargo hides a passing test's output).

use std::path::PathBuf;

/// Where the figure files go: `test-figures/` next to cargo's `tmp/` in the target directory.
pub fn dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("test-figures")
}

/// Writes `lines` as the figures of `test` (one file per test, replaced on
/// each run) and prints them.
pub fn publish(test: &str, lines: &[String]) {
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("create the figures directory");
    let mut text = String::new();
    for line in lines {
        println!("{test}: {line}");
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(dir.join(format!("{test}.txt")), text).expect("write the figures");
}
