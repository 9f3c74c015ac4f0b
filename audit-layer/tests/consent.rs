//! Consent through the layer: a token verified at span close (and by the
//! gate before the action), each way of being wrong refused with its reason;
//! a keys file reloaded while the layer runs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Replaces `path` whole (a rename), as a secret mount or a deploy does, so
/// that the layer never reads a half-written file.
fn replace_file(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Waits (bounded) until `counter` reaches `n`.
fn wait_for(what: &str, n: u64, counter: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter() < n {
        assert!(Instant::now() < deadline, "{what} never reached {n}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_keys_file_is_reloaded_while_the_layer_runs_and_a_broken_one_keeps_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("consent.jwks");
    let old = Issuer::from_seed("k-old", &[1; 32]);
    let new = Issuer::from_seed("k-new", &[2; 32]);
    replace_file(&path, &old.jwks());
    let sink = MemorySink::default();
    let (layer, guard) = AuditLayer::builder()
        .policy(Policy::default().dangerous_action("payments.*"))
        .consent_keys_file(&path)
        .consent_keys_reload_interval(Duration::from_millis(10))
        .memory(sink.clone())
        .build()
        .expect("builds");
    let status = guard.status();
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let alice = Actor::agent("agt_7f3", "usr_alice");
    let transfer_with = |issuer: &Issuer, jti: &str| {
        transfer(&alice, &issuer.issue(&claims(jti)));
        (sink.records().len(), sink.violations().len())
    };

    assert_eq!(
        transfer_with(&old, "cns_1"),
        (1, 0),
        "the key read at build"
    );
    replace_file(&path, &new.jwks());
    wait_for("reloads", 1, || status.consent_keys_reloads());
    assert_eq!(transfer_with(&new, "cns_2"), (2, 0), "the new key verifies");
    assert_eq!(
        transfer_with(&old, "cns_3"),
        (2, 1),
        "the old key is refused"
    );
    let refused = &sink.violations()[0].reason;
    assert!(
        refused.contains("\"k-old\", which is not a configured consent key"),
        "{refused}"
    );

    replace_file(&path, "{\"keys\": []}");
    wait_for("reload failures", 1, || {
        status.consent_keys_reload_failures()
    });
    assert_eq!(transfer_with(&new, "cns_4"), (3, 1), "the keys in use stay");
    let rows = sink.records();
    let kids: Vec<_> = rows.iter().map(|r| r.consent_key_id.as_deref()).collect();
    assert_eq!(kids, [Some("k-old"), Some("k-new"), Some("k-new")]);
    assert_eq!(status.consent_keys_reloads(), 1);
}

#[test]
fn a_keys_file_that_does_not_load_stops_the_build_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("consent.jwks");
    std::fs::write(&path, "not a JWK Set").expect("write");
    let built = AuditLayer::builder()
        .consent_keys_file(&path)
        .memory(MemorySink::default())
        .build();
    let Err(e) = built else {
        panic!("a broken keys file was accepted")
    };
    let message = e.to_string();
    assert!(message.starts_with("consent keys: "), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}
