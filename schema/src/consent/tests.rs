use base64::Engine;

use super::*;
use crate::record::Field;

const T0: i64 = 1_764_000_000;
const NS: i64 = 1_000_000_000;

fn issuer() -> Issuer {
    Issuer::from_seed("consent-2026", &[7; 32])
}

fn keys() -> ConsentKeys {
    ConsentKeys::from_jwks(issuer().jwks().as_bytes()).expect("own jwks")
}

fn claims() -> Claims {
    Claims {
        sub: "usr_alice".into(),
        act: Some(Act {
            sub: "agt_7f3".into(),
        }),
        action: "payments.transfer".into(),
        target: Some("acct_42".into()),
        scopes: vec!["payments:write".into(), "accounts:read".into()],
        iat: T0,
        exp: T0 + 300,
        jti: "cns_1".into(),
    }
}

fn draft(consent: &str, event: &str) -> Draft {
    let mut d = Draft {
        start_time_ns: Some((T0 + 10) * NS),
        event_id: Some(event.into()),
        ..Draft::default()
    };
    for (f, v) in [
        (Field::AgentId, "agt_7f3"),
        (Field::OwnerId, "usr_alice"),
        (Field::Action, "payments.transfer"),
        (Field::Target, "acct_42"),
        (Field::Scopes, "payments:write"),
        (Field::ConsentId, consent),
    ] {
        d.set(f, v.into());
    }
    d
}

fn rules() -> Rules {
    Rules::default().dangerous_action("payments.*")
}

fn check(d: Draft, keys: &ConsentKeys, replay: &ReplayGuard) -> Result<AuditRecord, String> {
    let v = Verifier {
        keys,
        replay: Some(replay),
        now_ns: (T0 + 20) * NS,
    };
    check_action(&rules(), d, Vec::new(), Some(v)).map_err(|r| {
        assert_eq!(r.missing(), [Field::ConsentToken.wire()]);
        r.reason()
    })
}

#[test]
fn a_valid_token_is_accepted_and_the_row_says_who_approved_and_which_key() {
    let token = issuer().issue(&claims());
    let r = check(draft(&token, "e1"), &keys(), &ReplayGuard::default()).expect("valid");
    assert_eq!(r.consent_id.as_deref(), Some("cns_1"));
    assert!(r.consent_verified);
    assert_eq!(r.consent_key_id.as_deref(), Some("consent-2026"));
    assert_eq!(r.consent_approver.as_deref(), Some("usr_alice"));
    assert_eq!(r.consent_token.as_deref(), Some(token.as_str()));
}

#[test]
fn each_way_of_being_wrong_is_refused_with_its_reason() {
    let other_key = Issuer::from_seed("consent-2026", &[9; 32]);
    let unknown_key = Issuer::from_seed("elsewhere", &[9; 32]);
    let with = |f: fn(&mut Claims)| {
        let mut c = claims();
        f(&mut c);
        issuer().issue(&c)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "another key, same kid",
            other_key.issue(&claims()),
            "does not verify",
        ),
        (
            "an unknown key",
            unknown_key.issue(&claims()),
            "not a configured consent key",
        ),
        (
            "expired",
            with(|c| c.exp = T0 + 5),
            "outside the token's iat..exp",
        ),
        (
            "not yet issued",
            with(|c| c.iat = T0 + 11),
            "outside the token's iat..exp",
        ),
        (
            "another target",
            with(|c| c.target = Some("acct_1".into())),
            "target",
        ),
        (
            "another agent",
            with(|c| {
                c.act = Some(Act {
                    sub: "agt_x".into(),
                })
            }),
            "agent",
        ),
        ("no agent", with(|c| c.act = None), "agent"),
        ("another owner", with(|c| c.sub = "usr_bob".into()), "owner"),
        (
            "another action",
            with(|c| c.action = "payments.refund".into()),
            "action",
        ),
        (
            "fewer scopes",
            with(|c| c.scopes = vec!["accounts:read".into()]),
            "scope",
        ),
        (
            "too long-lived",
            with(|c| c.exp = T0 + 2 * MAX_LIFETIME_SECS),
            "at most",
        ),
        ("a bare string", "ok".into(), "no signed consent token"),
        ("three parts of junk", "a.b.c".into(), "malformed"),
    ];
    for (what, token, reason) in cases {
        let err = check(draft(&token, "e1"), &keys(), &ReplayGuard::default()).expect_err(what);
        assert!(err.contains(reason), "{what}: {err}");
    }
}

#[test]
fn a_token_whose_payload_was_edited_does_not_verify() {
    let token = issuer().issue(&claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c.target = Some("acct_1".into());
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&c).expect("json"));
    let mut d = draft(&parts.join("."), "e1");
    d.set(Field::Target, "acct_1".into());
    let err = check(d, &keys(), &ReplayGuard::default()).expect_err("edited");
    assert!(err.contains("does not verify"), "{err}");
}

#[test]
fn alg_none_is_refused() {
    let b = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.",
        b(&serde_json::json!({"alg": "none", "kid": "consent-2026"})),
        b(&serde_json::to_value(claims()).expect("json"))
    );
    let err = check(draft(&token, "e1"), &keys(), &ReplayGuard::default()).expect_err("none");
    assert!(err.contains("only EdDSA"), "{err}");
}

#[test]
fn a_consent_is_used_once() {
    let token = issuer().issue(&claims());
    let replay = ReplayGuard::default();
    check(draft(&token, "e1"), &keys(), &replay).expect("first use");
    check(draft(&token, "e1"), &keys(), &replay).expect("a resend of the same event");
    let err = check(draft(&token, "e2"), &keys(), &replay).expect_err("reuse");
    assert!(err.contains("already used by event e1"), "{err}");
}

#[test]
fn without_keys_nothing_is_verified_and_the_row_says_so() {
    let token = issuer().issue(&claims());
    let r = check_action(&rules(), draft(&token, "e1"), Vec::new(), None).expect("as before");
    assert!(!r.consent_verified);
    assert_eq!(r.consent_key_id, None);
    assert_eq!(
        r.consent_id.as_deref(),
        Some("cns_1"),
        "the token's id, unverified"
    );
    let r = check_action(&rules(), draft("ok", "e1"), Vec::new(), None).expect("as before");
    assert_eq!(
        (r.consent_id.as_deref(), r.consent_verified),
        (Some("ok"), false)
    );
}

#[test]
fn a_safe_action_is_not_verified_even_with_keys() {
    let mut d = draft("cns_plain", "e1");
    d.action = Some("reports.read".into());
    let r = check(d, &keys(), &ReplayGuard::default()).expect("not dangerous");
    assert!(!r.consent_verified);
}

#[test]
fn jwks_are_checked() {
    for (bad, why) in [
        (r#"{"keys": []}"#, "no keys"),
        (
            r#"{"keys": [{"kty": "RSA", "kid": "a"}]}"#,
            "not an Ed25519 key",
        ),
        (
            r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}"#,
            "no kid",
        ),
        (
            r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "AAAA"}]}"#,
            "32 bytes",
        ),
        ("nope", "consent keys"),
    ] {
        let err = ConsentKeys::from_jwks(bad.as_bytes())
            .expect_err(bad)
            .to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    assert_eq!(keys().kids().collect::<Vec<_>>(), ["consent-2026"]);
}
