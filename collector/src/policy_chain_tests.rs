use super::*;
use crate::checkpoint::generate;
use crate::manifest::Manifest;

const DAY: i64 = 86_400_000_000_000;

fn file(path: &str, newest_ns: i64) -> FileEntry {
    FileEntry {
        path: path.into(),
        sha256: String::new(),
        rows: 1,
        seq_min: 1,
        seq_max: 1,
        time_min_ns: newest_ns,
        time_max_ns: newest_ns,
        bytes: 1,
    }
}

fn findings(m: &Manifest, keys: &[NoteVerifier], now: i64) -> Vec<&'static str> {
    let mut r = Replay::new("c1", keys, now);
    m.entries()
        .iter()
        .flat_map(|e| r.step(e))
        .map(|f| f.0)
        .collect()
}

#[test]
fn only_an_operator_signed_policy_authorizes_expired_unheld_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let (op_private, op_public) = generate("operator").unwrap();
    let (other_private, _) = generate("operator").unwrap();
    let op = NoteSigner::parse(&op_private).unwrap();
    let other = NoteSigner::parse(&other_private).unwrap();
    let keys = [NoteVerifier::parse(&op_public).unwrap()];
    let now = 1_800_000_000 * 1_000_000_000;
    let old = file("audit/old.parquet", now - 100 * DAY);
    let held = file("audit/held.parquet", now - 90 * DAY);
    let young = file("audit/young.parquet", now - 10 * DAY);
    let sealed = |name: &str| {
        let mut m = Manifest::open(&dir.path().join(name)).unwrap();
        let files = vec![old.clone(), held.clone(), young.clone()];
        let seal = Body::Seal {
            seq_first: 1,
            seq_last: 3,
            files,
        };
        m.append(now - 200 * DAY, seal).unwrap();
        m
    };
    let mut m = sealed("m.jsonl");
    let del = |m: &mut Manifest, f: &FileEntry| {
        m.append(
            now,
            Body::Delete {
                file: f.clone(),
                reason: "r".into(),
            },
        )
        .unwrap();
    };
    del(&mut m, &old);
    assert_eq!(
        findings(&m, &keys, now),
        ["delete_unauthorized"],
        "no policy"
    );
    assert_eq!(findings(&m, &[], now), ["delete_unauthorized"], "no key");

    let mut m = sealed("m2.jsonl");
    let forged = Policy::signed(&other, "c1", m.head(), 0, Some(0), None);
    m.append(now, Body::Policy(forged)).unwrap();
    del(&mut m, &young);
    assert_eq!(
        findings(&m, &keys, now),
        ["policy_unsigned", "delete_unauthorized"]
    );

    let hold = Hold {
        action: HoldAction::Add,
        id: "case-1".into(),
        from: Some(day(now - 91 * DAY)),
        to: Some(day(now - 89 * DAY)),
        reason: "case".into(),
        signature: String::new(),
    }
    .signed(&op, "c1", m.head());
    m.append(now, Body::Hold(hold)).unwrap();
    let policy = Policy::signed(&op, "c1", m.head(), 30, Some(60), None);
    m.append(now, Body::Policy(policy.clone())).unwrap();
    let before = findings(&m, &keys, now).len();
    del(&mut m, &old);
    assert_eq!(findings(&m, &keys, now).len(), before, "expired and unheld");
    del(&mut m, &held);
    assert_eq!(findings(&m, &keys, now)[before..], ["delete_unauthorized"]);

    // The same signed policy appended again elsewhere no longer checks.
    m.append(now, Body::Policy(policy)).unwrap();
    assert_eq!(findings(&m, &keys, now).last(), Some(&"policy_unsigned"));
    let lower = Policy::signed(&op, "c1", m.head(), 5, Some(60), None);
    m.append(now, Body::Policy(lower)).unwrap();
    assert_eq!(findings(&m, &keys, now).last(), Some(&"policy_min_lowered"));
}

#[test]
fn holds_are_active_until_released() {
    let (private, _) = generate("op").unwrap();
    let op = NoteSigner::parse(&private).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&dir.path().join("m.jsonl")).unwrap();
    let add = Hold {
        action: HoldAction::Add,
        id: "h1".into(),
        from: NaiveDate::from_ymd_opt(2026, 1, 1),
        to: NaiveDate::from_ymd_opt(2026, 2, 1),
        reason: String::new(),
        signature: String::new(),
    };
    let release = Hold {
        action: HoldAction::Release,
        from: None,
        to: None,
        ..add.clone()
    };
    m.append(1, Body::Hold(add.signed(&op, "c1", m.head())))
        .unwrap();
    assert_eq!(active_holds(m.entries()).len(), 1);
    m.append(2, Body::Hold(release.signed(&op, "c1", m.head())))
        .unwrap();
    assert!(active_holds(m.entries()).is_empty());
}
