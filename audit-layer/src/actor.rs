//! Who acts: a typed actor, so that the dual key is a value you pass around
//! rather than two strings you might forget.
//!
//! ```
//! use audit_layer::Actor;
//!
//! let agent = Actor::agent("agt_7f3", "usr_alice").credential("key_2026_11");
//! assert_eq!(agent.agent_id(), Some("agt_7f3"));
//! assert_eq!(agent.owner_id(), "usr_alice");
//!
//! let human = Actor::human("usr_alice");
//! assert_eq!((human.kind(), human.agent_id()), ("human", None));
//! ```
//!
//! An agent acting for another agent says so, and the chain back to the
//! human who started it travels with it (schema v2's `delegation`):
//!
//! ```
//! use audit_layer::Actor;
//!
//! let alice = Actor::human("usr_alice");
//! let planner = Actor::agent("agt_planner", "usr_alice").on_behalf_of(&alice);
//! let worker = Actor::agent("agt_worker", "usr_bob").on_behalf_of(&planner);
//! assert_eq!(worker.origin_id(), Some("usr_alice"));
//! assert_eq!(worker.hops().len(), 3);
//! ```

use audit_schema::delegation::{self, Hop};
use audit_schema::ActorKind;

/// The actor of a privileged action: an agent acting for an owning human,
/// or a human acting themself. Use it with [`privileged_span!`](crate::privileged_span).
///
/// There is deliberately no way to build an agent without an owner, or a
/// human without saying so: those are the two mistakes the audit trail
/// exists to catch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    kind: ActorKind,
    agent_id: Option<String>,
    owner_id: String,
    credential: Option<String>,
    name: Option<String>,
    initiator: Option<String>,
    task: Option<String>,
    chain: Chain,
}

/// The hops before an actor, and what they are stored as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Chain {
    /// From the origin to the actor's direct principal; empty when the
    /// actor acts for nobody but its owner.
    before: Vec<Hop>,
    /// The full chain (`before` and the actor) as stored; `None` when `before` is empty.
    json: Option<String>,
    /// The first hop's id when it is a human.
    origin: Option<String>,
    /// The service that sent the chain in a request header.
    from: Option<String>,
    /// The scopes the actor holds and may hand on, when stated.
    scopes: Option<Vec<String>>,
}

impl Actor {
    /// An AI agent (`agent_id`, a stable principal id) acting for `owner_id`,
    /// the accountable human.
    ///
    /// ```
    /// let a = audit_layer::Actor::agent("agt_7f3", "usr_alice");
    /// assert_eq!(a.kind(), "agent");
    /// ```
    pub fn agent(agent_id: impl Into<String>, owner_id: impl Into<String>) -> Actor {
        Actor {
            kind: ActorKind::Agent,
            agent_id: Some(agent_id.into()),
            owner_id: owner_id.into(),
            credential: None,
            name: None,
            initiator: None,
            task: None,
            chain: Chain::default(),
        }
    }

    /// A human acting themself. This states `actor.kind = "human"`, which
    /// is what makes "no agent was involved" provable later.
    ///
    /// ```
    /// let h = audit_layer::Actor::human("usr_alice");
    /// assert_eq!(h.owner_id(), "usr_alice");
    /// ```
    pub fn human(owner_id: impl Into<String>) -> Actor {
        Actor {
            kind: ActorKind::Human,
            agent_id: None,
            owner_id: owner_id.into(),
            credential: None,
            name: None,
            initiator: None,
            task: None,
            chain: Chain::default(),
        }
    }

    /// The credential the agent used (survives in the record across rotations).
    ///
    /// ```
    /// let a = audit_layer::Actor::agent("agt", "usr").credential("key_1");
    /// assert_eq!(a.credential_id(), Some("key_1"));
    /// ```
    pub fn credential(mut self, credential_id: impl Into<String>) -> Actor {
        self.credential = Some(credential_id.into());
        // The stored chain's last hop names the credential too.
        let before = std::mem::take(&mut self.chain.before);
        self.set_chain(before);
        self
    }

    /// Display name of the agent.
    ///
    /// ```
    /// let a = audit_layer::Actor::agent("agt", "usr").name("ledger-bot");
    /// assert_eq!(a.agent_name(), Some("ledger-bot"));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Actor {
        self.name = Some(name.into());
        self
    }

    /// Who started the task this action belongs to.
    ///
    /// ```
    /// let a = audit_layer::Actor::agent("agt", "usr").initiator("usr_bob");
    /// assert_eq!(a.initiator_id(), Some("usr_bob"));
    /// ```
    pub fn initiator(mut self, initiator_id: impl Into<String>) -> Actor {
        self.initiator = Some(initiator_id.into());
        self
    }

    /// Which task this action belongs to.
    ///
    /// ```
    /// let a = audit_layer::Actor::agent("agt", "usr").task("tsk_9");
    /// assert_eq!(a.task_id(), Some("tsk_9"));
    /// ```
    pub fn task(mut self, task_id: impl Into<String>) -> Actor {
        self.task = Some(task_id.into());
        self
    }

    /// This actor acts for `principal` (a human, or an agent itself acting
    /// for someone): the principal's chain, then the principal, come
    /// before this actor in the row's `delegation`, and the chain's first
    /// human is its `origin_id`. Spans inherit it with the dual key.
    ///
    /// ```
    /// use audit_layer::Actor;
    /// let planner = Actor::agent("agt_planner", "usr_alice").on_behalf_of(&Actor::human("usr_alice"));
    /// let hops = Actor::agent("agt_worker", "usr_bob").on_behalf_of(&planner).hops();
    /// let ids: Vec<_> = hops.iter().map(|h| h.id.as_str()).collect();
    /// assert_eq!(ids, ["usr_alice", "agt_planner", "agt_worker"]);
    /// ```
    pub fn on_behalf_of(mut self, principal: &Actor) -> Actor {
        let mut before = principal.chain.before.clone();
        before.push(principal.hop());
        self.chain.from.clone_from(&principal.chain.from);
        self.set_chain(before);
        self
    }

    /// The scopes this actor holds (its hop's `scopes`): an actor acting
    /// on its behalf may hold a subset, never more; the rules refuse a
    /// row whose chain widens them.
    ///
    /// ```
    /// use audit_layer::Actor;
    /// let planner = Actor::agent("agt_planner", "usr_alice").holding(["db:read", "db:write"]);
    /// let worker = Actor::agent("agt_worker", "usr_bob").holding(["db:write"]).on_behalf_of(&planner);
    /// assert_eq!(worker.hops()[0].scopes.as_deref(), Some(&["db:read".to_owned(), "db:write".to_owned()][..]));
    /// ```
    pub fn holding<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Actor {
        self.chain.scopes = Some(scopes.into_iter().map(Into::into).collect());
        let before = std::mem::take(&mut self.chain.before);
        self.set_chain(before);
        self
    }

    /// The actor with the hops before it replaced by `before` (origin
    /// first), as [`crate::propagation`] rebuilds a caller from a request.
    pub(crate) fn with_chain(
        mut self,
        before: Vec<Hop>,
        scopes: Option<Vec<String>>,
        from: Option<String>,
    ) -> Actor {
        self.chain.scopes = scopes;
        self.chain.from = from;
        self.set_chain(before);
        self
    }

    fn set_chain(&mut self, before: Vec<Hop>) {
        self.chain.before = before;
        let hops = self.hops();
        self.chain.origin = hops
            .first()
            .filter(|h| h.kind == ActorKind::Human)
            .map(|h| h.id.clone());
        self.chain.json = (hops.len() > 1).then(|| delegation::to_json(&hops));
    }

    /// This actor as one hop of a chain.
    pub fn hop(&self) -> Hop {
        Hop {
            kind: self.kind,
            id: self
                .agent_id
                .clone()
                .unwrap_or_else(|| self.owner_id.clone()),
            owner_id: self.agent_id.as_ref().map(|_| self.owner_id.clone()),
            credential_id: self.credential.clone(),
            scopes: self.chain.scopes.clone(),
        }
    }

    /// The whole chain, origin first, this actor last (just this actor
    /// when it acts for nobody but its owner).
    pub fn hops(&self) -> Vec<Hop> {
        let mut hops = self.chain.before.clone();
        hops.push(self.hop());
        hops
    }

    /// The chain as stored in `delegation`; `None` for a single hop.
    pub fn delegation_json(&self) -> Option<&str> {
        self.chain.json.as_deref()
    }

    /// The human at the start of the chain; `None` for a single hop or a
    /// chain that starts with an agent.
    pub fn origin_id(&self) -> Option<&str> {
        self.chain.origin.as_deref()
    }

    /// The service that sent this actor's chain, when it came in a request.
    pub fn delegation_from(&self) -> Option<&str> {
        self.chain.from.as_deref()
    }

    /// `"agent"` or `"human"`, as recorded in `actor.kind`.
    pub fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The agent principal id; `None` for a human.
    pub fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }

    /// The accountable human (the human themself for a human action).
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    /// The credential the agent used.
    pub fn credential_id(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// Display name of the agent.
    pub fn agent_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Who started the task.
    pub fn initiator_id(&self) -> Option<&str> {
        self.initiator.as_deref()
    }

    /// Which task.
    pub fn task_id(&self) -> Option<&str> {
        self.task.as_deref()
    }
}
