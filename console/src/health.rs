//! Trail health: `verify`'s result over the whole dataset (every file's
//! hash, every chain, seq continuity), and each collector's chain: its
//! length, its last seal and its last digest (the heartbeat that proves a
//! collector was alive when nothing was sealed); and the side doors of the
//! last 7 days: ungated effects per service.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use chrono::DateTime;
use maud::{html, Markup};

use crate::app::{with_rows, App, Viewer};
use crate::page::{layout, problem, respond};
use audit_collector::checkpoint::NoteVerifier;
use audit_collector::manifest::{self, Body, Entry};
use audit_collector::store::{chain, Location};
use audit_collector::verify::{self, Report};

const PATH: &str = "/health";

/// Every collector's entries, wherever the dataset is.
async fn chains(loc: &Location) -> Result<BTreeMap<String, Vec<Entry>>, String> {
    if let Some(dir) = loc.local_dir() {
        return manifest::read_all(dir).map_err(|e| e.to_string());
    }
    let stored = chain::read_all(loc).await.map_err(|e| e.to_string())?;
    Ok(stored
        .into_iter()
        .map(|(id, s)| (id, s.into_iter().filter_map(|s| s.entry.ok()).collect()))
        .collect())
}

/// `verify` over the dataset, off the async threads (it reads every file).
async fn report(loc: Location, operator_keys: Vec<String>) -> Result<Report, String> {
    let opts = verify::Options {
        operator_keys: NoteVerifier::parse_all(&operator_keys)
            .map_err(|e| format!("[retention] operator_keys: {e}"))?,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: the store's verify runs its own runtime.
    std::thread::spawn(move || {
        let r = match loc.local_dir() {
            Some(dir) => verify::verify(dir, &opts).map_err(|e| e.to_string()),
            None => verify::verify_store(&loc, &opts).map_err(|e| e.to_string()),
        };
        let _ = tx.send(r);
    });
    rx.await.map_err(|_| "verify stopped".to_owned())?
}

fn when(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339()
}

/// Ungated effects per service over the last 7 days.
async fn ungated(app: &App) -> Result<Vec<(String, i64)>, String> {
    let to = chrono::Utc::now();
    let engine = app.engine().await.map_err(|e| e.to_string())?;
    audit_query::ungated::by_service(&engine, to - chrono::Duration::days(7), to)
        .await
        .map_err(|e| e.to_string())
}

/// `GET /health`.
pub async fn page(State(app): State<Arc<App>>, Extension(viewer): Extension<Viewer>) -> Response {
    let (report, chains, ungated) = tokio::join!(
        report(app.location.clone(), app.operator_keys.clone()),
        chains(&app.location),
        ungated(&app)
    );
    let (report, chains, ungated) = match (report, chains, ungated) {
        (Ok(r), Ok(c), Ok(u)) => (r, c, u),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                PATH,
                Some(&viewer.0),
                &format!("cannot read the trail: {e}"),
            )
        }
    };
    let collectors = chains.len();
    let page = layout(
        "Trail health",
        PATH,
        Some(&viewer.0),
        body(&app.location, &report, &chains, &ungated),
    );
    with_rows(respond(StatusCode::OK, page), collectors)
}

fn body(
    loc: &Location,
    r: &Report,
    chains: &BTreeMap<String, Vec<Entry>>,
    ungated: &[(String, i64)],
) -> Markup {
    let (verdict, class) = if r.intact() {
        ("INTACT", "human")
    } else {
        ("NOT INTACT", "inconsistent")
    };
    html! {
        p { "Dataset " code { (loc.url) } }
        p id="verdict" class=(format!("verdict small {class}")) { (verdict) }
        p class="summary" {
            (r.manifests) " manifest(s), " (r.entries) " entries, " (r.files) " files, "
            (r.rows) " rows, " (r.deleted) " deleted by retention"
        }
        @if !r.findings.is_empty() {
            table class="rows" {
                caption { "Findings" }
                thead { tr { th scope="col" { "Kind" } th scope="col" { "Where" } th scope="col" { "Detail" } } }
                tbody {
                    @for f in &r.findings {
                        tr { td class="fail" { (f.kind) } td { code { (f.path) } } td { (f.detail) } }
                    }
                }
            }
        }
        table class="rows" {
            caption { "Collectors" }
            thead { tr {
                th scope="col" { "Collector" } th scope="col" { "Entries" } th scope="col" { "Head" }
                th scope="col" { "Last seal" } th scope="col" { "Sealed up to seq" } th scope="col" { "Last digest" }
            } }
            tbody {
                @for (id, entries) in chains {
                    @let seal = entries.iter().rev().find_map(|e| match &e.body {
                        Body::Seal { seq_last, .. } => Some((e.time_ns, *seq_last)),
                        _ => None,
                    });
                    @let digest = entries.iter().rev().find(|e| matches!(e.body, Body::Digest { .. }));
                    tr {
                        td { code { (id) } }
                        td { (entries.len()) }
                        td { code class="hash" { (entries.last().map_or("—", |e| e.hash.as_str())) } }
                        td { (seal.map_or_else(|| "never".to_owned(), |(t, _)| when(t))) }
                        td { (seal.map_or_else(|| "—".to_owned(), |(_, s)| s.to_string())) }
                        td { (digest.map_or_else(|| "never".to_owned(), |e| when(e.time_ns))) }
                    }
                }
            }
        }
        table class="rows" id="ungated" {
            caption { "Side doors: ungated effects in the last 7 days" }
            thead { tr { th scope="col" { "Service" } th scope="col" { "Ungated effects" } } }
            tbody {
                @for (service, n) in ungated {
                    tr { td { (service) } td class="fail" { (n) } }
                }
                @if ungated.is_empty() {
                    tr { td colspan="2" { "none" } }
                }
            }
        }
        p class="hint" {
            "Signed checkpoints are kept away from the trail; check them with "
            code { "audit-collector verify --checkpoint FILE --public-key KEY" } "."
        }
    }
}
