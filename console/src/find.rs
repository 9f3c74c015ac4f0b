//! Find an action: an event id → the row as an auditor reads it (HUMAN or
//! AI in large type, the agent and its credential, the accountable human,
//! initiator, the delegation chain, consent and whether the collector
//! verified it, scopes, outcome,
//! times) and the proof panel (the sealed file, its SHA-256, its seal entry
//! in the hash chain, the chain checked entry by entry, the latest signed
//! checkpoint and whether it covers the row, and that file's check, as
//! `prove-human` runs it). "Prove human" on a human row runs `prove-human`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use crate::app::{failed, with_rows, App, Viewer};
use crate::checkpoints::{self, Signed, Witness};
use crate::page::{self, layout, problem, respond, window_fields};
use crate::params;
use crate::table::Cells;
use audit_collector::manifest::Entry;
use audit_collector::store::chain;
use audit_query::{activity, prove, who};

const PATH: &str = "/find";

/// `?event_id=…`, or `?target=…&action=…&from=…&to=…` to search.
#[derive(Deserialize, Default)]
pub struct FindParams {
    event_id: Option<String>,
    target: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Actions a search lists at most.
const SEARCH_LIMIT: u32 = 100;

fn form(value: &str, p: &FindParams) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form method="get" action=(PATH) class="search" role="search" {
            label for="event_id" { "Event id" }
            input id="event_id" name="event_id" type="search" value=(value)
                placeholder="019a0000-0000-7000-8000-000000000001" size="40"
                spellcheck="false" autocomplete="off";
            button type="submit" { "Find" }
        }
        p class="hint" {
            "An event id is in every row of the "
            a href="/timeline" { "timeline" } " and in the application's own log (every privileged span records its event id)."
        }
        form method="get" action=(PATH) class="filters" {
            fieldset {
                legend { "Or search: who touched a target, or did an action" }
                label for="target" { "Target" }
                input id="target" name="target" value=(v(&p.target)) placeholder="acct_9";
                label for="action" { "Action" }
                input id="action" name="action" value=(v(&p.action)) placeholder="payments.transfer";
            }
            (window_fields("the last 24 h", &p.from, &p.to))
            button type="submit" { "Search" }
        }
    }
}

fn page(
    status: StatusCode,
    viewer: &Viewer,
    value: &str,
    p: &FindParams,
    body: Markup,
) -> Response {
    respond(
        status,
        layout(
            "Find an action",
            PATH,
            Some(&viewer.0),
            html! { (form(value, p)) (body) },
        ),
    )
}

/// The search: actions on a target and/or of an action in a window.
async fn search(app: &App, viewer: &Viewer, p: &FindParams) -> Response {
    let checked = (|| {
        let target = params::filter("target", p.target.as_deref())?;
        let action = params::filter("action", p.action.as_deref())?;
        let range = params::window(
            p.from.as_deref(),
            p.to.as_deref(),
            chrono::Duration::days(1),
        )?;
        Ok::<_, params::Refusal>((target, action, range))
    })();
    let (target, action, range) = match checked {
        Ok(c) => c,
        Err(r) => {
            return page(
                StatusCode::BAD_REQUEST,
                viewer,
                "",
                p,
                html! { p class="problem" role="alert" { (r) } },
            )
        }
    };
    let sql = activity::search_sql(target.as_deref(), action.as_deref(), range, SEARCH_LIMIT);
    let rows = match app.engine().await {
        Ok(engine) => engine.sql(&sql).await,
        Err(e) => Err(e),
    };
    let cells = match rows.and_then(|b| Ok(Cells::of(&b)?)) {
        Ok(c) => c,
        Err(e) => return failed(PATH, viewer, &e),
    };
    let n = cells.rows.len();
    let body = html! {
        p class="summary" {
            (n) " action(s) from " (range.from.to_rfc3339()) " to " (range.to.to_rfc3339())
            @if n as u32 == SEARCH_LIMIT { " (the first " (SEARCH_LIMIT) "; narrow the window for the rest)" }
        }
        (page::actions(&cells))
    };
    with_rows(page(StatusCode::OK, viewer, "", p, body), n)
}

/// `GET /find`.
pub async fn find(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<FindParams>,
) -> Response {
    let raw = p.event_id.clone().unwrap_or_default();
    if raw.trim().is_empty() {
        let asked = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.trim().is_empty());
        if asked(&p.target) || asked(&p.action) {
            return search(&app, &viewer, &p).await;
        }
        return page(StatusCode::OK, &viewer, "", &p, html! {});
    }
    let id = match params::event_id(&raw) {
        Ok(id) => id,
        Err(r) => {
            return page(
                StatusCode::BAD_REQUEST,
                &viewer,
                &raw,
                &p,
                html! { p class="problem" role="alert" { (r) } },
            )
        }
    };
    let engine = match app.engine().await {
        Ok(e) => e,
        Err(e) => return failed(PATH, &viewer, &e),
    };
    let answer = match who::who(&engine, &id).await {
        Ok(a) => a,
        Err(audit_query::QueryError::NotFound(_)) => {
            return page(
                StatusCode::NOT_FOUND,
                &viewer,
                &id,
                &p,
                html! { p class="problem" role="alert" { "No audit row has event id " code { (id) } "." } },
            )
        }
        Err(e) => return failed(PATH, &viewer, &e),
    };
    let cells = match Cells::of(&answer.batches) {
        Ok(c) => c,
        Err(e) => return failed(PATH, &viewer, &audit_query::QueryError::from(e)),
    };
    let mut body = Vec::new();
    if answer.rows.len() > 1 {
        body.push(html! {
            p class="problem" role="alert" { (answer.rows.len()) " rows carry this event id: the collector keeps one, so this is itself a finding." }
        });
    }
    for (facts, row) in answer.rows.iter().zip(&cells.rows) {
        let check = prove::file_check(engine.location(), &id, facts).await;
        let entries = chain::entries(engine.location(), &facts.collector_id).await;
        let signed = match (&app.witness, &entries) {
            (Some(w), Ok(e)) => w.latest(&facts.collector_id, e).await,
            _ => None,
        };
        let proof = Proof {
            check: &check,
            entries: &entries,
            witness: app.witness.as_ref(),
            signed: signed.as_ref(),
        };
        body.push(action(&id, facts, &cells, row, &proof));
    }
    let n = answer.rows.len();
    with_rows(
        page(
            StatusCode::OK,
            &viewer,
            &id,
            &p,
            html! { @for b in body { (b) } },
        ),
        n,
    )
}

/// What the proof panel shows beside the row's own facts.
struct Proof<'a> {
    check: &'a prove::Check,
    entries: &'a std::io::Result<Vec<Entry>>,
    witness: Option<&'a Witness>,
    signed: Option<&'a Signed>,
}

fn action(
    id: &str,
    facts: &who::RowFacts,
    cells: &Cells,
    row: &[Option<String>],
    proof: &Proof<'_>,
) -> Markup {
    let c = |name: &str| cells.get(row, name).unwrap_or("—").to_owned();
    let human = facts.actor_kind == "human" && facts.agent_id.is_none();
    let (verdict, class) = match facts.actor_kind.as_str() {
        _ if human => ("HUMAN", "human"),
        "agent" => ("AI", "agent"),
        _ => ("INCONSISTENT", "inconsistent"),
    };
    let fields: [(&str, String); 16] = [
        (
            "Agent",
            match (&facts.agent_id, &facts.agent_name) {
                (Some(a), Some(n)) => format!("{a} ({n})"),
                (Some(a), None) => a.clone(),
                _ => "— (no agent)".into(),
            },
        ),
        ("Credential", c("agent_credential_id")),
        ("Accountable human", c("owner_id")),
        ("Initiator", c("initiator_id")),
        (
            "Delegation chain",
            who::chain_line(facts).unwrap_or_else(|| "— (single hop)".into()),
        ),
        ("Task", c("task_id")),
        ("Consent", c("consent_id")),
        ("Scopes", c("scopes")),
        ("Action", c("action")),
        ("Target", c("target")),
        ("Outcome", c("outcome")),
        (
            "Service",
            format!("{} ({})", c("service_name"), c("service_instance_id")),
        ),
        ("Started", c("start_time")),
        ("Ended", c("end_time")),
        ("Received", c("received_time")),
        (
            "Trace",
            format!("{} / span {}", c("trace_id"), c("span_id")),
        ),
    ];
    html! {
        article class="action" aria-labelledby="verdict" {
            p id="verdict" class=(format!("verdict {class}")) { (verdict) }
            p class="headline" { (who::headline(facts)) }
            dl class="facts" {
                dt { "Event id" } dd { code { (id) } }
                @for (k, v) in &fields {
                    dt { (k) } dd { (v) }
                    @if *k == "Consent" && facts.consent_id.is_some() {
                        dt { "Consent verified" }
                        @if facts.consent_verified {
                            dd class="pass" {
                                strong { "VERIFIED" } " by key "
                                code { (facts.consent_key_id.as_deref().unwrap_or("?")) }
                                ", approved by "
                                (facts.consent_approver.as_deref().unwrap_or("?"))
                                ": the collector checked the signed consent token against this row"
                            }
                        } @else {
                            dd class="fail" {
                                strong { "NOT VERIFIED" } ": the application stated this consent; "
                                "the collector had no consent keys to check it with"
                            }
                        }
                    }
                }
            }
            @if human {
                form method="get" action="/prove" class="inline" {
                    input type="hidden" name="event_id" value=(id);
                    button type="submit" { "Prove human" }
                }
            }
            (proof_panel(facts, proof))
        }
    }
}

fn proof_panel(facts: &who::RowFacts, proof: &Proof<'_>) -> Markup {
    let check = proof.check;
    html! {
        section class="proof" aria-labelledby="proof-title" {
            h2 id="proof-title" { "Proof" }
            dl class="facts" {
                dt { "Collector" } dd { code { (facts.collector_id) } " · seq " (facts.seq) }
                @if let Some(loc) = &facts.file {
                    dt { "File" } dd { code { (loc.file.path) } }
                    dt { "SHA-256 (sealed)" } dd { code class="hash" { (loc.file.sha256) } }
                    dt { "Hash chain" } dd { "seal entry " (loc.entry) " of the collector's manifest, seq "
                        (loc.file.seq_min) "–" (loc.file.seq_max) }
                } @else {
                    dt { "File" } dd { "not listed by any seal entry" }
                }
                dt { "Chain" }
                @match proof.entries {
                    Ok(e) => @match prove::chain_break(e) {
                        None => dd class="pass" { strong { "INTACT" } " all " (e.len()) " entries of collector " code { (facts.collector_id) } " link and hash, checked now" },
                        Some(i) => dd class="fail" { strong { "BROKEN" } " at entry " (i) " of " (e.len()) },
                    },
                    Err(e) => dd class="fail" { strong { "UNREADABLE" } " " (e) },
                }
                dt { "Signed checkpoint" }
                (checkpoints::covering(proof.witness, proof.signed, facts.file.as_ref().map(|l| l.entry)))
                dt { "Verified" }
                dd class=(if check.pass { "pass" } else { "fail" }) {
                    strong { (if check.pass { "PASS" } else { "FAIL" }) } " " (check.detail)
                }
            }
        }
    }
}

/// `GET /prove?event_id=…`: the three checks of `prove-human`.
pub async fn prove(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<FindParams>,
) -> Response {
    let id = match params::event_id(p.event_id.as_deref().unwrap_or("")) {
        Ok(id) => id,
        Err(r) => return problem(StatusCode::BAD_REQUEST, PATH, Some(&viewer.0), &r.0),
    };
    let engine = match app.engine().await {
        Ok(e) => e,
        Err(e) => return failed(PATH, &viewer, &e),
    };
    let window = chrono::Duration::seconds(300);
    let proof = match prove::prove_human(&engine, &id, window).await {
        Ok(p) => p,
        Err(e) => return failed(PATH, &viewer, &e),
    };
    let (verdict, class) = if proof.human {
        ("PROVEN: a human acted, no agent was involved", "human")
    } else {
        ("NOT PROVEN: see the failing check(s)", "inconsistent")
    };
    let body = html! {
        p { "Event " a href=(format!("{PATH}?event_id={id}")) { code { (id) } } }
        p id="verdict" class=(format!("verdict small {class}")) { (verdict) }
        table {
            caption { "Checks (a violation in the same service within 300 s fails the proof)" }
            thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "Detail" } } }
            tbody {
                @for c in &proof.checks {
                    tr {
                        td { (c.check) }
                        td class=(if c.pass { "pass" } else { "fail" }) { (if c.pass { "PASS" } else { "FAIL" }) }
                        td { (c.detail) }
                    }
                }
            }
        }
    };
    with_rows(
        respond(
            StatusCode::OK,
            layout("Prove human", PATH, Some(&viewer.0), body),
        ),
        1,
    )
}
