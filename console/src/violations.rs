//! Violations: unattributed attempts (a span that named an agent without
//! an accountable human, a privileged span without an actor), grouped by
//! service and callsite, over a window, with their histogram.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use chrono::Duration;
use maud::{html, Markup};
use serde::Deserialize;

use crate::app::{failed, with_rows, App, Viewer};
use crate::chart;
use crate::page::{layout, respond, window_fields};
use crate::params;
use crate::table::Cells;
use audit_query::activity::Range;
use audit_query::{partition_range, ts_literal, QueryError};

const PATH: &str = "/violations";
/// Callsites listed at most.
const GROUPS: u32 = 200;

/// `?from=…&to=…`
#[derive(Deserialize)]
pub struct Window {
    from: Option<String>,
    to: Option<String>,
}

fn filter(r: Range) -> String {
    format!(
        "time >= {} AND time < {} AND {}",
        ts_literal(r.from),
        ts_literal(r.to),
        partition_range(r.from, r.to)
    )
}

/// Violations per service and callsite in the window, most frequent first.
pub fn groups_sql(r: Range) -> String {
    format!(
        "SELECT service_name, span_target, span_name, code_file, code_line, reason,\n  \
         count(*) AS n, min(time) AS first_seen, max(time) AS last_seen\n\
         FROM violations\nWHERE {}\n\
         GROUP BY service_name, span_target, span_name, code_file, code_line, reason\n\
         ORDER BY n DESC, last_seen DESC\nLIMIT {GROUPS}",
        filter(r)
    )
}

fn histogram_sql(r: Range) -> String {
    format!(
        "SELECT date_bin({}, time, {}) AS bucket, count(*) AS n\n\
         FROM violations WHERE {} GROUP BY 1 ORDER BY 1",
        chart::interval_sql(r.from, r.to),
        ts_literal(r.from),
        filter(r)
    )
}

fn form(w: &Window) -> Markup {
    html! {
        form method="get" action=(PATH) class="filters" {
            (window_fields("the last 7 days", &w.from, &w.to))
            button type="submit" { "Show" }
        }
    }
}

/// `GET /violations`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(w): Query<Window>,
) -> Response {
    let range = match params::window(w.from.as_deref(), w.to.as_deref(), Duration::days(7)) {
        Ok(r) => r,
        Err(r) => {
            return respond(
                StatusCode::BAD_REQUEST,
                layout(
                    "Violations",
                    PATH,
                    Some(&viewer.0),
                    html! { (form(&w)) p class="problem" role="alert" { (r) } },
                ),
            )
        }
    };
    match answer(&app, range).await {
        Ok((body, n)) => with_rows(
            respond(
                StatusCode::OK,
                layout(
                    "Violations",
                    PATH,
                    Some(&viewer.0),
                    html! { (form(&w)) (body) },
                ),
            ),
            n,
        ),
        Err(e) => failed(PATH, &viewer, &e),
    }
}

/// The page's body and the callsites it lists.
async fn answer(app: &App, range: Range) -> Result<(Markup, usize), QueryError> {
    let engine = app.engine().await?;
    let groups = Cells::of(&engine.sql(&groups_sql(range)).await?)?;
    let hist = Cells::of(&engine.sql(&histogram_sql(range)).await?)?;
    let bars = chart::from_cells(range.from, range.to, 1, &hist, |_| 0);
    let total: u64 = bars.iter().map(|b| b.counts[0]).sum();
    let label = format!(
        "Violations from {} to {}",
        range.from.to_rfc3339(),
        range.to.to_rfc3339()
    );
    let cols = [
        ("service_name", "Service"),
        ("span_target", "Target"),
        ("span_name", "Span"),
        ("code_file", "File"),
        ("code_line", "Line"),
        ("reason", "Reason"),
        ("n", "Count"),
        ("first_seen", "First"),
        ("last_seen", "Last"),
    ];
    let listed = groups.rows.len();
    let body = html! {
        (chart::svg(&label, &bars, &["violation"]))
        p class="summary" { (total) " violation(s) at " (groups.rows.len()) " callsite(s)" }
        table class="rows" {
            thead { tr { @for (_, h) in cols { th scope="col" { (h) } } } }
            tbody {
                @for r in &groups.rows {
                    tr { @for (c, _) in cols { td { (groups.get(r, c).unwrap_or("—")) } } }
                }
            }
        }
    };
    Ok((body, listed))
}
