//! The routes, the sign-in, and the checks every request goes through:
//! a viewer, or 401; the security headers on every response.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use maud::html;
use serde::Deserialize;

use crate::access::{asked, Rows};
use crate::auth::{sign_in_cookie, Auth};
use crate::page::{self, layout, problem, respond};
use crate::{find, health, looked, timeline, violations};
use audit_collector::store::Location;
use audit_query::access::AccessLog;
use audit_query::{Engine, QueryError};

/// What every handler shares.
pub struct App {
    /// The dataset.
    pub location: Location,
    /// How viewers are identified.
    pub auth: Auth,
    /// Where each question is recorded.
    pub access: Arc<AccessLog>,
    /// The collectors' witness, where their signed checkpoints are.
    pub witness: Option<crate::checkpoints::Witness>,
    /// Most rows one export may hold (it is built in memory).
    pub export_limit: u64,
    /// `verify`, run in the background for the trail-health view.
    pub verifier: Arc<crate::verified::Verifier>,
}

/// The viewer of a request, set by [`require_viewer`].
#[derive(Clone, Debug)]
pub struct Viewer(pub String);

impl App {
    /// The engine over the dataset as it is now: opened per request, so a
    /// seal made since the last page is in the next one.
    pub async fn engine(&self) -> Result<Engine, QueryError> {
        Engine::open(self.location.clone()).await
    }
}

/// The console's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    let viewed = Router::new()
        .route("/", get(|| async { Redirect::to("/find") }))
        .route("/find", get(find::find))
        .route("/prove", get(find::prove))
        .route("/timeline", get(timeline::page))
        .route("/timeline.csv", get(timeline::export_route))
        .route("/timeline.json", get(timeline::export_route))
        .route("/violations", get(violations::page))
        .route("/health", get(health::page))
        .route("/access", get(looked::page))
        // Outermost last: the viewer is checked, then the question recorded.
        .route_layer(middleware::from_fn_with_state(app.clone(), record_access))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_viewer));
    Router::new()
        .merge(viewed)
        .route("/login", get(login_get).post(login_post))
        .route(page::CSS_PATH, get(|| async { page::stylesheet() }))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "", None, "There is no such page.") })
        .layer(middleware::map_response(page::harden))
        .with_state(app)
}

async fn require_viewer(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match app.auth.viewer(req.headers(), peer) {
        Some(v) => {
            req.extensions_mut().insert(Viewer(v));
            next.run(req).await
        }
        None => unauthorized("Sign in with your console token to see the trail."),
    }
}

/// Records the question in the access dataset once answered, and sends
/// the answer only when that row is durable.
async fn record_access(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let at = chrono::Utc::now();
    let viewer = req.extensions().get::<Viewer>().cloned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let res = next.run(req).await;
    let Some(viewer) = viewer else {
        return res;
    };
    let q = asked(
        &viewer.0,
        &path,
        &query,
        at,
        res.status().as_u16(),
        res.extensions().get::<Rows>().map(|r| r.0),
    );
    match app.access.record(&q).await {
        Ok(()) => res,
        Err(e) => {
            tracing::error!(error = %e, "access row not recorded; answer withheld");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                &path,
                Some(&viewer.0),
                "This question could not be recorded in the access trail, so it is not answered. Try again shortly.",
            )
        }
    }
}

/// `res`, marked with the rows it returns (for its access row).
pub fn with_rows(mut res: Response, rows: usize) -> Response {
    res.extensions_mut().insert(Rows(rows as u64));
    res
}

fn unauthorized(message: &str) -> Response {
    let mut res = respond(
        StatusCode::UNAUTHORIZED,
        layout("Sign in", "", None, sign_in_form(message)),
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"audit-console\""),
    );
    res
}

fn sign_in_form(message: &str) -> maud::Markup {
    html! {
        p role="alert" { (message) }
        form method="post" action="/login" class="search" {
            label for="token" { "Console token" }
            input id="token" name="token" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    }
}

#[derive(Deserialize)]
pub struct TokenParam {
    token: Option<String>,
}

async fn login_get(State(app): State<Arc<App>>, Query(p): Query<TokenParam>) -> Response {
    match p.token {
        Some(t) => sign_in(&app, &t),
        None => respond(
            StatusCode::OK,
            layout(
                "Sign in",
                "",
                None,
                sign_in_form("Paste your console token."),
            ),
        ),
    }
}

async fn login_post(State(app): State<Arc<App>>, Form(p): Form<TokenParam>) -> Response {
    sign_in(&app, p.token.as_deref().unwrap_or(""))
}

/// A good token sets the cookie and leaves the sign-in URL (and the token
/// in it) for the find view.
fn sign_in(app: &App, token: &str) -> Response {
    match (app.auth.check_token(token), sign_in_cookie(token)) {
        (Some(_), Some(cookie)) => {
            let mut res = Redirect::to("/find").into_response();
            res.headers_mut().insert(header::SET_COOKIE, cookie);
            res
        }
        _ => unauthorized("That token is not on this console's list."),
    }
}

/// A failed question, as a page: unknown ids are 404, the rest 500.
pub fn failed(active: &str, viewer: &Viewer, e: &QueryError) -> Response {
    let status = match e {
        QueryError::NotFound(_) => StatusCode::NOT_FOUND,
        QueryError::BadTime { .. } | QueryError::BadRange { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, view = active, "console question failed");
    }
    problem(status, active, Some(&viewer.0), &e.to_string())
}
