//! What the layer guarantees, checked through the in-memory destination.

use audit_layer::{privileged_span, Actor, AuditLayer, AuditStatus, MemorySink, Policy};
use audit_schema::ActorKind;
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt;

/// Runs `f` with only an audit layer installed (thread-local, so tests
/// run in parallel); returns what reached the sink and the counters.
fn run_with(policy: Policy, strict: bool, f: impl FnOnce()) -> (MemorySink, AuditStatus) {
    let sink = MemorySink::default();
    let (layer, guard) = AuditLayer::builder()
        .policy(policy)
        .strict(strict)
        .service_name("billing")
        .service_instance_id("billing-1")
        .memory(sink.clone())
        .build()
        .expect("memory destination builds");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    (sink, guard.status())
}

fn run(f: impl FnOnce()) -> (MemorySink, AuditStatus) {
    run_with(Policy::default(), false, f)
}

#[test]
fn attributed_agent_span_becomes_one_record_with_every_field() {
    let (sink, status) = run(|| {
        let actor = Actor::agent("agt_7f3", "usr_alice")
            .credential("key_2026_11")
            .name("ledger-bot")
            .initiator("usr_bob")
            .task("tsk_9");
        let account = String::from("acct_42");
        let span = privileged_span!(&actor, "payments.transfer",
            target = %account, scopes = "payments:write, accounts:read",
            consent = "cns_1", inputs.sha256 = "ab12", amount = 100, memo = ?"rent");
        span.in_scope(|| {});
    });
    let records = sink.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.actor_kind, ActorKind::Agent);
    assert_eq!(r.agent_id.as_deref(), Some("agt_7f3"));
    assert_eq!(r.agent_name.as_deref(), Some("ledger-bot"));
    assert_eq!(r.agent_credential_id.as_deref(), Some("key_2026_11"));
    assert_eq!(r.owner_id, "usr_alice");
    assert_eq!(r.initiator_id.as_deref(), Some("usr_bob"));
    assert_eq!(r.task_id.as_deref(), Some("tsk_9"));
    assert_eq!(r.action, "payments.transfer");
    assert_eq!(r.target.as_deref(), Some("acct_42"));
    assert_eq!(r.outcome, "ok");
    assert_eq!(r.scopes, ["payments:write", "accounts:read"]);
    assert_eq!(r.consent_id.as_deref(), Some("cns_1"));
    assert_eq!(r.inputs_sha256.as_deref(), Some("ab12"));
    assert_eq!(r.service_name, "billing");
    assert_eq!(r.service_instance_id.as_deref(), Some("billing-1"));
    assert_eq!(r.attributes["amount"], "100");
    assert_eq!(r.attributes["memo"], "\"rent\"");
    assert_eq!(r.trace_id.as_ref().map(String::len), Some(32));
    assert_eq!(r.span_id.as_ref().map(String::len), Some(16));
    let uuid = uuid::Uuid::parse_str(&r.event_id).expect("event id is a UUID");
    assert_eq!(uuid.get_version_num(), 7);
    assert!(r.end_time_ns.is_some_and(|end| end >= r.start_time_ns));
    assert!(r.start_time_ns > 0);
    assert_eq!(status.snapshot().privileged_spans, 1);
    assert_eq!(status.snapshot().violations, 0);
    assert!(sink.violations().is_empty());
}

#[test]
fn raw_tracing_span_with_aliases_or_wire_names_is_attributed() {
    let (sink, _) = run(|| {
        tracing::info_span!(target: "audit", "payments.transfer",
            agent.id = "agt_7f3", owner.id = "usr_alice", target = "acct_42")
        .in_scope(|| {});
        tracing::info_span!(target: "audit::payments", "payments.refund",
            gen_ai.agent.id = "agt_7f3", audit.owner.id = "usr_alice")
        .in_scope(|| {});
    });
    let records = sink.records();
    assert_eq!(records.len(), 2, "{:?}", sink.violations());
    assert_eq!(records[0].agent_id.as_deref(), Some("agt_7f3"));
    assert_eq!(records[0].owner_id, "usr_alice");
    assert_eq!(records[1].action, "payments.refund");
    assert_eq!(records[1].owner_id, "usr_alice");
}

#[test]
fn fields_recorded_late_count() {
    let (sink, _) = run(|| {
        let span = tracing::info_span!(target: "audit", "payments.transfer",
            agent.id = "agt_7f3", owner.id = Empty, outcome = Empty);
        span.record("owner.id", "usr_alice");
        span.record("outcome", "denied");
        drop(span);
    });
    let records = sink.records();
    assert_eq!(records.len(), 1, "{:?}", sink.violations());
    assert_eq!(records[0].owner_id, "usr_alice");
    assert_eq!(records[0].outcome, "denied");
}

#[test]
fn human_action_without_stated_kind_is_rejected() {
    let (sink, status) = run(|| {
        tracing::info_span!(target: "audit", "users.invite", owner.id = "usr_alice")
            .in_scope(|| {});
        tracing::info_span!(target: "audit", "users.invite",
            actor.kind = "human", owner.id = "usr_alice")
        .in_scope(|| {});
        privileged_span!(Actor::human("usr_alice"), "users.invite").in_scope(|| {});
    });
    let records = sink.records();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| r.actor_kind == ActorKind::Human && r.agent_id.is_none()));
    let violations = sink.violations();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].missing, ["audit.actor.kind"]);
    assert_eq!(violations[0].owner_id.as_deref(), Some("usr_alice"));
    assert_eq!(status.violations(), 1);
}

#[test]
fn unattributed_privileged_span_is_a_violation_not_a_record() {
    let line = line!() + 2;
    let (sink, status) = run(|| {
        tracing::info_span!(target: "audit", "payments.transfer", agent.id = "agt_7f3", amount = 5)
            .in_scope(|| {});
    });
    assert!(
        sink.records().is_empty(),
        "no audit row for a rejected span"
    );
    let v = sink.violations();
    assert_eq!(v.len(), 1);
    let v = &v[0];
    assert_eq!(v.detected_by, "layer");
    assert_eq!(v.missing, ["audit.owner.id"]);
    assert!(v.reason.contains("accountable human"), "{}", v.reason);
    assert_eq!(v.span_target.as_deref(), Some("audit"));
    assert_eq!(v.span_name.as_deref(), Some("payments.transfer"));
    assert!(
        v.code_file
            .as_deref()
            .is_some_and(|f| f.ends_with("layer.rs")),
        "{v:?}"
    );
    assert_eq!(v.code_line, Some(i64::from(line)));
    assert_eq!(v.action.as_deref(), Some("payments.transfer"));
    assert_eq!(v.agent_id.as_deref(), Some("agt_7f3"));
    assert_eq!(v.owner_id, None);
    assert_eq!(v.service_name, "billing");
    assert_eq!(v.attributes["amount"], "5");
    assert!(v.time_ns > 0);
    assert_eq!(status.violations(), 1);
    assert_eq!(status.privileged_spans(), 1);
}

#[test]
#[should_panic(expected = "accountable human")]
fn strict_mode_panics_on_a_violation() {
    run_with(Policy::default(), true, || {
        tracing::info_span!(target: "audit", "payments.transfer", agent.id = "agt_7f3")
            .in_scope(|| {});
    });
}

#[test]
fn strict_mode_reports_the_violation_before_panicking() {
    let sink = MemorySink::default();
    let (layer, _guard) = AuditLayer::builder()
        .strict(true)
        .memory(sink.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!(target: "audit", "users.delete").in_scope(|| {});
        })
    }));
    assert!(result.is_err(), "strict mode must panic");
    assert_eq!(sink.violations().len(), 1);
}

#[test]
fn dangerous_action_needs_consent_by_flag_or_policy_pattern() {
    let policy = Policy::default().dangerous_action("payments.*");
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let (sink, _) = run_with(policy, false, || {
        // Dangerous by pattern, no consent: rejected.
        privileged_span!(&actor, "payments.transfer").in_scope(|| {});
        // Dangerous by flag, no consent: rejected.
        privileged_span!(&actor, "users.delete", audit.dangerous = true).in_scope(|| {});
        // With consent: accepted, and the row says it was dangerous.
        privileged_span!(&actor, "payments.transfer", consent = "cns_1").in_scope(|| {});
        // Not dangerous: no consent needed.
        privileged_span!(&actor, "users.invite").in_scope(|| {});
    });
    let v = sink.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v.iter().all(|v| v.missing == ["audit.consent.id"]));
    let r = sink.records();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].consent_id.as_deref(), Some("cns_1"));
    assert_eq!(r[0].attributes["audit.dangerous"], "true");
    assert_eq!(r[1].action, "users.invite");
}

#[test]
fn non_privileged_spans_produce_nothing() {
    let (sink, status) = run(|| {
        tracing::info_span!("payments.transfer", agent.id = "agt").in_scope(|| {
            tracing::error!("boom");
        });
        tracing::info_span!(target: "auditor", "x").in_scope(|| {});
        tracing::info_span!(target: "audit_collector::wal", "append").in_scope(|| {});
        tracing::info_span!("maybe", audit.privileged = false).in_scope(|| {});
    });
    assert!(sink.records().is_empty());
    assert!(sink.violations().is_empty());
    assert_eq!(status.snapshot(), Default::default());
}

#[test]
fn privileged_flag_and_policy_extend_what_is_privileged() {
    let policy = Policy::default()
        .span_name("users.delete")
        .target_prefix("billing::admin")
        .predicate(|m| m.name().starts_with("admin."));
    let (sink, _) = run_with(policy, false, || {
        tracing::info_span!("anything", audit.privileged = true).in_scope(|| {});
        tracing::info_span!("users.delete").in_scope(|| {});
        tracing::info_span!(target: "billing::admin::ops", "x").in_scope(|| {});
        tracing::info_span!("admin.reset").in_scope(|| {});
        // Declared, recorded late: counts.
        let late = tracing::info_span!("late", audit.privileged = Empty);
        late.record("audit.privileged", true);
        drop(late);
    });
    let names: Vec<_> = sink
        .violations()
        .into_iter()
        .filter_map(|v| v.span_name)
        .collect();
    assert_eq!(
        names,
        ["anything", "users.delete", "x", "admin.reset", "late"]
    );
}

#[test]
fn child_privileged_span_inherits_the_trace_id() {
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let (sink, _) = run(|| {
        privileged_span!(&actor, "task.run").in_scope(|| {
            // A non-privileged span in between does not break the chain.
            tracing::info_span!("plain").in_scope(|| {
                privileged_span!(&actor, "payments.transfer").in_scope(|| {});
            });
        });
        privileged_span!(&actor, "other").in_scope(|| {});
    });
    let r = sink.records();
    assert_eq!(r.len(), 3);
    let (child, parent, other) = (&r[0], &r[1], &r[2]);
    assert_eq!(child.action, "payments.transfer");
    assert_eq!(child.trace_id, parent.trace_id);
    assert_ne!(child.span_id, parent.span_id);
    assert_ne!(
        other.trace_id, parent.trace_id,
        "a new root starts a new trace"
    );
}

#[test]
fn error_event_inside_makes_the_outcome_error_unless_stated() {
    let actor = Actor::agent("agt_7f3", "usr_alice");
    let (sink, _) = run(|| {
        privileged_span!(&actor, "a").in_scope(|| tracing::error!("failed"));
        privileged_span!(&actor, "b").in_scope(|| tracing::warn!("meh"));
        privileged_span!(&actor, "c", outcome = "denied").in_scope(|| tracing::error!("no"));
    });
    let outcomes: Vec<_> = sink.records().into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, ["error", "ok", "denied"]);
}

#[test]
fn action_field_overrides_the_span_name() {
    let (sink, _) = run(|| {
        privileged_span!(
            Actor::human("usr_alice"),
            "http.request",
            action = "users.delete"
        )
        .in_scope(|| {});
    });
    assert_eq!(sink.records()[0].action, "users.delete");
}

#[test]
fn layer_composes_with_a_fmt_layer() {
    let sink = MemorySink::default();
    let (layer, _guard) = AuditLayer::builder().memory(sink.clone()).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        privileged_span!(Actor::agent("agt", "usr"), "x").in_scope(|| tracing::info!("hi"));
    });
    assert_eq!(sink.records().len(), 1);
}

mod gate {
    use audit_layer::{
        gate, identity, Actor, AuditLayer, GateError, MemorySink, Policy, Privileged,
    };
    use tracing_subscriber::layer::SubscriberExt;

    fn run<T>(sink: &MemorySink, policy: Policy, app: impl FnOnce() -> T) -> T {
        let (layer, _guard) = AuditLayer::builder()
            .memory(sink.clone())
            .policy(policy)
            .build()
            .unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), app)
    }

    #[test]
    fn gated_action_becomes_a_row_and_children_inherit_the_dual_key() {
        let sink = MemorySink::default();
        let event_id = run(&sink, Policy::default(), || {
            let actor = Actor::agent("agt_7f3", "usr_alice").credential("key_1");
            let guard = gate(&actor, "payments.transfer", "acct_42").unwrap();
            // A privileged child that names no actor: inherits the gate's.
            tracing::info_span!(target: "audit", "ledger.write", target = "ledger_1")
                .in_scope(|| {});
            guard.outcome("denied");
            guard.event_id().to_owned()
        });
        let rows = sink.records();
        assert_eq!(rows.len(), 2, "{:?}", sink.violations());
        let (child, parent) = (&rows[0], &rows[1]);
        assert_eq!(parent.action, "payments.transfer");
        assert_eq!(parent.target.as_deref(), Some("acct_42"));
        assert_eq!(parent.outcome, "denied");
        assert_eq!(parent.event_id, event_id);
        assert_eq!(child.action, "ledger.write");
        assert_eq!(child.agent_id.as_deref(), Some("agt_7f3"));
        assert_eq!(child.owner_id, "usr_alice");
        assert_eq!(child.agent_credential_id.as_deref(), Some("key_1"));
        assert_eq!(child.trace_id, parent.trace_id);
        assert!(sink.violations().is_empty());
    }

    #[test]
    fn the_gate_refuses_what_the_rules_refuse_and_leaves_a_violation() {
        let sink = MemorySink::default();
        let ran = run(
            &sink,
            Policy::default().dangerous_action("db.drop*"),
            || {
                let actor = Actor::agent("agt_1", "usr_1");
                match gate(&actor, "db.drop_table", "users") {
                    Ok(_g) => true,
                    Err(e) => {
                        assert!(matches!(e, GateError::Unattributed(_)), "{e}");
                        assert!(e.to_string().contains("consent"), "{e}");
                        false
                    }
                }
            },
        );
        assert!(!ran);
        assert!(sink.records().is_empty());
        let v = sink.violations();
        assert_eq!(v[0].missing, ["audit.consent.id"]);
        assert_eq!(v[0].span_name.as_deref(), Some("audit.gate"));
        // With consent it passes.
        run(
            &sink,
            Policy::default().dangerous_action("db.drop*"),
            || {
                let actor = Actor::agent("agt_1", "usr_1");
                drop(
                    Privileged::new(&actor, "db.drop_table")
                        .consent("cns_1")
                        .open()
                        .unwrap(),
                );
            },
        );
        assert_eq!(sink.records()[0].consent_id.as_deref(), Some("cns_1"));
    }

    #[test]
    fn without_the_layer_the_gate_refuses() {
        let actor = Actor::human("usr_alice");
        assert!(matches!(
            gate(&actor, "users.invite", "usr_bob"),
            Err(GateError::NotInstalled)
        ));
    }

    #[test]
    fn identity_lifecycle_rows_name_their_subjects() {
        let sink = MemorySink::default();
        run(&sink, Policy::default(), || {
            let alice = Actor::human("usr_alice");
            let bot = Actor::agent("agt_7f3", "usr_alice").credential("key_1");
            identity::create_agent(&alice, &bot).unwrap();
            let bot = identity::rotate_credential(&bot, "key_2").unwrap();
            let bot = identity::transfer_owner(&alice, &bot, "usr_carol").unwrap();
            assert_eq!(bot.owner_id(), "usr_carol");
            identity::revoke_agent(&Actor::human("usr_carol"), &bot).unwrap();
            let ids = identity::owner_access_change(
                &alice,
                "usr_alice",
                "revoked payments:write",
                &[
                    Actor::agent("agt_a", "usr_alice"),
                    Actor::agent("agt_b", "usr_alice"),
                ],
            )
            .unwrap();
            assert_eq!(ids.len(), 3);
            assert!(
                identity::rotate_credential(&alice, "k").is_err(),
                "a human has no credential to rotate"
            );
        });
        let rows = sink.records();
        let actions: Vec<_> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                identity::AGENT_CREATE,
                identity::CREDENTIAL_ROTATE,
                identity::OWNER_TRANSFER,
                identity::AGENT_REVOKE,
                identity::OWNER_ACCESS_CHANGE,
                identity::OWNER_ACCESS_CHANGE,
                identity::OWNER_ACCESS_CHANGE,
            ]
        );
        let rot = &rows[1];
        assert_eq!(rot.agent_id.as_deref(), Some("agt_7f3"));
        assert_eq!(rot.agent_credential_id.as_deref(), Some("key_2"));
        assert_eq!(rot.attributes["identity.credential.previous"], "key_1");
        assert_eq!(rows[2].attributes["identity.owner.new"], "usr_carol");
        assert_eq!(rows[4].attributes["identity.cascade.size"], "2");
        for (row, agent) in rows[5..].iter().zip(["agt_a", "agt_b"]) {
            assert_eq!(row.target.as_deref(), Some(agent));
            assert_eq!(row.attributes["identity.cascade.parent"], rows[4].event_id);
        }
    }
}
