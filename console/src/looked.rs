//! Who looked: the access rows, newest first — who asked which question,
//! through the console or the CLI, with which parameters, and how many
//! rows it returned. Rows appear once sealed (the console's every few
//! seconds, a CLI command's as it exits); `verify --data-dir ACCESS_DIR`
//! checks them.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::html;
use serde::Deserialize;

use crate::app::{failed, with_rows, App, Viewer};
use crate::page::{find_href, layout, respond};
use crate::params;
use crate::table::{self, Cells};

type Attributes = std::collections::BTreeMap<String, String>;
use audit_collector::store::Location;
use audit_query::access::{CLI, CONSOLE};
use audit_query::{quote, Engine, QueryError};

const PATH: &str = "/access";
/// Access rows shown at most.
const LATEST: u32 = 200;

/// `?viewer=…`
#[derive(Deserialize)]
pub struct LookedParams {
    viewer: Option<String>,
}

/// The newest access rows, of one viewer or of all.
pub fn sql(viewer: Option<&str>) -> String {
    let only = viewer.map_or_else(String::new, |v| format!("\n  AND owner_id = {}", quote(v)));
    format!(
        "SELECT start_time, owner_id AS viewer, action AS question, target, outcome,\n  \
         attributes, event_id\n\
         FROM audit\nWHERE service_name IN ({}, {}){only}\n\
         ORDER BY start_time DESC, seq DESC\nLIMIT {LATEST}",
        quote(CONSOLE),
        quote(CLI)
    )
}

/// `GET /access`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<LookedParams>,
) -> Response {
    let who = match params::filter("viewer", p.viewer.as_deref()) {
        Ok(v) => v,
        Err(r) => return failed(PATH, &viewer, &QueryError::NotFound(r.0)),
    };
    let (cells, attrs) = match answer(&app, who.as_deref()).await {
        Ok(c) => c,
        Err(e) => return failed(PATH, &viewer, &e),
    };
    let cols = [
        ("start_time", "When"),
        ("viewer", "Viewer"),
        ("question", "Question"),
        ("target", "About"),
        ("outcome", "Outcome"),
    ];
    let attr = |row: usize, key: &str| {
        attrs
            .get(row)
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_else(|| "—".to_owned())
    };
    let body = html! {
        form method="get" action=(PATH) class="filters" {
            label for="viewer" { "Viewer" }
            input id="viewer" name="viewer" value=(who.clone().unwrap_or_default());
            button type="submit" { "Show" }
        }
        p class="summary" {
            "The latest " (cells.rows.len()) " question(s) asked through the console and the CLI, from "
            code { (app.access.dir().display()) } " (the console's sealed every few seconds)."
        }
        table class="rows" {
            thead { tr {
                @for (_, h) in cols { th scope="col" { (h) } }
                th scope="col" { "Parameters" } th scope="col" { "Rows" } th scope="col" { "Status" }
            } }
            tbody {
                @for (i, r) in cells.rows.iter().enumerate() {
                    tr {
                        @for (c, _) in cols {
                            @let v = cells.get(r, c).unwrap_or("—");
                            @if let Some(id) = v.strip_prefix("event_id=").filter(|id| params::event_id(id).is_ok()) {
                                td { a href=(find_href(id)) { code { (v) } } }
                            } @else {
                                td { (v) }
                            }
                        }
                        @let params = attr(i, "access.parameters");
                        @let params = if cells.get(r, "question").is_some_and(|q| q.starts_with("cli.")) {
                            params
                        } else {
                            readable(&params)
                        };
                        td { code { (params) } }
                        td { (attr(i, "access.rows")) }
                        td { (attr(i, "access.status")) }
                    }
                }
            }
        }
    };
    let n = cells.rows.len();
    with_rows(
        respond(
            StatusCode::OK,
            layout("Who looked", PATH, Some(&viewer.0), body),
        ),
        n,
    )
}

/// A query string as a person reads it: decoded, empty values left out.
fn readable(query: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    if pairs.is_empty() {
        return query.to_owned();
    }
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The rows as cells, and each row's attributes.
async fn answer(app: &App, viewer: Option<&str>) -> Result<(Cells, Vec<Attributes>), QueryError> {
    let engine = Engine::open(Location::local(app.access.dir())?).await?;
    let batches = engine.sql(&sql(viewer)).await?;
    Ok((Cells::of(&batches)?, table::maps(&batches, "attributes")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_read_decoded_without_empty_fields() {
        assert_eq!(
            readable("agent=agt%201&owner=&from=2026-12-04T11%3A13%3A11Z"),
            "agent=agt 1 from=2026-12-04T11:13:11Z"
        );
        assert_eq!(readable(""), "");
    }

    #[test]
    fn the_viewer_filter_is_quoted() {
        let q = sql(Some("x' OR '1'='1"));
        assert!(q.contains("owner_id = 'x'' OR ''1''=''1'"), "{q}");
    }
}
