//! Consent through the layer: a token verified at span close (and by the
//! gate before the action), each way of being wrong refused with its reason.

use std::time::{SystemTime, UNIX_EPOCH};

use audit_layer::consent::{Claims, ConsentKeys, Issuer};
use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink, Policy, Privileged};
use tracing_subscriber::layer::SubscriberExt;

fn issuer() -> Issuer {
    Issuer::from_seed("consent-2026", &[7; 32])
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Alice's consent to agt_7f3 moving money out of acct_42, for 5 minutes.
fn claims(jti: &str) -> Claims {
    Claims::new("usr_alice", "payments.transfer", jti, now() - 10, 300)
        .agent("agt_7f3")
        .target("acct_42")
        .scopes(["payments:write"])
}

/// Runs `f` under a layer that verifies consent with `issuer()`'s key.
fn run(f: impl FnOnce()) -> MemorySink {
    let sink = MemorySink::default();
    let keys = ConsentKeys::from_jwks(issuer().jwks().as_bytes()).expect("jwks");
    let (layer, _guard) = AuditLayer::builder()
        .policy(Policy::default().dangerous_action("payments.*"))
        .consent_keys(keys)
        .memory(sink.clone())
        .build()
        .expect("builds");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    sink
}

fn transfer(actor: &Actor, token: &str) {
    let span = privileged_span!(actor, "payments.transfer",
        target = "acct_42", scopes = "payments:write", consent = %token);
    span.in_scope(|| {});
}

#[test]
fn a_valid_token_is_accepted_and_the_row_is_marked_verified() {
    let token = issuer().issue(&claims("cns_ok"));
    let sink = run(|| transfer(&Actor::agent("agt_7f3", "usr_alice"), &token));
    let rows = sink.records();
    assert_eq!(rows.len(), 1, "{:?}", sink.violations());
    let r = &rows[0];
    assert_eq!(r.consent_id.as_deref(), Some("cns_ok"));
    assert!(r.consent_verified);
    assert_eq!(r.consent_key_id.as_deref(), Some("consent-2026"));
    assert_eq!(r.consent_approver.as_deref(), Some("usr_alice"));
    assert_eq!(r.consent_token.as_deref(), Some(token.as_str()));
}

#[test]
fn each_wrong_token_is_refused_at_the_layer_with_its_reason() {
    let alice = Actor::agent("agt_7f3", "usr_alice");
    let other_key = Issuer::from_seed("consent-2026", &[9; 32]);
    let mut expired = claims("cns_old");
    (expired.iat, expired.exp) = (now() - 600, now() - 300);
    let cases = [
        (
            "another key",
            other_key.issue(&claims("c1")),
            alice.clone(),
            "does not verify",
        ),
        (
            "expired",
            issuer().issue(&expired),
            alice.clone(),
            "outside the token's iat..exp",
        ),
        (
            "another target",
            issuer().issue(&claims("c2").target("acct_1")),
            alice.clone(),
            "target",
        ),
        (
            "another agent",
            issuer().issue(&claims("c3")),
            Actor::agent("agt_x", "usr_alice"),
            "agent",
        ),
        (
            "another owner",
            issuer().issue(&claims("c4")),
            Actor::agent("agt_7f3", "usr_bob"),
            "owner",
        ),
        (
            "a bare string",
            "ok".to_owned(),
            alice.clone(),
            "no signed consent token",
        ),
    ];
    for (what, token, actor, reason) in cases {
        let sink = run(|| transfer(&actor, &token));
        assert!(sink.records().is_empty(), "{what}: accepted");
        let v = sink.violations();
        assert_eq!(v.len(), 1, "{what}");
        assert!(v[0].reason.contains(reason), "{what}: {}", v[0].reason);
        assert_eq!(v[0].missing, ["audit.consent.token"], "{what}");
    }
}

#[test]
fn a_reused_consent_is_refused() {
    let token = issuer().issue(&claims("cns_once"));
    let alice = Actor::agent("agt_7f3", "usr_alice");
    let sink = run(|| {
        transfer(&alice, &token);
        transfer(&alice, &token);
    });
    assert_eq!(sink.records().len(), 1);
    let v = sink.violations();
    assert_eq!(v.len(), 1);
    assert!(
        v[0].reason.contains("already used by event"),
        "{}",
        v[0].reason
    );
}

#[test]
fn the_gate_checks_the_token_before_the_action_and_the_row_uses_it_once() {
    let alice = Actor::agent("agt_7f3", "usr_alice");
    let token = issuer().issue(&claims("cns_gate"));
    let sink = run(|| {
        let refused = Privileged::new(&alice, "payments.transfer")
            .target("acct_42")
            .scopes("payments:write")
            .consent("ok")
            .open();
        assert!(refused.is_err(), "a bare string does not open the gate");
        let guard = Privileged::new(&alice, "payments.transfer")
            .target("acct_42")
            .scopes("payments:write")
            .consent(token.as_str())
            .open()
            .expect("a valid token opens the gate");
        drop(guard);
    });
    let rows = sink.records();
    assert_eq!(rows.len(), 1, "{:?}", sink.violations());
    assert!(rows[0].consent_verified);
}
