//! `examples/deploy/collector.toml` against the real binary: it starts the
//! collector as shipped, and it documents every `serve` flag, each of which
//! also has an environment variable.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{collector_bin, Collector};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/deploy/collector.toml"
);

/// (`--flag`, `AUDIT_COLLECTOR_…` or None) for every option of `serve --help`.
fn serve_flags() -> Vec<(String, Option<String>)> {
    let out = Command::new(collector_bin())
        .args(["serve", "--help"])
        .output()
        .expect("run serve --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    // clap prints an option as `  -x, --flag <VALUE>` with its help (and
    // `[env: NAME=]`) on the following lines, up to the next option.
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let flag = t
            .strip_prefix("--")
            .or_else(|| t.split_once(", --").map(|(_, f)| f))
            .filter(|_| t.starts_with('-'));
        if let Some(f) = flag {
            let name = f.split([' ', '<', '=']).next().unwrap_or("").to_owned();
            flags.push((format!("--{name}"), None));
        }
        if let (Some(env), Some(last)) = (line.split("[env: ").nth(1), flags.last_mut()) {
            last.1 = env.split(['=', ']']).next().map(str::to_owned);
        }
    }
    assert!(flags.len() > 5, "could not read serve --help:\n{help}");
    flags
}

#[test]
fn every_serve_flag_has_an_env_var_and_is_in_the_example_config() {
    let example = std::fs::read_to_string(EXAMPLE).expect("read example");
    for (flag, env) in serve_flags() {
        if ["--help", "--version"].contains(&flag.as_str()) {
            continue;
        }
        let env = env.unwrap_or_else(|| panic!("{flag} has no environment variable"));
        assert!(env.starts_with("AUDIT_COLLECTOR_"), "{flag}: {env}");
        if flag == "--config" {
            continue; // the file itself
        }
        assert!(
            example.contains(&format!("Flag {flag}")) && example.contains(&env),
            "{flag} / {env} not documented in examples/deploy/collector.toml"
        );
    }
}

#[test]
fn collector_starts_with_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    // The example's data_dir and ports are for a real host; the flags
    // Collector::start adds (--data-dir, loopback :0) take precedence.
    let c = Collector::start(dir.path(), &["--config", EXAMPLE]);
    assert!(Path::new(&dir.path().join("collector_id")).exists());
    assert!(c.terminate());
}
