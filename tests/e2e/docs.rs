//! The README's tables are the schema crate's output, so docs and code
//! cannot drift apart.

use audit_schema::columns::{markdown_table, AUDIT, VIOLATIONS};
use audit_schema::wire::markdown_fields;

use crate::common::example_bin;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn readme_schema_tables_match_the_code() {
    let readme = readme();
    for (name, table) in [
        ("audit", markdown_table(AUDIT)),
        ("violations", markdown_table(VIOLATIONS)),
        ("span fields", markdown_fields()),
    ] {
        assert!(
            readme.contains(&table),
            "README's {name} table is stale; paste this:\n{table}"
        );
    }
}

#[test]
fn readme_duckdb_query_is_the_tested_one() {
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/what-did-agent-do.sql"
    ))
    .expect("docs/what-did-agent-do.sql");
    assert!(
        readme().contains(sql.trim()),
        "README must show docs/what-did-agent-do.sql verbatim"
    );
}

/// Paths named in backquotes in a Markdown text: a token with a `/` or a
/// file extension we keep, without spaces, up to a `::item` or `:line`.
fn named_paths(text: &str) -> Vec<String> {
    let exts = [
        ".rs", ".md", ".toml", ".sh", ".py", ".sql", ".yaml", ".service",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| !t.contains(char::is_whitespace) && !t.starts_with("--"))
        .map(|t| t.split("::").next().unwrap_or(t))
        .map(|t| t.split(':').next().unwrap_or(t).trim_end_matches('/'))
        .filter(|t| {
            !t.is_empty()
                && !t.contains(['*', '<', '{', '='])
                && !t.starts_with("s3")
                && (t.contains('/') || exts.iter().any(|e| t.ends_with(e)))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn architecture_names_only_paths_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = named_paths(&text);
    assert!(
        paths.len() > 30,
        "ARCHITECTURE.md names {} paths",
        paths.len()
    );
    let missing: Vec<_> = paths.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn named_paths_reads_backquoted_paths() {
    let text = "see `collector/src/wal.rs` and `wal::replay`, `Cargo.toml`, \
                `schema/src/rules.rs:12`, `--data-dir`, `a b/c`, `s3://b/p`";
    assert_eq!(
        named_paths(text),
        ["collector/src/wal.rs", "Cargo.toml", "schema/src/rules.rs"]
    );
}

#[test]
fn docs_stand_alone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = vec![
        root.join("README.md"),
        root.join("ARCHITECTURE.md"),
        root.join("BENCHMARKS.md"),
    ];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("docs entry").path();
        // The README's screenshots are images, not text to check.
        if path.extension() != Some(std::ffi::OsStr::new("png")) {
            texts.push(path);
        }
    }
    for path in texts {
        let text = std::fs::read_to_string(&path).expect("doc");
        let lower = text.to_lowercase();
        for word in ["issue ", "issues "] {
            for (at, _) in lower.match_indices(word) {
                let next = lower[at + word.len()..].chars().next();
                assert!(
                    !next.is_some_and(|c| c.is_ascii_digit() || c == '#'),
                    "{} refers to an issue number near byte {at}",
                    path.display()
                );
            }
        }
        for outside in ["../shared", "DESIGN.md", "seed/"] {
            assert!(
                !text.contains(outside),
                "{} refers to {outside}, outside the repository",
                path.display()
            );
        }
    }
}

#[test]
fn readme_quickstart_output_is_what_the_quickstart_prints() {
    let readme = readme();
    let intro = readme
        .find("then prints who did\nwhat from the Parquet files:")
        .expect("README introduces the quickstart's output");
    let block = readme[intro..]
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README shows the quickstart's output in a text block");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(example_bin("quickstart"))
        .arg(dir.path().join("audit-data"))
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the quickstart");
    assert!(out.status.success(), "quickstart failed: {out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<&str> = printed.lines().map(str::trim_end).collect();
    let shown: Vec<&str> = block.lines().map(str::trim_end).collect();
    assert!(shown.len() >= 6, "README block too short: {shown:?}");
    for line in shown {
        assert!(
            printed.contains(&line),
            "README shows a line the quickstart does not print:\n{line}\n--- printed:\n{}",
            printed.join("\n")
        );
    }
}
