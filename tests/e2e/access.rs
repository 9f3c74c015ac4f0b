//! Who looked, from the command line: every question the answer commands
//! (`query`, `who`, `activity`, `prove-human`) ask of the trail is an
//! access row in the access dataset, with the viewer (the OS user or
//! `--viewer`), the question, its parameters, the rows returned and the
//! time, durable before the answer is printed; `verify` covers the dataset.

use std::path::Path;

use crate::answer_dataset::*;
use crate::answerability::dataset;
use crate::common::{cli, CliOut};
use serde_json::Value;

/// The command with `args`, recording into `access`, as OS user `user`.
fn asked(access: &Path, user: &str, args: &[&str]) -> CliOut {
    let access = access.to_str().expect("utf-8 path");
    let mut all = args.to_vec();
    all.extend(["--access-dir", access]);
    cli(&all, &[("USER", user.to_owned())])
}

/// The access rows of `access`, oldest first.
fn access_rows(access: &Path) -> Vec<Value> {
    let o = cli(
        &[
            "query",
            "--data-dir",
            access.to_str().expect("utf-8 path"),
            "--format",
            "json",
            "SELECT owner_id, actor_kind, action, target, outcome, service_name, attributes, \
             start_time <= end_time AS timed FROM audit ORDER BY seq",
        ],
        &[],
    );
    assert!(o.ok, "{}", o.stderr);
    serde_json::from_str(&o.stdout).expect("json")
}

#[test]
fn every_cli_question_is_an_access_row_that_verify_covers() {
    let ds = dataset();
    let data = ds.path.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("tempdir");
    let access = dir.path().join("access");
    let (from, to) = (ds.from.to_rfc3339(), ds.to.to_rfc3339());
    let questions: [(&[&str], &str, Option<&str>, &str); 5] = [
        (
            &["who", "--data-dir", data, HUMAN_OK],
            "cli.who",
            Some("event_id=019a0000-0000-7000-8000-000000000001"),
            "1",
        ),
        (
            &[
                "activity",
                "--data-dir",
                data,
                "--agent",
                "agt_ledger",
                "--from",
                &from,
                "--to",
                &to,
                "--format",
                "csv",
            ],
            "cli.activity",
            Some("agent=agt_ledger"),
            "3",
        ),
        (
            &[
                "query",
                "--data-dir",
                data,
                "SELECT event_id FROM audit WHERE agent_id IS NULL",
            ],
            "cli.query",
            None,
            "2",
        ),
        (
            &["prove-human", "--data-dir", data, HUMAN_OK],
            "cli.prove-human",
            Some("event_id=019a0000-0000-7000-8000-000000000001"),
            "1",
        ),
        (
            &[
                "who",
                "--data-dir",
                data,
                "--viewer",
                "auditor-bob",
                "019a0000-0000-7000-8000-0000000000ff",
            ],
            "cli.who",
            Some("event_id=019a0000-0000-7000-8000-0000000000ff"),
            "",
        ),
    ];
    for (i, (args, _, _, _)) in questions.iter().enumerate() {
        let o = asked(&access, "ann-os", args);
        assert_eq!(o.ok, i < 4, "{args:?}: {}", o.stderr);
    }
    // Printing the SQL reads nothing: no question asked of the trail.
    let shown = asked(&access, "ann-os", &["who", "--show-sql", HUMAN_OK]);
    assert!(
        shown.ok && shown.stdout.contains("SELECT"),
        "{}",
        shown.stderr
    );

    let verified = cli(
        &["verify", "--data-dir", access.to_str().expect("utf-8 path")],
        &[],
    );
    assert!(
        verified.ok && verified.stdout.contains("intact: 1 manifest(s)"),
        "{}",
        verified.stdout
    );
    assert!(verified.stdout.contains("5 rows"), "{}", verified.stdout);
    assert!(
        !verified.stdout.contains("warning"),
        "no coverage gap between two commands: {}",
        verified.stdout
    );

    let rows = access_rows(&access);
    assert_eq!(rows.len(), 5, "{rows:?}");
    for (row, (args, question, subject, n)) in rows.iter().zip(&questions) {
        let viewer = if question == &"cli.who" && subject.is_some_and(|s| s.ends_with("ff")) {
            "auditor-bob"
        } else {
            "ann-os"
        };
        assert_eq!(row["owner_id"], viewer, "{row}");
        assert_eq!(row["actor_kind"], "human");
        assert_eq!(row["service_name"], "audit-collector-cli");
        assert_eq!(row["action"], *question);
        assert_eq!(row["target"].as_str(), *subject);
        assert_eq!(row["timed"], true);
        let attrs = &row["attributes"];
        let params = attrs["access.parameters"].as_str().expect("parameters");
        assert!(params.starts_with(args[0]), "{params}");
        assert!(params.contains(args[args.len() - 1]), "{params}");
        if n.is_empty() {
            assert_eq!(row["outcome"], "error");
            assert!(
                attrs["access.error"]
                    .as_str()
                    .is_some_and(|e| e.contains("no audit row")),
                "{row}"
            );
        } else {
            assert_eq!(row["outcome"], "ok");
            assert_eq!(attrs["access.rows"], *n, "{row}");
        }
    }
}

/// An answer whose access row cannot be made durable is not printed.
#[test]
fn no_answer_without_its_access_row() {
    let ds = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "not a directory").expect("write");
    let o = asked(
        &not_a_dir,
        "ann-os",
        &[
            "who",
            "--data-dir",
            ds.path.to_str().expect("utf-8 path"),
            HUMAN_OK,
        ],
    );
    assert!(!o.ok, "answered without recording: {}", o.stdout);
    assert!(
        !o.stdout.contains("usr_alice"),
        "the answer was printed: {}",
        o.stdout
    );
    assert!(o.stderr.contains("access dataset"), "{}", o.stderr);
}
