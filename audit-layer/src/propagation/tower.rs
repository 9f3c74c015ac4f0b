//! [`ExtractLayer`]: the caller's chain, extracted once per request for
//! axum handlers and tonic services (both run tower services over
//! `http::Request`).

use std::task::{Context, Poll};

use super::{extract, PropagationError};
use crate::actor::Actor;

/// What [`ExtractLayer`] put in a request's extensions: the calling actor
/// with its chain (`Ok(None)` when the request carried none), or why the
/// header could not be read. Handlers decide what an unreadable chain
/// means for them; the layer never refuses a request itself.
///
/// In axum: `Extension(caller): Extension<Caller>`; in tonic:
/// `request.extensions().get::<Caller>()`.
#[derive(Clone, Debug)]
pub struct Caller(pub Result<Option<Actor>, PropagationError>);

impl Caller {
    /// `actor` acting for the caller when a chain came; `actor` alone
    /// otherwise. An unreadable chain is returned as the error.
    pub fn delegate(&self, actor: Actor) -> Result<Actor, PropagationError> {
        match &self.0 {
            Ok(Some(caller)) => Ok(actor.on_behalf_of(caller)),
            Ok(None) => Ok(actor),
            Err(e) => Err(e.clone()),
        }
    }
}

/// A tower layer that extracts the delegation chain of every request.
///
/// ```
/// # async fn f() {
/// use audit_layer::propagation::ExtractLayer;
/// let app: axum::Router = axum::Router::new().layer(ExtractLayer);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ExtractLayer;

impl<S> tower_layer::Layer<S> for ExtractLayer {
    type Service = ExtractService<S>;

    fn layer(&self, inner: S) -> ExtractService<S> {
        ExtractService { inner }
    }
}

/// The service [`ExtractLayer`] wraps around yours.
#[derive(Clone, Debug)]
pub struct ExtractService<S> {
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for ExtractService<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        let caller = Caller(extract(req.headers()));
        req.extensions_mut().insert(caller);
        self.inner.call(req)
    }
}
