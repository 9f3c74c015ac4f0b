//! Delegation chains at the layer: `on_behalf_of` puts the chain on the
//! row, child spans inherit it, and each rule of
//! `audit_schema::delegation` refuses at span close, naming the hop.

use audit_layer::{privileged_span, Actor, AuditLayer, MemorySink};
use audit_schema::delegation::{parse, to_json};
use audit_schema::Hop;
use tracing_subscriber::layer::SubscriberExt;

fn audited(f: impl FnOnce()) -> MemorySink {
    let sink = MemorySink::default();
    let (layer, _guard) = AuditLayer::builder()
        .service_name("tools")
        .memory(sink.clone())
        .build()
        .expect("memory destination builds");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    sink
}

fn worker() -> Actor {
    let alice = Actor::human("usr_alice");
    let planner = Actor::agent("agt_planner", "usr_alice").on_behalf_of(&alice);
    Actor::agent("agt_worker", "usr_bob")
        .credential("key_w1")
        .on_behalf_of(&planner)
}

/// The one violation's reason; fails if a record was written instead.
fn refused(sink: &MemorySink) -> String {
    assert!(sink.records().is_empty(), "{:?}", sink.records());
    let v = sink.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].missing.iter().any(|m| m.starts_with("audit.")),
        "{v:?}"
    );
    v[0].reason.clone()
}

#[test]
fn the_row_carries_the_chain_and_its_origin_and_children_inherit_them() {
    let sink = audited(|| {
        let w = worker();
        privileged_span!(&w, "db.write", target = "tbl_orders").in_scope(|| {
            tracing::info_span!(target: "audit", "db.index").in_scope(|| {});
        });
    });
    let rows = sink.records();
    assert_eq!(rows.len(), 2, "{:?}", sink.violations());
    for r in &rows {
        assert_eq!(r.origin_id.as_deref(), Some("usr_alice"), "{}", r.action);
        let hops = parse(r.delegation.as_deref().expect("a chain")).expect("JSON hops");
        let ids: Vec<_> = hops.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["usr_alice", "agt_planner", "agt_worker"]);
        assert_eq!(hops[2].credential_id.as_deref(), Some("key_w1"));
        assert_eq!(hops[1].owner_id.as_deref(), Some("usr_alice"));
        assert_eq!(r.delegation_from, None, "built in-process");
    }
}

#[test]
fn a_single_hop_actor_writes_no_chain() {
    let sink = audited(|| {
        privileged_span!(Actor::agent("agt_1", "usr_alice"), "db.write").in_scope(|| {});
    });
    let r = &sink.records()[0];
    assert_eq!(
        (r.delegation.as_deref(), r.origin_id.as_deref()),
        (None, None)
    );
}

/// `agt_worker` (owned by bob) writing, with the chain given (none when empty).
fn agent_span(chain: &[Hop], scopes: &str, origin: Option<&str>) {
    let json = (!chain.is_empty()).then(|| to_json(chain));
    tracing::info_span!(target: "audit", "db.write",
        agent.id = "agt_worker", owner.id = "usr_bob",
        delegation = json.as_deref(), scopes = scopes, origin.id = origin)
    .in_scope(|| {});
}

fn scoped(mut hop: Hop, scopes: &[&str]) -> Hop {
    hop.scopes = Some(scopes.iter().map(|s| (*s).to_owned()).collect());
    hop
}

#[test]
fn widening_scopes_is_refused_at_the_layer() {
    let chain = [
        Hop::human("usr_alice"),
        scoped(Hop::agent("agt_planner", "usr_alice"), &["db:read"]),
        scoped(Hop::agent("agt_worker", "usr_bob"), &["db:read", "db:drop"]),
    ];
    let reason = refused(&audited(|| agent_span(&chain, "db:read", None)));
    assert!(
        reason.contains("hop 2 (\"agt_worker\")") && reason.contains("db:drop"),
        "{reason}"
    );
}

#[test]
fn a_chain_deeper_than_the_limit_is_refused_at_the_layer() {
    let mut chain = vec![Hop::human("usr_alice")];
    chain.extend((0..8).map(|i| Hop::agent(format!("agt_{i}"), "usr_alice")));
    chain.push(Hop::agent("agt_worker", "usr_bob"));
    let reason = refused(&audited(|| agent_span(&chain, "", None)));
    assert!(reason.contains("10 hops; at most 8"), "{reason}");
}

#[test]
fn an_agent_hop_without_owner_is_refused_at_the_layer() {
    let mut planner = Hop::agent("agt_planner", "usr_alice");
    planner.owner_id = None;
    let chain = [
        Hop::human("usr_alice"),
        planner,
        Hop::agent("agt_worker", "usr_bob"),
    ];
    let reason = refused(&audited(|| agent_span(&chain, "", None)));
    assert!(reason.contains("hop 1 (\"agt_planner\")"), "{reason}");
}

#[test]
fn a_forged_origin_is_refused_at_the_layer() {
    // Without a chain: another human than the owner.
    let reason = refused(&audited(|| agent_span(&[], "", Some("usr_ceo"))));
    assert!(reason.contains("audit.origin.id"), "{reason}");
    // With a chain that starts elsewhere.
    let chain = [Hop::human("usr_alice"), Hop::agent("agt_worker", "usr_bob")];
    let reason = refused(&audited(|| agent_span(&chain, "", Some("usr_ceo"))));
    assert!(reason.contains("hop 0"), "{reason}");
}

#[test]
fn a_chain_ending_in_another_actor_is_refused_at_the_layer() {
    let chain = [
        Hop::human("usr_alice"),
        Hop::agent("agt_planner", "usr_alice"),
    ];
    let reason = refused(&audited(|| agent_span(&chain, "", None)));
    assert!(reason.contains("not the acting actor"), "{reason}");
}
