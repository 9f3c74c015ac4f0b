//! The layout every view shares, the stylesheet, and the headers every
//! response carries. Everything is in the binary: no font, script or
//! stylesheet comes from anywhere else, and the policy says so.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::table::Cells;

/// Scripts forbidden outright (the console has none), styles and images
/// only from the console itself, forms only to it, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet, served at [`CSS_PATH`].
pub const CSS: &str = include_str!("../assets/console.css");
/// Where the stylesheet is served.
pub const CSS_PATH: &str = "/console.css";

/// The navigation: path and label.
const NAV: [(&str, &str); 5] = [
    ("/find", "Find an action"),
    ("/timeline", "Timeline"),
    ("/violations", "Violations"),
    ("/health", "Trail health"),
    ("/access", "Who looked"),
];

/// A whole page: `active` is the path of the view, marked in the navigation.
pub fn layout(title: &str, active: &str, viewer: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · audit console" }
                link rel="stylesheet" href=(CSS_PATH);
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    span class="brand" { "Audit console" }
                    nav aria-label="Views" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if path == active {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(v) = viewer {
                        span class="viewer" { "Signed in as " strong { (v) } }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer { "Read-only view of the audit trail. Answers are those of "
                    code { "who" } ", " code { "activity" } " and " code { "prove-human" } "." }
            }
        }
    }
}

/// The find view's link for an event id.
pub fn find_href(event_id: &str) -> String {
    let q = serde_urlencoded::to_string([("event_id", event_id)]).unwrap_or_default();
    format!("/find?{q}")
}

/// The columns a list of actions shows, each row linking to its find view.
const ACTION_COLUMNS: [&str; 9] = [
    "start_time",
    "actor_kind",
    "agent_id",
    "agent_credential_id",
    "owner_id",
    "action",
    "target",
    "outcome",
    "event_id",
];

/// A list of actions (rows with `activity`'s columns) as a table.
pub fn actions(rows: &Cells) -> Markup {
    html! {
        table class="rows" {
            thead { tr { @for c in ACTION_COLUMNS { th scope="col" { (c) } } } }
            tbody {
                @for r in &rows.rows {
                    tr {
                        @for c in ACTION_COLUMNS {
                            @let v = rows.get(r, c).unwrap_or("—");
                            @if c == "event_id" {
                                td { a href=(find_href(v)) { code { (v) } } }
                            } @else if c == "actor_kind" {
                                td class=(v) { (v) }
                            } @else {
                                td { (v) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `from` / `to` fields of a window, with what is assumed when they
/// are left empty.
pub fn window_fields(default: &str, from: &Option<String>, to: &Option<String>) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        fieldset {
            legend { "When (UTC; a date is the whole day; default " (default) ")" }
            label for="from" { "From" }
            input id="from" name="from" value=(v(from)) placeholder="2026-12-04";
            label for="to" { "To" }
            input id="to" name="to" value=(v(to)) placeholder="2026-12-04T18:00:00Z";
        }
    }
}

/// A page with a status.
pub fn respond(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// A refusal or a failure, stated in the page.
pub fn problem(status: StatusCode, active: &str, viewer: Option<&str>, message: &str) -> Response {
    let title = if status.is_server_error() {
        "Something failed"
    } else {
        "Cannot answer that"
    };
    respond(
        status,
        layout(
            title,
            active,
            viewer,
            html! { p class="problem" role="alert" { (message) } },
        ),
    )
}

/// Adds the headers every response carries.
pub async fn harden(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Answers are about people: no cache keeps them.
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in set {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// The stylesheet response.
pub fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = layout(
            "<script>alert(1)</script>",
            "/find",
            Some("\"><img src=x>"),
            html! { p { ("<b>") } },
        )
        .into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img src=x>"), "{page}");
        assert!(page.contains("&lt;b&gt;"), "{page}");
    }
}
