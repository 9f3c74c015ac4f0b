//! `privileged_span!`: a span whose first argument is the actor, so that
//! forgetting attribution does not compile.

/// Creates an `INFO` span with target `audit` for a privileged action,
/// attributed to an [`Actor`](crate::Actor).
///
/// `privileged_span!(actor, "action.name", field = value, ...)` expands to
/// `tracing::info_span!(target: "audit", "action.name", actor.kind = ..,
/// agent.id = .., owner.id = .., agent.credential = .., agent.name = ..,
/// initiator.id = .., task.id = .., delegation = .., origin.id = ..,
/// delegation.from = .., event.id = .., field = value, ...)`.
/// Optional actor parts are recorded only when set. The span carries a
/// fresh UUIDv7 `event.id` (the audit row's), so the application's own
/// `fmt` log shows it; an `event.id` among the fields is kept instead. The actor may be an `Actor` or an
/// `&Actor`; user fields accept tracing's `%` (Display) and `?` (Debug)
/// sigils, and may be declared `tracing::field::Empty` and recorded later.
///
/// ```
/// use audit_layer::{privileged_span, Actor};
///
/// let actor = Actor::agent("agt_7f3", "usr_alice").credential("key_2026_11");
/// let account = "acct_42";
/// let span = privileged_span!(&actor, "payments.transfer",
///     target = %account, scopes = "payments:write", amount = 100);
/// let _entered = span.enter();
/// ```
///
/// Without an actor it does not compile (tokio-rs/tracing#1421 aside, this
/// is the reason for a macro of our own):
///
/// ```compile_fail
/// let span = audit_layer::privileged_span!("payments.transfer", target = "acct_42");
/// ```
///
/// ```compile_fail
/// // A string is not an actor either.
/// let span = audit_layer::privileged_span!("usr_alice", "payments.transfer");
/// ```
#[macro_export]
macro_rules! privileged_span {
    ($actor:expr, $name:expr, $($fields:tt)*) => {
        // A match keeps a temporary actor (`privileged_span!(Actor::human(..), ..)`)
        // alive while the span records its fields.
        match &$actor {
            __audit_actor => {
                let __audit_actor: &$crate::Actor =
                    ::core::borrow::Borrow::<$crate::Actor>::borrow(__audit_actor);
                $crate::__privileged_span_fields!(
                    @field
                    [
                        target: "audit",
                        $name,
                        actor.kind = __audit_actor.kind(),
                        agent.id = __audit_actor.agent_id(),
                        owner.id = __audit_actor.owner_id(),
                        agent.credential = __audit_actor.credential_id(),
                        agent.name = __audit_actor.agent_name(),
                        initiator.id = __audit_actor.initiator_id(),
                        task.id = __audit_actor.task_id(),
                        delegation = __audit_actor.delegation_json(),
                        origin.id = __audit_actor.origin_id(),
                        delegation.from = __audit_actor.delegation_from(),
                    ]
                    [$($fields)*]
                    $($fields)*
                )
            }
        }
    };
    ($actor:expr, $name:expr) => {
        $crate::privileged_span!($actor, $name,)
    };
}

/// `privileged_span!`'s fields: the caller's `event.id` when it names one
/// (an idempotency key it may retry with), else a fresh one, recorded on
/// the span so that the application's own logs show the audit row's id.
/// Scans the fields at their starts (after a top-level comma).
#[doc(hidden)]
#[macro_export]
macro_rules! __privileged_span_fields {
    (@field [$($head:tt)*] [$($user:tt)*] event . id $($rest:tt)*) => {
        $crate::__private::tracing::info_span!($($head)* $($user)*)
    };
    (@field [$($head:tt)*] [$($user:tt)*] audit . event . id $($rest:tt)*) => {
        $crate::__private::tracing::info_span!($($head)* $($user)*)
    };
    (@field [$($head:tt)*] [$($user:tt)*] $skip:tt $($rest:tt)*) => {
        $crate::__privileged_span_fields!(@value [$($head)*] [$($user)*] $($rest)*)
    };
    (@value [$($head:tt)*] [$($user:tt)*] , $($rest:tt)*) => {
        $crate::__privileged_span_fields!(@field [$($head)*] [$($user)*] $($rest)*)
    };
    (@value [$($head:tt)*] [$($user:tt)*] $skip:tt $($rest:tt)*) => {
        $crate::__privileged_span_fields!(@value [$($head)*] [$($user)*] $($rest)*)
    };
    (@$state:ident [$($head:tt)*] [$($user:tt)*]) => {
        $crate::__private::tracing::info_span!(
            $($head)*
            event.id = $crate::__private::event_id().as_str(),
            $($user)*
        )
    };
}
