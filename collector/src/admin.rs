//! The operator's endpoints: `/healthz` (liveness), `/readyz` (readiness,
//! see [`crate::health`]) and `/metrics` (Prometheus text). Served on the
//! OTLP/HTTP port by default, or on their own listener (`admin_listen`) so
//! that they need not be reachable by the clients that send records.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::health::Health;

/// The admin routes.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Alive as long as it answers: draining and recovering are not reasons to
/// be restarted.
async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(h): State<Arc<Health>>) -> Response {
    match h.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.metrics().render(),
    )
        .into_response()
}
