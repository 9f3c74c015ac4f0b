//! Identity lifecycle actions, recorded through the [gate](mod@crate::gate) like
//! any privileged action: the same attribution check, the same health
//! check under the [`WhenFull`](crate::WhenFull) policy, one audit row each.
//!
//! | action | row's actor | `target` | attributes |
//! |---|---|---|---|
//! | `identity.credential.rotate` | the agent itself, with its **new** credential (`agent_id` unchanged) | agent id | `identity.agent.id`, `identity.credential.previous`, `identity.credential.new` |
//! | `identity.agent.create` | `by` (who created it) | agent id | `identity.agent.id`, `identity.owner.id`, `identity.credential.new` (when set) |
//! | `identity.agent.revoke` | `by` | agent id | `identity.agent.id`, `identity.owner.id`, `identity.credential.previous` (when set) |
//! | `identity.owner.transfer` | `by` | agent id | `identity.agent.id`, `identity.owner.previous`, `identity.owner.new` |
//! | `identity.owner.access_change` (the change) | `by` | owner id | `identity.owner.id`, `identity.access.change`, `identity.cascade.size` |
//! | `identity.owner.access_change` (cascade, one row per affected agent) | `by` | agent id | `identity.agent.id`, `identity.owner.id`, `identity.access.change`, `identity.cascade.parent` = the change row's `event_id` |
//!
//! Because the agent id is a stable principal and the credential a
//! separate column, an agent's activity (`activity --agent ID`) reads as
//! one story across a rotation: the rows before carry the old
//! `agent_credential_id`, the rotation row says which replaced which, the
//! rows after carry the new one. A cascade can be read back with
//! `attributes['identity.cascade.parent'] = <event_id of the change>`.
//!
//! ```
//! use audit_layer::{identity, Actor, AuditLayer, MemorySink};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let sink = MemorySink::default();
//! let (layer, _guard) = AuditLayer::builder().memory(sink.clone()).build().unwrap();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     let alice = Actor::human("usr_alice");
//!     let bot = Actor::agent("agt_7f3", "usr_alice").credential("key_1");
//!     identity::create_agent(&alice, &bot).unwrap();
//!     let bot = identity::rotate_credential(&bot, "key_2").unwrap();
//!     assert_eq!((bot.agent_id(), bot.credential_id()), (Some("agt_7f3"), Some("key_2")));
//!     let rows = identity::owner_access_change(&alice, "usr_alice", "revoked payments:write",
//!         &[bot.clone(), Actor::agent("agt_9", "usr_alice")]).unwrap();
//!     assert_eq!(rows.len(), 3); // the change + one row per agent
//! });
//! assert_eq!(sink.records()[1].attributes["identity.credential.previous"], "key_1");
//! ```

use crate::actor::Actor;
use crate::gate::{self, GateError, Privileged};

/// Action names.
pub const CREDENTIAL_ROTATE: &str = "identity.credential.rotate";
/// See the [module docs](self).
pub const AGENT_CREATE: &str = "identity.agent.create";
/// See the [module docs](self).
pub const AGENT_REVOKE: &str = "identity.agent.revoke";
/// See the [module docs](self).
pub const OWNER_TRANSFER: &str = "identity.owner.transfer";
/// See the [module docs](self).
pub const OWNER_ACCESS_CHANGE: &str = "identity.owner.access_change";

fn agent_id(agent: &Actor) -> Result<&str, GateError> {
    agent
        .agent_id()
        .ok_or_else(|| GateError::Invalid(format!("{} is a human, not an agent", agent.owner_id())))
}

fn record(p: Privileged<'_>) -> Result<String, GateError> {
    let guard = p.open()?;
    Ok(guard.event_id().to_owned())
}

/// `identity.credential.rotate`: `agent` (with its current credential)
/// switches to `new_credential`. Returns the agent with the new credential;
/// the principal id stays.
pub fn rotate_credential(agent: &Actor, new_credential: &str) -> Result<Actor, GateError> {
    let id = agent_id(agent)?.to_owned();
    let rotated = agent.clone().credential(new_credential);
    let mut p = Privileged::new(&rotated, CREDENTIAL_ROTATE).target(&id);
    p.identity.agent = Some(id);
    p.identity.credential_previous = agent.credential_id().map(str::to_owned);
    p.identity.credential_new = Some(new_credential.to_owned());
    record(p)?;
    Ok(rotated)
}

/// `identity.agent.create`: `by` created `agent` (owned by `agent.owner_id()`).
pub fn create_agent(by: &Actor, agent: &Actor) -> Result<String, GateError> {
    let id = agent_id(agent)?.to_owned();
    let mut p = Privileged::new(by, AGENT_CREATE).target(&id);
    p.identity.agent = Some(id);
    p.identity.owner = Some(agent.owner_id().to_owned());
    p.identity.credential_new = agent.credential_id().map(str::to_owned);
    record(p)
}

/// `identity.agent.revoke`: `by` revoked `agent`.
pub fn revoke_agent(by: &Actor, agent: &Actor) -> Result<String, GateError> {
    let id = agent_id(agent)?.to_owned();
    let mut p = Privileged::new(by, AGENT_REVOKE).target(&id);
    p.identity.agent = Some(id);
    p.identity.owner = Some(agent.owner_id().to_owned());
    p.identity.credential_previous = agent.credential_id().map(str::to_owned);
    record(p)
}

/// `identity.owner.transfer`: `by` made `new_owner` accountable for `agent`.
/// Returns the agent with its new owner (same principal id).
pub fn transfer_owner(by: &Actor, agent: &Actor, new_owner: &str) -> Result<Actor, GateError> {
    let id = agent_id(agent)?.to_owned();
    let mut p = Privileged::new(by, OWNER_TRANSFER).target(&id);
    p.identity.agent = Some(id.clone());
    p.identity.owner_previous = Some(agent.owner_id().to_owned());
    p.identity.owner_new = Some(new_owner.to_owned());
    record(p)?;
    let mut moved = Actor::agent(id, new_owner);
    if let Some(c) = agent.credential_id() {
        moved = moved.credential(c);
    }
    if let Some(n) = agent.agent_name() {
        moved = moved.name(n);
    }
    Ok(moved)
}

/// `identity.owner.access_change`: `by` changed what `owner_id` may do
/// (`change`, free text such as `"revoked payments:write"`), which cascades
/// to every agent acting for that owner. Records the change and one row per
/// affected agent, after checking once that the audit path has room for
/// all of them. Returns the event ids, the change first.
pub fn owner_access_change(
    by: &Actor,
    owner_id: &str,
    change: &str,
    agents: &[Actor],
) -> Result<Vec<String>, GateError> {
    for a in agents {
        agent_id(a)?;
    }
    let core = gate::current().ok_or(GateError::NotInstalled)?;
    let mut p = Privileged::new(by, OWNER_ACCESS_CHANGE).target(owner_id);
    p.rows = agents.len() + 1;
    p.identity.owner = Some(owner_id.to_owned());
    p.identity.access_change = Some(change.to_owned());
    p.identity.cascade_size = Some(agents.len() as u64);
    let parent = p.open_with(&core)?.event_id().to_owned();
    let mut ids = vec![parent.clone()];
    for a in agents {
        let id = agent_id(a)?.to_owned();
        let mut p = Privileged::new(by, OWNER_ACCESS_CHANGE).target(&id);
        p.admitted = true;
        p.identity.agent = Some(id);
        p.identity.owner = Some(owner_id.to_owned());
        p.identity.access_change = Some(change.to_owned());
        p.identity.cascade_parent = Some(parent.clone());
        ids.push(p.open_with(&core)?.event_id().to_owned());
    }
    Ok(ids)
}
