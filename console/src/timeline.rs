//! Timeline: an agent's or an owner's actions over a window — a histogram
//! of human and agent actions, the list with filters and paging, and the
//! export. Every query here wraps [`activity::sql`]: with no filter, the
//! export is `activity --format csv|json`, byte for byte.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::Duration;
use maud::{html, Markup};
use serde::Deserialize;

use crate::app::{failed, with_rows, App, Viewer};
use crate::chart;
use crate::page::{self, layout, problem, respond, window_fields};
use crate::params::{self, Refusal};
use crate::table::Cells;
use audit_query::activity::{self, Range, Subject};
use audit_query::output::{self, Format};
use audit_query::{quote, ts_literal, Engine, QueryError};

const PATH: &str = "/timeline";
/// Rows per page.
pub const PAGE: u64 = 100;

/// The timeline's question, as the form and the links carry it.
#[derive(Deserialize, Default, Clone)]
pub struct TimelineParams {
    agent: Option<String>,
    owner: Option<String>,
    from: Option<String>,
    to: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    target: Option<String>,
    page: Option<u64>,
}

/// A checked question.
struct Question {
    subject: Subject,
    range: Range,
    filters: Vec<(&'static str, String)>,
}

impl TimelineParams {
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    /// `None` when no subject was asked for yet (the empty form).
    fn check(&self) -> Result<Option<Question>, Refusal> {
        let subject = match (Self::given(&self.agent), Self::given(&self.owner)) {
            (Some(_), Some(_)) => {
                return Err(Refusal("ask about an agent or an owner, not both".into()))
            }
            (Some(a), None) => {
                Subject::Agent(params::filter("agent", Some(a))?.unwrap_or_default())
            }
            (None, Some(o)) => {
                Subject::Owner(params::filter("owner", Some(o))?.unwrap_or_default())
            }
            (None, None) => return Ok(None),
        };
        let range = params::window(self.from.as_deref(), self.to.as_deref(), Duration::days(1))?;
        let mut filters = Vec::new();
        for (col, v) in [
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("target", &self.target),
        ] {
            if let Some(v) = params::filter(col, v.as_deref())? {
                filters.push((col, v));
            }
        }
        Ok(Some(Question {
            subject,
            range,
            filters,
        }))
    }

    /// The query string of this question (without the page), for links.
    fn query(&self, q: &Question) -> String {
        let mut pairs: Vec<(&str, String)> = vec![match &q.subject {
            Subject::Agent(a) => ("agent", a.clone()),
            Subject::Owner(o) => ("owner", o.clone()),
            Subject::Origin(o) => ("origin", o.clone()),
        }];
        pairs.push(("from", q.range.from.to_rfc3339()));
        pairs.push(("to", q.range.to.to_rfc3339()));
        pairs.extend(q.filters.iter().map(|(k, v)| (*k, v.clone())));
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

impl Question {
    /// [`activity::sql`], narrowed by the filters (the values quoted).
    fn sql(&self) -> String {
        let base = activity::sql(&self.subject, self.range);
        if self.filters.is_empty() {
            return base;
        }
        let conds: Vec<String> = self
            .filters
            .iter()
            .map(|(col, v)| format!("{col} = {}", quote(v)))
            .collect();
        format!(
            "SELECT * FROM ({base}) AS a\nWHERE {}\nORDER BY start_time, seq",
            conds.join(" AND ")
        )
    }

    fn count_sql(&self) -> String {
        format!("SELECT count(*) AS n FROM ({}) AS a", self.sql())
    }

    /// One page, in order: ORDER BY with LIMIT keeps only the page's rows
    /// in memory however long the window.
    fn page_sql(&self, page: u64) -> String {
        format!(
            "SELECT * FROM ({}) AS a ORDER BY start_time, seq LIMIT {PAGE} OFFSET {}",
            self.sql(),
            page.saturating_mul(PAGE)
        )
    }

    fn histogram_sql(&self) -> String {
        format!(
            "SELECT date_bin({}, start_time, {}) AS bucket, actor_kind, count(*) AS n\n\
             FROM ({}) AS a GROUP BY 1, 2 ORDER BY 1",
            chart::interval_sql(self.range.from, self.range.to),
            ts_literal(self.range.from),
            self.sql()
        )
    }

    /// The export's bytes and its row count.
    async fn export(
        &self,
        engine: &Engine,
        format: Format,
    ) -> Result<(Vec<u8>, usize), QueryError> {
        let (schema, batches) = if self.filters.is_empty() {
            activity::activity(engine, &self.subject, self.range).await?
        } else {
            engine.sql_with_schema(&self.sql()).await?
        };
        let mut out = Vec::new();
        output::write(&mut out, format, &schema, &batches)?;
        Ok((out, batches.iter().map(|b| b.num_rows()).sum()))
    }
}

fn form(p: &TimelineParams) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form method="get" action=(PATH) class="filters" {
            fieldset {
                legend { "Whose actions" }
                label for="agent" { "Agent id" }
                input id="agent" name="agent" value=(v(&p.agent)) placeholder="agt_ledger";
                label for="owner" { "or owner id" }
                input id="owner" name="owner" value=(v(&p.owner)) placeholder="usr_alice";
            }
            (window_fields("the last 24 h", &p.from, &p.to))
            fieldset {
                legend { "Only" }
                label for="action" { "Action" }
                input id="action" name="action" value=(v(&p.action));
                label for="outcome" { "Outcome" }
                input id="outcome" name="outcome" value=(v(&p.outcome));
                label for="target" { "Target" }
                input id="target" name="target" value=(v(&p.target));
            }
            button type="submit" { "Show" }
        }
    }
}

fn refuse(viewer: &Viewer, p: &TimelineParams, r: &Refusal) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        layout(
            "Timeline",
            PATH,
            Some(&viewer.0),
            html! { (form(p)) p class="problem" role="alert" { (r) } },
        ),
    )
}

/// `GET /timeline`.
pub async fn page(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<TimelineParams>,
) -> Response {
    let q = match p.check() {
        Ok(Some(q)) => q,
        Ok(None) => {
            return respond(
                StatusCode::OK,
                layout("Timeline", PATH, Some(&viewer.0), form(&p)),
            )
        }
        Err(r) => return refuse(&viewer, &p, &r),
    };
    match answer(&app, &p, &q).await {
        Ok((body, n)) => with_rows(
            respond(
                StatusCode::OK,
                layout(
                    "Timeline",
                    PATH,
                    Some(&viewer.0),
                    html! { (form(&p)) (body) },
                ),
            ),
            n,
        ),
        Err(e) => failed(PATH, &viewer, &e),
    }
}

/// The page's body and the rows it shows.
async fn answer(
    app: &App,
    p: &TimelineParams,
    q: &Question,
) -> Result<(Markup, usize), QueryError> {
    let engine = app.engine().await?;
    let page = p.page.unwrap_or(0);
    // Two scans, at once: the page, and the histogram whose buckets cover
    // the window, so their counts add up to the total.
    let (page_sql, histogram_sql) = (q.page_sql(page), q.histogram_sql());
    let (rows, hist) = tokio::join!(engine.sql(&page_sql), engine.sql(&histogram_sql));
    let (rows, hist) = (Cells::of(&rows?)?, Cells::of(&hist?)?);
    let total: u64 = hist
        .rows
        .iter()
        .filter_map(|r| hist.get(r, "n")?.parse::<u64>().ok())
        .sum();
    let bars = chart::from_cells(q.range.from, q.range.to, 2, &hist, |r| {
        usize::from(hist.get(r, "actor_kind") != Some("human"))
    });
    let link = p.query(q);
    let first = page * PAGE;
    let last = (first + rows.rows.len() as u64).min(total);
    let shown = rows.rows.len();
    let body = html! {
        (chart::svg(&format!("Actions from {} to {}", q.range.from.to_rfc3339(), q.range.to.to_rfc3339()), &bars, &["human", "agent"]))
        p class="summary" {
            (total) " action(s)"
            @if total > 0 { ", showing " (first + 1) "–" (last) }
            " · export: "
            a href=(format!("{PATH}.csv?{link}")) download="activity.csv" { "CSV" } " "
            a href=(format!("{PATH}.json?{link}")) download="activity.json" { "JSON" }
        }
        (page::actions(&rows))
        nav class="pages" aria-label="Pages" {
            @if page > 0 {
                a href=(format!("{PATH}?{link}&page={}", page - 1)) rel="prev" { "← Previous" }
            }
            @if last < total {
                a href=(format!("{PATH}?{link}&page={}", page + 1)) rel="next" { "Next →" }
            }
        }
    };
    Ok((body, shown))
}

async fn export(app: &App, viewer: &Viewer, p: &TimelineParams, format: Format) -> Response {
    let q = match p.check() {
        Ok(Some(q)) => q,
        Ok(None) => {
            return problem(
                StatusCode::BAD_REQUEST,
                PATH,
                Some(&viewer.0),
                "name an agent or an owner to export",
            )
        }
        Err(r) => return refuse(viewer, p, &r),
    };
    let engine = match app.engine().await {
        Ok(e) => e,
        Err(e) => return failed(PATH, viewer, &e),
    };
    // An export is built in memory whole: counted first, so a window of
    // years is refused before any row of it is read.
    let total = match engine
        .sql(&q.count_sql())
        .await
        .and_then(|b| Ok(Cells::of(&b)?))
    {
        Ok(c) => c.count(),
        Err(e) => return failed(PATH, viewer, &e),
    };
    if total > app.export_limit {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            PATH,
            Some(&viewer.0),
            &format!(
                "{total} actions in this window, more than this console exports at once \
                 ({}): narrow the window or the filters, page through it here, or run \
                 `audit-collector activity --format csv` where the data is.",
                app.export_limit
            ),
        );
    }
    let body = q.export(&engine, format).await;
    match body {
        Ok((body, n)) => {
            let (ty, name) = match format {
                Format::Json => ("application/json", "activity.json"),
                _ => ("text/csv; charset=utf-8", "activity.csv"),
            };
            let res = (
                [
                    (header::CONTENT_TYPE, ty.to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                body,
            )
                .into_response();
            with_rows(res, n)
        }
        Err(e) => failed(PATH, viewer, &e),
    }
}

/// `GET /timeline.csv` and `GET /timeline.json`: `activity --format csv`
/// or `json` (narrowed by the filters), the format named by the path.
pub async fn export_route(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    uri: Uri,
    Query(p): Query<TimelineParams>,
) -> Response {
    let format = if uri.path().ends_with(".json") {
        Format::Json
    } else {
        Format::Csv
    };
    export(&app, &viewer, &p, format).await
}
