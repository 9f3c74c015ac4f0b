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
