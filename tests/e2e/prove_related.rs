//! `prove-human` holds only violations that could be the action against
//! it: same trace, task, target, owner or callsite. An unrelated agent's
//! violation in the same service is counted as information, not a failure.

use std::time::{SystemTime, UNIX_EPOCH};

use audit_schema::otlp::{encode_action, encode_violation};
use audit_schema::{Draft, Rules, ViolationRecord};

use crate::common::wire::request;
use crate::common::{cli, export_grpc, Collector};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A violation in `billing` a second after `t`, refusing `event`.
fn violation(event: &str, t: i64, trace: Option<&str>, owner: Option<&str>) -> ViolationRecord {
    ViolationRecord {
        event_id: event.into(),
        time_ns: t + 1_000_000_000,
        detected_by: "layer".into(),
        missing: vec!["audit.owner.id".into()],
        reason: "agent action without `audit.owner.id`".into(),
        action: Some("refunds.issue".into()),
        agent_id: Some("agt_rogue".into()),
        owner_id: owner.map(Into::into),
        trace_id: trace.map(Into::into),
        service_name: "billing".into(),
        ..ViolationRecord::default()
    }
}

#[test]
fn only_violations_that_could_be_the_action_fail_the_proof_and_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), &[]);
    let t = now_ns();
    let human = |event: &str, trace: &str| {
        let d = Draft {
            event_id: Some(event.into()),
            start_time_ns: Some(t),
            actor_kind: Some("human".into()),
            owner_id: Some("usr_carol".into()),
            action: Some("refunds.approve".into()),
            target: Some("rfd_7".into()),
            service_name: Some("billing".into()),
            trace_id: Some(trace.into()),
            ..Draft::default()
        };
        encode_action(&Rules::default().check(d).expect("a stated human"))
    };
    let req = request(vec![
        human("019ac0de-0000-7000-8000-0000000000a1", TRACE),
        human(
            "019ac0de-0000-7000-8000-0000000000a2",
            "11111111111111111111111111111111",
        ),
        encode_violation(&violation(
            "019ac0de-0000-7000-8000-0000000000b1",
            t,
            None,
            None,
        )),
        encode_violation(&violation(
            "019ac0de-0000-7000-8000-0000000000b2",
            t,
            Some(TRACE),
            None,
        )),
    ]);
    let resp = export_grpc(&c, req);
    assert_eq!(resp.partial_success, None);
    assert!(c.terminate());
    let data = dir.path().to_str().expect("utf-8 path");
    let prove = |event: &str| cli(&["prove-human", "--data-dir", data, event], &[]);

    // Same trace as the second violation: not proven, and it says which.
    let related = prove("019ac0de-0000-7000-8000-0000000000a1");
    assert!(!related.ok, "{}", related.stdout);
    assert!(
        related.stdout.contains("FAIL  violations"),
        "{}",
        related.stdout
    );
    assert!(
        related
            .stdout
            .contains("1 violation(s) could be this action between")
            && related
                .stdout
                .contains("019ac0de-0000-7000-8000-0000000000b2 (same trace: agent action without"),
        "{}",
        related.stdout
    );
    assert!(
        related
            .stdout
            .contains("2 violation(s) in service \"billing\" in the window (information)"),
        "{}",
        related.stdout
    );

    // Another trace, nothing else in common: both violations are unrelated.
    let unrelated = prove("019ac0de-0000-7000-8000-0000000000a2");
    assert!(unrelated.ok, "{}", unrelated.stdout);
    assert!(
        unrelated.stdout.contains("PASS  violations"),
        "{}",
        unrelated.stdout
    );
}
