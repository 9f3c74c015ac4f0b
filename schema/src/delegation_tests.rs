use super::*;
use crate::Rules;

fn scoped(mut hop: Hop, scopes: &[&str]) -> Hop {
    hop.scopes = Some(scopes.iter().map(|s| (*s).to_owned()).collect());
    hop
}

/// A worker agent (owned by bob) acting for alice through a planner.
fn chain() -> Vec<Hop> {
    vec![
        Hop::human("usr_alice"),
        scoped(
            Hop::agent("agt_planner", "usr_alice"),
            &["db:read", "db:write"],
        ),
        scoped(Hop::agent("agt_worker", "usr_bob"), &["db:write"]),
    ]
}

fn draft(hops: &[Hop]) -> Draft {
    Draft {
        start_time_ns: Some(1_764_000_000_000_000_000),
        action: Some("db.write".into()),
        agent_id: Some("agt_worker".into()),
        owner_id: Some("usr_bob".into()),
        delegation: Some(to_json(hops)),
        ..Draft::default()
    }
}

fn refusal(d: Draft) -> Vec<Problem> {
    Rules::default().check(d).expect_err("refused").problems
}

fn hop_of(p: &Problem) -> Option<usize> {
    match p {
        Problem::Delegation { hop, .. } => hop.as_ref().map(|(i, _)| *i),
        _ => None,
    }
}

#[test]
fn a_good_chain_is_accepted_and_its_human_origin_filled() {
    let r = Rules::default().check(draft(&chain())).expect("accepted");
    assert_eq!(r.origin_id.as_deref(), Some("usr_alice"));
    assert_eq!(parse(r.delegation.as_deref().unwrap()).unwrap(), chain());
}

#[test]
fn an_agent_hop_without_owner_is_refused_naming_it() {
    let mut hops = chain();
    hops[1].owner_id = None;
    let p = refusal(draft(&hops));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(hop_of(&p[0]), Some(1));
    assert!(p[0].to_string().contains("agt_planner"), "{}", p[0]);
    assert_eq!(p[0].field(), "audit.delegation");
}

#[test]
fn a_last_hop_other_than_the_actor_is_refused() {
    let mut hops = chain();
    hops.pop();
    let p = refusal(draft(&hops));
    assert_eq!(p.iter().map(hop_of).collect::<Vec<_>>(), [Some(1)], "{p:?}");
    assert!(p[0].to_string().contains("acting actor"), "{}", p[0]);

    // Same id, another owner: still not the row's actor.
    let mut hops = chain();
    hops[2].owner_id = Some("usr_mallory".into());
    assert_eq!(
        refusal(draft(&hops)).iter().map(hop_of).collect::<Vec<_>>(),
        [Some(2)]
    );
}

#[test]
fn a_stated_origin_must_be_the_first_hop_and_a_human() {
    let mut d = draft(&chain());
    d.origin_id = Some("usr_mallory".into());
    let p = refusal(d);
    assert_eq!((p.len(), hop_of(&p[0])), (1, Some(0)), "{p:?}");

    let mut hops = chain();
    hops.remove(0);
    let mut d = draft(&hops);
    d.origin_id = Some("agt_planner".into());
    assert_eq!(refusal(d).iter().map(hop_of).collect::<Vec<_>>(), [Some(0)]);

    let mut d = draft(&chain());
    d.origin_id = Some("usr_alice".into());
    assert!(Rules::default().check(d).is_ok());
}

#[test]
fn an_origin_without_a_chain_must_be_the_owner() {
    let mut d = draft(&[]);
    d.delegation = None;
    d.origin_id = Some("usr_ceo".into());
    let p = refusal(d.clone());
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field(), "audit.origin.id");
    // Single-hop rows: the owner is the origin, as before.
    d.origin_id = Some("usr_bob".into());
    assert!(Rules::default().check(d).is_ok());
}

#[test]
fn a_chain_deeper_than_the_limit_is_refused() {
    let mut hops = vec![Hop::human("usr_alice")];
    for i in 0..8 {
        hops.push(Hop::agent(format!("agt_{i}"), "usr_alice"));
    }
    hops.push(Hop::agent("agt_worker", "usr_bob"));
    let p = refusal(draft(&hops));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].to_string().contains("10 hops; at most 8"), "{}", p[0]);
    let mut rules = Rules::default();
    rules.limits.max_delegation_hops = 10;
    assert!(rules.check(draft(&hops)).is_ok());
}

#[test]
fn widening_scopes_is_refused_naming_the_hop() {
    let mut hops = chain();
    hops[2].scopes = Some(vec!["db:write".into(), "db:drop".into()]);
    let p = refusal(draft(&hops));
    assert_eq!(p.iter().map(hop_of).collect::<Vec<_>>(), [Some(2)], "{p:?}");
    assert!(p[0].to_string().contains("db:drop"), "{}", p[0]);

    // A hop that states nothing does not reset what was held.
    let mut hops = chain();
    hops[1].scopes = None;
    hops.insert(1, scoped(Hop::agent("agt_root", "usr_alice"), &["db:read"]));
    assert_eq!(
        refusal(draft(&hops)).iter().map(hop_of).collect::<Vec<_>>(),
        [Some(3)]
    );

    // The row's own scopes are the acting hop's.
    let mut d = draft(&chain());
    d.scopes = vec!["db:read".into()];
    assert_eq!(refusal(d).iter().map(hop_of).collect::<Vec<_>>(), [Some(2)]);
}

#[test]
fn an_unreadable_or_empty_chain_is_refused() {
    let mut d = draft(&chain());
    d.delegation = Some("agt_a > agt_b".into());
    assert!(refusal(d.clone())[0]
        .to_string()
        .contains("not a JSON array"));
    d.delegation = Some("[]".into());
    assert!(refusal(d)[0].to_string().contains("no hops"));
}

#[test]
fn a_human_acting_at_the_end_of_a_chain_is_the_last_hop() {
    let hops = [Hop::human("usr_alice")];
    let d = Draft {
        start_time_ns: Some(1_764_000_000_000_000_000),
        action: Some("db.write".into()),
        actor_kind: Some("human".into()),
        owner_id: Some("usr_alice".into()),
        delegation: Some(to_json(&hops)),
        ..Draft::default()
    };
    let r = Rules::default().check(d).expect("accepted");
    assert_eq!(r.origin_id.as_deref(), Some("usr_alice"));
}
