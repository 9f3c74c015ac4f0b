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

/// What the callsite metadata alone says about a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Static {
    /// Privileged whatever its field values.
    Privileged,
    /// Privileged only if it records `audit.privileged = true`.
    IfFlagged,
    /// Never privileged: the layer does nothing for it.
    No,
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
    /// only static metadata; keep it cheap, it runs for every new span.
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
        let target = meta.target();
        self.target_prefixes.iter().any(|p| under(target, p))
            || self.span_names.iter().any(|n| n == meta.name())
            || self.predicate.as_ref().is_some_and(|f| f(meta))
    }

    /// True when no state can have been attached to a span of `meta`: it
    /// classifies as [`Static::No`] by rules alone. A user predicate is
    /// not trusted to answer the same at close as at creation, so with one
    /// the answer is always false (and the span's extensions are checked).
    pub(crate) fn surely_not_privileged(&self, meta: &Metadata<'_>) -> bool {
        self.predicate.is_none() && matches!(self.classify(meta), Static::No)
    }

    pub(crate) fn classify(&self, meta: &Metadata<'_>) -> Static {
        if !meta.is_span() {
            Static::No
        } else if self.is_privileged(meta) {
            Static::Privileged
        } else if meta.fields().field(Field::Privileged.wire()).is_some() {
            Static::IfFlagged
        } else {
            Static::No
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
