//! The delegation chain across services: [`inject`] puts the acting
//! actor's chain on an outgoing request's headers (HTTP, or gRPC metadata
//! with [`inject_grpc`]), [`extract`] rebuilds the caller on the other side,
//! and the service's own actor then acts [`on_behalf_of`](crate::Actor::on_behalf_of)
//! it. With the `tower` feature, [`ExtractLayer`] does the extraction for
//! axum and tonic servers.
//!
//! ```
//! use audit_layer::{propagation, Actor};
//!
//! // The worker, acting for alice through a planner, calls a tool service.
//! let planner = Actor::agent("agt_planner", "usr_alice").on_behalf_of(&Actor::human("usr_alice"));
//! let worker = Actor::agent("agt_worker", "usr_bob").on_behalf_of(&planner);
//! let mut headers = http::HeaderMap::new();
//! propagation::inject(&mut headers, &worker, "worker-svc").unwrap();
//!
//! // In the tool service:
//! let caller = propagation::extract(&headers).unwrap().expect("a chain was sent");
//! let tool = Actor::agent("agt_tool", "usr_ops").on_behalf_of(&caller);
//! assert_eq!(tool.origin_id(), Some("usr_alice"));
//! assert_eq!(tool.delegation_from(), Some("worker-svc"));
//! assert_eq!(tool.hops().len(), 4);
//! ```
//!
//! ## Wire format
//!
//! | header | value |
//! |---|---|
//! | `Audit-Delegation-Chain` | base64url (no padding) of the chain's JSON: the array of hops `{kind, id, owner_id, credential_id, scopes}` stored in the `delegation` column, origin first, the calling actor last |
//! | `Audit-Delegation-From` | the calling service's name (`service.name`) |
//!
//! The header name is the IETF audit-architecture draft's
//! (`draft-kuehlewind-audit-architecture`, work item WI-11). Where we
//! depart: the draft names the header but defines no encoding, and its
//! examples carry a flat list of ids; ours carries each hop's kind and
//! accountable owner (the draft's chain has no owner per hop) and is
//! base64url-encoded so that any id survives as a header value.
//! `Audit-Delegation-From` is ours: the draft has no header for who sent
//! the chain.
//!
//! The W3C `traceparent` travels beside these headers, sent and read by
//! the application's own OpenTelemetry propagator; with the layer's
//! `opentelemetry` feature the rows of every hop then share the caller's
//! trace id. `examples/delegation_chain.rs` sends both, over HTTP and gRPC.
//!
//! **An extracted chain is a claim by the caller**, and so is the sender's
//! name in `Audit-Delegation-From`. Nothing here proves either; the row
//! says who made the claim (`delegation_from`), and the layer and the
//! collector still check it against the rules of
//! [`audit_schema::delegation`] (an origin forged without a chain, a
//! widened scope, an ownerless hop are refused). A caller that lies
//! consistently (a chain that starts with another human, hops added or
//! left out) is not caught here: its own row upstream, in the same trace,
//! is what to compare with.

use audit_schema::delegation::{self, Hop};
use audit_schema::ActorKind;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::actor::Actor;

#[cfg(feature = "tower")]
mod tower;
#[cfg(feature = "tower")]
pub use self::tower::{Caller, ExtractLayer, ExtractService};

/// The chain's header (lower case, as HTTP/2 and gRPC metadata carry it).
pub const CHAIN_HEADER: &str = "audit-delegation-chain";
/// The sending service's header.
pub const FROM_HEADER: &str = "audit-delegation-from";
/// The longest chain header accepted, encoded: far above any chain the
/// rules accept (`max_delegation_hops`), far below a header block's limit.
pub const MAX_CHAIN_HEADER_BYTES: usize = 16 * 1024;
/// `delegation_from` for a chain that came without [`FROM_HEADER`].
pub const UNKNOWN_SENDER: &str = "unknown";

/// Why a chain could not be sent or read.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PropagationError {
    /// The header is longer than [`MAX_CHAIN_HEADER_BYTES`].
    #[error("`{CHAIN_HEADER}` is {0} bytes; at most {MAX_CHAIN_HEADER_BYTES} are accepted")]
    TooLong(usize),
    /// The header is not base64url.
    #[error("`{CHAIN_HEADER}` is not base64url")]
    NotBase64,
    /// The decoded header is not a chain.
    #[error("`{CHAIN_HEADER}`: {0}")]
    NotAChain(String),
    /// A chain with no hops.
    #[error("`{CHAIN_HEADER}` holds no hops")]
    Empty,
    /// A service name that cannot be a header value.
    #[error("service name {0:?} cannot be a header value")]
    BadService(String),
}

/// The header values for `actor`'s chain, sent by `service`.
fn values(
    actor: &Actor,
    service: &str,
) -> Result<[(HeaderName, HeaderValue); 2], PropagationError> {
    let chain = URL_SAFE_NO_PAD.encode(delegation::to_json(&actor.hops()));
    if chain.len() > MAX_CHAIN_HEADER_BYTES {
        return Err(PropagationError::TooLong(chain.len()));
    }
    let from = HeaderValue::from_str(service)
        .map_err(|_| PropagationError::BadService(service.to_owned()))?;
    // base64url is always a valid header value.
    let chain = HeaderValue::from_str(&chain).map_err(|_| PropagationError::NotBase64)?;
    Ok([
        (HeaderName::from_static(CHAIN_HEADER), chain),
        (HeaderName::from_static(FROM_HEADER), from),
    ])
}

/// Puts `actor`'s chain (its principals and itself) on an outgoing
/// request, with `service`, the sender's service name.
pub fn inject(
    headers: &mut HeaderMap,
    actor: &Actor,
    service: &str,
) -> Result<(), PropagationError> {
    for (name, value) in values(actor, service)? {
        headers.insert(name, value);
    }
    Ok(())
}

/// [`inject`] for a tonic request's metadata (gRPC clients, interceptors).
pub fn inject_grpc(
    metadata: &mut tonic::metadata::MetadataMap,
    actor: &Actor,
    service: &str,
) -> Result<(), PropagationError> {
    let mut headers = std::mem::take(metadata).into_headers();
    let result = inject(&mut headers, actor, service);
    *metadata = tonic::metadata::MetadataMap::from_headers(headers);
    result
}

/// The caller a request's headers name: its last hop as an [`Actor`], the
/// hops before it as its chain, and the sending service as
/// [`Actor::delegation_from`]. `Ok(None)` when no chain was sent.
pub fn extract(headers: &HeaderMap) -> Result<Option<Actor>, PropagationError> {
    let Some(raw) = headers.get(CHAIN_HEADER) else {
        return Ok(None);
    };
    if raw.len() > MAX_CHAIN_HEADER_BYTES {
        return Err(PropagationError::TooLong(raw.len()));
    }
    let json = URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .map_err(|_| PropagationError::NotBase64)?;
    let json = String::from_utf8(json).map_err(|_| PropagationError::NotBase64)?;
    let mut hops = delegation::parse(&json).map_err(PropagationError::NotAChain)?;
    let last = hops.pop().ok_or(PropagationError::Empty)?;
    let from = headers
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(UNKNOWN_SENDER);
    Ok(Some(caller(last, hops, from)))
}

fn caller(last: Hop, before: Vec<Hop>, from: &str) -> Actor {
    let actor = match last.kind {
        // An ownerless agent hop is kept as given (empty owner): the rules
        // refuse it when the row is checked, naming the hop.
        ActorKind::Agent => Actor::agent(last.id, last.owner_id.unwrap_or_default()),
        ActorKind::Human => Actor::human(last.id),
    };
    let actor = match last.credential_id {
        Some(c) => actor.credential(c),
        None => actor,
    };
    actor.with_chain(before, last.scopes, Some(from.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Actor {
        let planner = Actor::agent("agt_planner", "usr_alice")
            .credential("key_p")
            .on_behalf_of(&Actor::human("usr_alice"));
        Actor::agent("agt_worker", "usr_bob").on_behalf_of(&planner)
    }

    #[test]
    fn a_chain_survives_the_round_trip_with_its_sender() {
        let mut h = HeaderMap::new();
        inject(&mut h, &worker(), "worker-svc").unwrap();
        let got = extract(&h).unwrap().expect("sent");
        assert_eq!(got.hops(), worker().hops());
        assert_eq!(got.delegation_from(), Some("worker-svc"));
        assert_eq!(got.origin_id(), Some("usr_alice"));
    }

    #[test]
    fn grpc_metadata_carries_the_same_headers() {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("x-other", "kept".parse().unwrap());
        inject_grpc(&mut m, &worker(), "worker-svc").unwrap();
        let h = m.into_headers();
        assert_eq!(h["x-other"], "kept");
        assert_eq!(extract(&h).unwrap().unwrap().hops(), worker().hops());
    }

    #[test]
    fn no_header_is_no_caller_and_bad_headers_are_named() {
        assert_eq!(extract(&HeaderMap::new()), Ok(None));
        let mut h = HeaderMap::new();
        h.insert(CHAIN_HEADER, HeaderValue::from_static("not base64!"));
        assert_eq!(extract(&h), Err(PropagationError::NotBase64));
        let enc = |s: &str| HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(s)).unwrap();
        h.insert(CHAIN_HEADER, enc("[]"));
        assert_eq!(extract(&h), Err(PropagationError::Empty));
        h.insert(CHAIN_HEADER, enc("{\"id\":1}"));
        assert!(matches!(extract(&h), Err(PropagationError::NotAChain(_))));
        h.insert(CHAIN_HEADER, enc(&"a".repeat(MAX_CHAIN_HEADER_BYTES)));
        assert!(matches!(extract(&h), Err(PropagationError::TooLong(_))));
    }

    #[test]
    fn a_chain_without_sender_says_so() {
        let mut h = HeaderMap::new();
        inject(&mut h, &worker(), "worker-svc").unwrap();
        h.remove(FROM_HEADER);
        let got = extract(&h).unwrap().unwrap();
        assert_eq!(got.delegation_from(), Some(UNKNOWN_SENDER));
    }
}
