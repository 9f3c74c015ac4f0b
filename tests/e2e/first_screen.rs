//! The README's first screen, tried as a new user would: the quickstart's
//! output shown there is what the quickstart prints, and every command the
//! quickstart suggests or the README offers on the quickstart's data works
//! as printed from the clone's root.
//!
//! A README command block that claims to work on the quickstart's data is a
//! ` ```sh ` block right after the line `<!-- runs on the quickstart's data -->`.
//! Each of its commands (one a line, `\` continues a line) is run with
//! `sh -c` in a directory where the quickstart ran with its defaults (so
//! `./audit-data`) and which has the repository's `docs/`, as the clone's
//! root would; `EVENT_ID` stands for an id of the quickstart's rows. What
//! each command must answer is in [`ANSWERS`]: a command with no entry
//! there fails the test, so a new block cannot go unchecked.
//!
//! `cargo run -q --` is replaced by the binary cargo built for these tests
//! (the same package's `audit-collector`, what `cargo run` runs): calling
//! cargo from a test would rebuild with other features, or wait on the
//! build lock. `python3` lines need DuckDB's Python package
//! (`tests/python/requirements.txt`, installed by `test.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{collector_bin, example_bin};
use crate::docs::readme;

/// What the line before a command block says when the block claims to
/// run on the quickstart's data.
const MARK: &str = "<!-- runs on the quickstart's data -->";

/// The start of a command (spaces collapsed), the action whose event id
/// stands for `EVENT_ID` in it, whether it must exit 0, what its stdout
/// must hold and what it must not.
struct Answer {
    command: &'static str,
    event_of: Option<&'static str>,
    ok: bool,
    holds: &'static [&'static str],
    lacks: &'static [&'static str],
}

/// The quickstart's data: usr_alice's own `users.update_role`, and her
/// agent agt_7f3's `invoices.read` and `payments.transfer`; one
/// unattributed `users.delete` from the same service.
const ANSWERS: &[Answer] = &[
    Answer {
        command: "cargo run -q -- who --data-dir ./audit-data",
        event_of: Some("payments.transfer"),
        ok: true,
        holds: &[
            "AI: agent agt_7f3 (ledger-bot) with credential key_2026_11, accountable human usr_alice",
            "payments.transfer",
            "consent_id           cns_77",
        ],
        lacks: &[],
    },
    Answer {
        command: "cargo run -q -- activity --data-dir ./audit-data --owner usr_alice",
        event_of: None,
        ok: true,
        holds: &[
            "users.update_role",
            "invoices.read",
            "payments.transfer",
            "(3 rows)",
        ],
        lacks: &["users.delete"],
    },
    Answer {
        command: "cargo run -q -- activity --data-dir ./audit-data --agent agt_7f3",
        event_of: None,
        ok: true,
        holds: &["invoices.read", "payments.transfer", "(2 rows)"],
        lacks: &["users.update_role"],
    },
    Answer {
        command: "cargo run -q -- prove-human --data-dir ./audit-data",
        event_of: Some("users.update_role"),
        ok: true,
        holds: &[
            "PASS  row",
            "PASS  file",
            "PASS  violations no violation could be this action",
            "1 violation(s) in service \"quickstart-billing\" in the window (information)",
            "PROVEN",
        ],
        lacks: &["NOT PROVEN"],
    },
    Answer {
        command: "cargo run -q -- query --data-dir ./audit-data",
        event_of: None,
        ok: true,
        holds: &[
            "| users.update_role | 1        |",
            "| invoices.read     | 1        |",
            "| payments.transfer | 1        |",
        ],
        lacks: &[],
    },
    Answer {
        command: "cargo run -q -- verify --data-dir ./audit-data",
        event_of: None,
        ok: true,
        holds: &["intact: 1 manifest(s)", "4 rows"],
        lacks: &[],
    },
    Answer {
        command: "python3 -c \"import duckdb; duckdb.read_parquet('./audit-data/",
        event_of: None,
        ok: true,
        holds: &[
            "│ users.update_role │ human      │ NULL     │ usr_alice │",
            "│ payments.transfer │ agent      │ agt_7f3  │ usr_alice │",
        ],
        lacks: &[],
    },
    Answer {
        command: "python3 -c \"import duckdb; duckdb.sql(open('docs/what-did-agent-do.sql')",
        event_of: None,
        ok: true,
        holds: &["invoices.read", "payments.transfer", "2 rows"],
        lacks: &["users.update_role"],
    },
];

/// A directory standing in for the clone's root after
/// `cargo run --example quickstart`, and what the quickstart printed.
struct Quickstart {
    root: tempfile::TempDir,
    stdout: String,
    /// Event id of each action it stored.
    ids: BTreeMap<String, String>,
}

fn quickstart() -> &'static Quickstart {
    static RUN: OnceLock<Quickstart> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"),
            root.path().join("docs"),
        )
        .expect("link docs/");
        let out = Command::new(example_bin("quickstart"))
            .current_dir(root.path())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the quickstart");
        assert!(out.status.success(), "quickstart failed: {out:?}");
        let ids = audit_collector::partition::read_audit(&root.path().join("audit-data"))
            .expect("read the quickstart's Parquet")
            .into_iter()
            .map(|(r, _, _)| (r.action, r.event_id))
            .collect();
        Quickstart {
            root,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            ids,
        }
    })
}

/// `s` with every UUID (8-4-4-4-12 hex digits) replaced by `<event id>`:
/// the ids are new on every run.
fn mask_ids(s: &str) -> String {
    let is_uuid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let (bytes, mut out, mut i) = (s.as_bytes(), String::new(), 0);
    while i < bytes.len() {
        if bytes.get(i..i + 36).is_some_and(is_uuid) {
            out.push_str("<event id>");
            i += 36;
        } else {
            let c = s[i..].chars().next().expect("a char at a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[test]
fn mask_ids_hides_only_uuids() {
    assert_eq!(
        mask_ids("who 01a24141-1f64-7503-99e6-0afba39045d3 │ 01a24141-1f64"),
        "who <event id> │ 01a24141-1f64"
    );
}

/// The block of the README that shows the quickstart's output.
fn readme_quickstart_block(readme: &str) -> &str {
    let intro = readme
        .find("then prints who did\nwhat from the Parquet files, and how to ask more:")
        .expect("README introduces the quickstart's output");
    readme[intro..]
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README shows the quickstart's output in a text block")
}

#[test]
fn readme_shows_what_the_quickstart_prints() {
    let readme = readme();
    let shown: Vec<String> = readme_quickstart_block(&readme)
        .lines()
        .map(|l| mask_ids(l.trim_end()))
        .collect();
    let printed = &quickstart().stdout;
    let from = printed
        .find("\naction ")
        .expect("the quickstart prints its table");
    let printed: Vec<String> = printed[from + 1..]
        .trim_end()
        .lines()
        .map(|l| mask_ids(l.trim_end()))
        .collect();
    assert!(
        printed.iter().filter(|l| l.contains("seq=")).count() == 3,
        "the quickstart prints three rows:\n{}",
        printed.join("\n")
    );
    assert_eq!(
        shown,
        printed,
        "README's quickstart block is not what the quickstart prints; paste this:\n{}",
        printed.join("\n")
    );
}

/// The command blocks of a Markdown text marked with [`MARK`], as
/// commands (continued lines joined, comment lines left out).
fn marked_commands(text: &str) -> Vec<Vec<String>> {
    text.split(MARK)
        .skip(1)
        .map(|after| {
            let block = after
                .strip_prefix("\n```sh\n")
                .and_then(|b| b.split("\n```").next())
                .expect("a ```sh block right after the mark");
            let mut commands = Vec::new();
            let mut current = String::new();
            for line in block.lines() {
                match line.strip_suffix('\\') {
                    Some(part) => current.push_str(part),
                    None => {
                        current.push_str(line);
                        let command = std::mem::take(&mut current);
                        if !command.trim().is_empty() && !command.trim_start().starts_with('#') {
                            commands.push(command);
                        }
                    }
                }
            }
            commands
        })
        .collect()
}

#[test]
fn marked_commands_reads_marked_blocks_only() {
    let text =
        format!("```sh\nnot this\n```\n{MARK}\n```sh\n# a comment\na --x \\\n  --y\n\nb\n```\n");
    assert_eq!(marked_commands(&text), [vec!["a --x   --y", "b"]]);
}

/// `command` as a new user's shell would see it from the quickstart's
/// directory: its answer, checked against [`ANSWERS`].
fn run_as_printed(command: &str, used: &mut BTreeSet<&'static str>) {
    let words = command.split_whitespace().collect::<Vec<_>>().join(" ");
    let answer = ANSWERS
        .iter()
        .find(|a| words.starts_with(a.command))
        .unwrap_or_else(|| {
            panic!("first_screen::ANSWERS has no entry for `{command}`: say what it must answer")
        });
    used.insert(answer.command);
    let qs = quickstart();
    let mut line = command.to_owned();
    if let Some(action) = answer.event_of {
        line = line.replace("EVENT_ID", &qs.ids[action]);
    }
    let bin = collector_bin();
    let line = match line.trim_start().strip_prefix("cargo run -q -- ") {
        Some(rest) => format!("'{}' {rest}", bin.display()),
        None => line,
    };
    let out = Command::new("sh")
        .args(["-c", &line])
        .current_dir(qs.root.path())
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen = format!("`{command}` ({})\n{stdout}{stderr}", out.status);
    assert!(
        !stderr.contains("No module named 'duckdb'"),
        "{seen}\ninstall the Python side: pip install -r tests/python/requirements.txt"
    );
    assert_eq!(out.status.success(), answer.ok, "{seen}");
    if !answer.ok {
        assert_eq!(out.status.code(), Some(1), "{seen}");
    }
    for want in answer.holds {
        assert!(stdout.contains(want), "{seen}\nshould print {want:?}");
    }
    for unwanted in answer.lacks {
        assert!(
            !stdout.contains(unwanted),
            "{seen}\nshould not print {unwanted:?}"
        );
    }
}

#[test]
fn every_command_the_first_screen_names_works_as_printed() {
    let mut used = BTreeSet::new();
    // What the quickstart prints after "ask the trail": commands indented
    // by two spaces.
    let printed = &quickstart().stdout;
    let hints = &printed[printed.find("\nask the trail").expect("the hint")..];
    let suggested: Vec<&str> = hints.lines().filter_map(|l| l.strip_prefix("  ")).collect();
    assert!(suggested.len() >= 4, "{hints}");
    for command in suggested {
        run_as_printed(command, &mut used);
    }
    let blocks = marked_commands(&readme());
    assert!(blocks.len() >= 2, "README marks {} blocks", blocks.len());
    for command in blocks.iter().flatten() {
        run_as_printed(command, &mut used);
    }
    let unused: Vec<_> = ANSWERS
        .iter()
        .map(|a| a.command)
        .filter(|c| !used.contains(c))
        .collect();
    assert!(
        unused.is_empty(),
        "ANSWERS for commands neither the quickstart nor the README names: {unused:?}"
    );
}
