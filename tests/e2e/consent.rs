//! Consent at the collector, from a raw OTLP client (no audit-layer): with
//! `--consent-keys-file`, a dangerous action is stored only with a consent
//! token that verifies and matches it; each other case is refused in
//! `partial_success` with its reason and leaves a violation row.

use std::time::{SystemTime, UNIX_EPOCH};

use audit_collector::partition::{read_audit, read_violations};
use audit_schema::consent::{Claims, Issuer};
use audit_schema::otlp::encode_action;
use audit_schema::{AuditRecord, Draft, Rules};

use crate::common::wire::request;
use crate::common::{export_grpc, Collector};

const NS: i64 = 1_000_000_000;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn claims(jti: &str) -> Claims {
    Claims::new("usr_alice", "payments.transfer", jti, now() - 60, 600)
        .agent("agt_7f3")
        .target("acct_42")
        .scopes(["payments:write"])
}

/// Agent agt_7f3 of `owner` moves money out of acct_42, with `consent`.
fn transfer(n: u32, agent: &str, owner: &str, consent: &str) -> AuditRecord {
    let d = Draft {
        event_id: Some(format!("019ac0de-0000-7000-8000-{n:012}")),
        start_time_ns: Some(now() * NS),
        agent_id: Some(agent.into()),
        owner_id: Some(owner.into()),
        action: Some("payments.transfer".into()),
        target: Some("acct_42".into()),
        scopes: vec!["payments:write".into()],
        consent_id: Some(consent.into()),
        service_name: Some("billing".into()),
        ..Draft::default()
    };
    Rules::default().check(d).expect("well-formed")
}

#[test]
fn only_a_verified_matching_unused_token_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::from_seed("consent-2026", &[7; 32]);
    let jwks = dir.path().join("consent.jwks");
    std::fs::write(&jwks, issuer.jwks()).expect("write jwks");
    let data = dir.path().join("data");
    let c = Collector::start(
        &data,
        &[
            "--dangerous-action=payments.*",
            &format!("--consent-keys-file={}", jwks.display()),
        ],
    );
    let valid = issuer.issue(&claims("cns_ok"));
    let mut expired = claims("cns_old");
    (expired.iat, expired.exp) = (now() - 900, now() - 600);
    let other_key = Issuer::from_seed("consent-2026", &[9; 32]);
    let alice = "usr_alice";
    let sent = [
        transfer(1, "agt_7f3", alice, &valid),
        transfer(2, "agt_7f3", alice, &other_key.issue(&claims("c2"))),
        transfer(3, "agt_7f3", alice, &issuer.issue(&expired)),
        transfer(
            4,
            "agt_7f3",
            alice,
            &issuer.issue(&claims("c4").target("acct_1")),
        ),
        transfer(5, "agt_x", alice, &issuer.issue(&claims("c5"))),
        transfer(6, "agt_7f3", "usr_bob", &issuer.issue(&claims("c6"))),
        transfer(7, "agt_7f3", alice, &valid),
        transfer(8, "agt_7f3", alice, "ok"),
    ];
    let want = [
        (1, "does not verify under key \"consent-2026\""),
        (2, "outside the token's iat..exp"),
        (
            3,
            "token is for target \"acct_1\", the action's is \"acct_42\"",
        ),
        (
            4,
            "token is for agent \"agt_7f3\", the action's is \"agt_x\"",
        ),
        (
            5,
            "token is for owner \"usr_alice\", the action's is \"usr_bob\"",
        ),
        (6, "consent \"cns_ok\" was already used by event"),
        (7, "no signed consent token"),
    ];
    let req = request(sent.iter().map(encode_action).collect());
    let resp = export_grpc(&c, req);
    let ps = resp.partial_success.expect("some refused");
    assert_eq!(
        ps.rejected_log_records,
        want.len() as i64,
        "{}",
        ps.error_message
    );
    let m = &ps.error_message;
    for (n, reason) in want {
        let at = m
            .find(&format!("record {n} refused: consent not verified: "))
            .unwrap_or_else(|| panic!("record {n} not refused for consent: {m}"));
        let own = m[at..].split("record ").nth(1).unwrap_or_default();
        assert!(
            own.contains(reason),
            "record {n}: {reason:?} not in {own:?}"
        );
    }
    assert!(c.terminate(), "SIGTERM exits 0");
    let rows = read_audit(&data).expect("read audit");
    assert_eq!(rows.len(), 1);
    let r = &rows[0].0;
    assert_eq!(r.event_id, sent[0].event_id);
    assert_eq!(r.consent_id.as_deref(), Some("cns_ok"));
    assert!(r.consent_verified);
    assert_eq!(r.consent_key_id.as_deref(), Some("consent-2026"));
    assert_eq!(r.consent_approver.as_deref(), Some("usr_alice"));
    let who = crate::common::cli(
        &[
            "who",
            "--data-dir",
            data.to_str().expect("utf-8"),
            &r.event_id,
        ],
        &[],
    );
    assert!(
        who.stdout
            .contains("consent cns_ok verified by key consent-2026, approved by usr_alice"),
        "{}{}",
        who.stdout,
        who.stderr
    );
    // The console's find view says the same, from the same row.
    let console = crate::console::Console::start_over(&data, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let page = rt.block_on(crate::console::view(
        &console,
        &format!("/find?event_id={}", r.event_id),
    ));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(
            "<strong>VERIFIED</strong> by key <code>consent-2026</code>, approved by usr_alice"
        ),
        "{}",
        page.body
    );
    drop(console);
    let violations = read_violations(&data).expect("read violations");
    assert_eq!(violations.len(), want.len());
    assert!(violations
        .iter()
        .all(|(v, _, _)| v.missing == ["audit.consent.token"] && v.detected_by == "collector"));
}

#[test]
fn without_keys_consent_is_stored_unverified_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), &["--dangerous-action=payments.*"]);
    let token = Issuer::from_seed("consent-2026", &[7; 32]).issue(&claims("cns_u"));
    let req = request(vec![encode_action(&transfer(
        1,
        "agt_7f3",
        "usr_alice",
        &token,
    ))]);
    let resp = export_grpc(&c, req);
    assert_eq!(resp.partial_success, None);
    assert!(c.terminate());
    let rows = read_audit(dir.path()).expect("read");
    let r = &rows[0].0;
    assert_eq!(
        r.consent_id.as_deref(),
        Some("cns_u"),
        "the token's id, unverified"
    );
    assert!(!r.consent_verified);
    assert_eq!(
        (r.consent_key_id.as_deref(), r.consent_approver.as_deref()),
        (None, None)
    );
    assert_eq!(
        r.consent_token.as_deref(),
        Some(token.as_str()),
        "kept for a later check"
    );
}
