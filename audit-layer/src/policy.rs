//! Which spans are privileged, and which actions are dangerous.
//!
//! By default a span is privileged when its target is `audit` or lies under
//! it (`audit::payments`, `audit.payments`), or when it declares the field
//! `audit.privileged` and records `true`.
//!
//! ```
//! use audit_layer::Policy;
//!
//! let policy = Policy::default()
//!     .target_prefix("billing::admin")        // every span under this module
//!     .span_name("users.delete")              // this span name, whatever its target
//!     .dangerous_action("payments.*");        // consent required
//! # let _ = policy;
//! ```
//!
//! Matching a prefix at a path boundary rather than as a bare string prefix
//! is a deliberate refinement of "target starts with `audit`": a crate named
//! `audit_collector` or `auditor` would otherwise have every one of its
//! spans treated as a privileged action and reported as a violation.

use std::fmt;
use std::sync::Arc;

use audit_schema::{Field, Rules};
use tracing_core::Metadata;

type Predicate = dyn Fn(&Metadata<'_>) -> bool + Send + Sync;

/// Decides what is privileged (from static callsite metadata wherever
/// possible) and carries the dual-key [`Rules`].
#[derive(Clone)]
pub struct Policy {
    target_prefixes: Vec<String>,
    span_names: Vec<String>,
    predicate: Option<Arc<Predicate>>,
    rules: Rules,
}

/// What the callsite metadata alone says about a span. The discriminants
/// fit in the two low bits of an address (`triage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Static {
    /// Never privileged: the layer does nothing for it.
    No = 0,
    /// Privileged only if it records `audit.privileged = true`.
    IfFlagged = 1,
    /// Privileged whatever its field values.
    Privileged = 2,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            target_prefixes: vec!["audit".to_owned()],
            span_names: Vec::new(),
            predicate: None,
            rules: Rules::default(),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("target_prefixes", &self.target_prefixes)
            .field("span_names", &self.span_names)
            .field(
                "predicate",
                &self.predicate.as_ref().map(|_| "Fn(&Metadata)"),
            )
            .field("rules", &self.rules)
            .finish()
    }
}

impl Policy {
    /// Also treats spans whose target is `prefix` or lies under it as privileged.
    ///
    /// ```
    /// let p = audit_layer::Policy::default().target_prefix("billing::admin");
    /// # let _ = p;
    /// ```
    pub fn target_prefix(mut self, prefix: impl Into<String>) -> Policy {
        self.target_prefixes.push(prefix.into());
        self
    }

    /// Removes every target prefix, including the default `audit`.
    ///
    /// ```
    /// let p = audit_layer::Policy::default().no_target_prefixes().span_name("users.delete");
    /// # let _ = p;
    /// ```
    pub fn no_target_prefixes(mut self) -> Policy {
        self.target_prefixes.clear();
        self
    }

    /// Also treats spans with exactly this name as privileged.
    ///
    /// ```
    /// let p = audit_layer::Policy::default().span_name("users.delete");
    /// # let _ = p;
    /// ```
    pub fn span_name(mut self, name: impl Into<String>) -> Policy {
        self.span_names.push(name.into());
        self
    }

    /// Also treats spans for which `f` returns true as privileged. `f` sees
    /// only static metadata; keep it cheap, it runs for every new span that
    /// the target prefixes and span names do not already make privileged.
    ///
    /// ```
    /// let p = audit_layer::Policy::default().predicate(|m| m.name().starts_with("admin."));
    /// # let _ = p;
    /// ```
    pub fn predicate(
        mut self,
        f: impl Fn(&Metadata<'_>) -> bool + Send + Sync + 'static,
    ) -> Policy {
        self.predicate = Some(Arc::new(f));
        self
    }

    /// Replaces the dual-key rules (dangerous-action patterns).
    ///
    /// ```
    /// let p = audit_layer::Policy::default()
    ///     .rules(audit_schema::Rules::default().dangerous_action("users.delete"));
    /// # let _ = p;
    /// ```
    pub fn rules(mut self, rules: Rules) -> Policy {
        self.rules = rules;
        self
    }

    /// Marks actions matching `pattern` (`*` matches any run) as dangerous:
    /// their spans need a `consent` token.
    ///
    /// ```
    /// let p = audit_layer::Policy::default().dangerous_action("payments.*");
    /// assert!(p.rules_ref().is_dangerous_action("payments.transfer"));
    /// ```
    pub fn dangerous_action(mut self, pattern: impl Into<String>) -> Policy {
        self.rules = self.rules.dangerous_action(pattern);
        self
    }

    /// The dual-key rules this policy applies.
    pub fn rules_ref(&self) -> &Rules {
        &self.rules
    }

    /// Whether callsite metadata alone makes a span privileged (target
    /// prefix, span name or predicate). Spans can still opt in with
    /// `audit.privileged = true`.
    ///
    /// No allocation: this runs for every span the application creates.
    pub fn is_privileged(&self, meta: &Metadata<'_>) -> bool {
        self.names(meta) || self.predicate.as_ref().is_some_and(|f| f(meta))
    }

    /// A target prefix or a span name of the policy names `meta`.
    fn names(&self, meta: &Metadata<'_>) -> bool {
        let target = meta.target();
        self.target_prefixes.iter().any(|p| under(target, p))
            || self.span_names.iter().any(|n| n == meta.name())
    }

    /// What the policy says about a span of `meta` (the layer asks its
    /// per-callsite cache, `triage`, which tests hold to this).
    #[cfg(test)]
    pub(crate) fn classify(&self, meta: &Metadata<'_>) -> Static {
        self.with_predicate(meta, self.by_rules(meta))
    }

    /// What the target prefixes, span names and the `audit.privileged`
    /// field say: the same for every span of a callsite, so the layer
    /// keeps it per callsite (`triage`).
    pub(crate) fn by_rules(&self, meta: &Metadata<'_>) -> Static {
        if !meta.is_span() {
            Static::No
        } else if self.names(meta) {
            Static::Privileged
        } else if meta.fields().field(Field::Privileged.wire()).is_some() {
            Static::IfFlagged
        } else {
            Static::No
        }
    }

    /// `by_rules`'s class, made privileged when the user's predicate says
    /// so: the predicate is asked for every span, as its docs promise.
    #[inline]
    pub(crate) fn with_predicate(&self, meta: &Metadata<'_>, by_rules: Static) -> Static {
        match &self.predicate {
            Some(f) if by_rules != Static::Privileged && meta.is_span() && f(meta) => {
                Static::Privileged
            }
            _ => by_rules,
        }
    }
}

/// `target` is `prefix` or a path under it (`::` or `.` separated).
fn under(target: &str, prefix: &str) -> bool {
    match target.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => rest.starts_with("::") || rest.starts_with('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn prefix_matches_at_path_boundaries_only() {
        assert!(under("audit", "audit"));
        assert!(under("audit::payments", "audit"));
        assert!(under("audit.payments", "audit"));
        assert!(!under("audit_collector::wal", "audit"));
        assert!(!under("auditor", "audit"));
        assert!(!under("aud", "audit"));
    }
}
