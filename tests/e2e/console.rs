//! `audit-collector console` over HTTP: the real binary's console on an
//! ephemeral loopback port, over the dataset the real collector wrote for
//! the answerability tests, with answers known in advance.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::answer_dataset::*;
use crate::answerability::dataset;
use crate::common::{collector_bin, stdout_lines};

const TOKEN: &str = "console-test-token-aaaa";
const OTHER_DEPLOYMENT_TOKEN: &str = "another-deployments-token";

/// A console process, killed when dropped.
pub(crate) struct Console {
    child: Child,
    base: String,
    /// Its tokens file and its access dataset (`access/`).
    dir: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Console {
    fn start(extra: &[&str]) -> Console {
        Console::start_over(&dataset().path, extra)
    }

    /// A console over the dataset in `data`.
    pub(crate) fn start_over(data: &Path, extra: &[&str]) -> Console {
        let tokens = tempfile::tempdir().expect("tempdir");
        let file = tokens.path().join("viewers");
        std::fs::write(&file, format!("# viewers\nauditor-ann:{TOKEN}\n")).expect("tokens");
        let file = file.to_str().expect("utf-8 path").to_owned();
        let mut args = vec!["--tokens-file", file.as_str()];
        args.extend_from_slice(extra);
        Console::spawn_over(data, &args, tokens, false).0
    }

    /// A console with the tokens file and access dataset of `dir` (from a
    /// stopped console).
    fn spawn_in(dir: tempfile::TempDir, extra: &[&str]) -> Console {
        let file = dir.path().join("viewers");
        let file = file.to_str().expect("utf-8 path").to_owned();
        let mut args = vec!["--tokens-file", file.as_str()];
        args.extend_from_slice(extra);
        Console::spawn(&args, dir, false).0
    }

    /// The console with `args`, and the second line it printed when asked
    /// for (the sign-in link of a console without a tokens file).
    fn spawn(
        args: &[&str],
        tokens: tempfile::TempDir,
        second_line: bool,
    ) -> (Console, Option<String>) {
        Console::spawn_over(&dataset().path, args, tokens, second_line)
    }

    fn spawn_over(
        data: &Path,
        args: &[&str],
        tokens: tempfile::TempDir,
        second_line: bool,
    ) -> (Console, Option<String>) {
        let mut child = Command::new(collector_bin())
            .arg("console")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--access-dir"])
            .arg(tokens.path().join("access"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn console");
        let lines = stdout_lines(&mut child);
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the console printed its listening line");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        let second = second_line.then(|| {
            lines
                .recv_timeout(Duration::from_secs(60))
                .expect("a second line")
        });
        let console = Console {
            child,
            base,
            dir: tokens,
        };
        (console, second)
    }
}

pub(crate) struct Got {
    pub(crate) status: u16,
    headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut req = client.get(format!("{base}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect(path);
    Got {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap_or_default(),
    }
}

const BEARER: (&str, &str) = ("authorization", "Bearer console-test-token-aaaa");

pub(crate) async fn view(c: &Console, path: &str) -> Got {
    get(&c.base, path, &[BEARER]).await
}

/// The trail-health page once `verify` has finished a run over the
/// dataset as it is now (it runs in the background).
async fn health(base: &str, headers: &[(&str, &str)]) -> Got {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = get(base, "/health", headers).await;
        let done = !page.body.contains(">VERIFYING<") && !page.body.contains("under way");
        if page.status != 200 || done {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "verify still running: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the page's verdict element.
fn verdict(body: &str) -> &str {
    let start = body.find("id=\"verdict\"").expect("a verdict");
    let rest = &body[start..];
    let open = rest.find('>').expect("tag end") + 1;
    let close = rest.find("</p>").expect("p end");
    &rest[open..close]
}

#[tokio::test(flavor = "multi_thread")]
async fn find_shows_the_verdict_owner_and_proof_of_known_ids() {
    let c = Console::start(&[]);
    let h = view(&c, &format!("/find?event_id={HUMAN_OK}")).await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(verdict(&h.body), "HUMAN");
    assert!(
        h.body.contains("HUMAN: usr_alice acted themselves"),
        "{}",
        h.body
    );
    assert!(h.body.contains("Signed in as <strong>auditor-ann</strong>"));
    assert!(
        h.body.contains(">Prove human</button>"),
        "a human row offers the proof"
    );
    assert!(
        h.body.contains("<strong>PASS</strong>"),
        "the file check passes"
    );

    let a = view(&c, &format!("/find?event_id={AGENT_A2}")).await;
    assert_eq!(a.status, 200);
    assert_eq!(verdict(&a.body), "AI");
    for fact in [
        "agt_ledger (ledger-bot)",
        "key_A",
        "usr_alice",
        "cns_1",
        "payments.transfer",
        "acct_9",
        "tsk_close",
    ] {
        assert!(
            a.body.contains(&format!("<dd>{fact}</dd>")),
            "{fact} in {}",
            a.body
        );
    }
    assert!(
        !a.body.contains("Prove human"),
        "no proof of a human for an agent"
    );
    // The proof panel names the sealed file and its digest from the manifest.
    use audit_collector::manifest::{read_all, Body};
    let chains = read_all(&dataset().path).expect("manifests");
    let sealed: Vec<_> = chains
        .values()
        .flatten()
        .filter_map(|e| match &e.body {
            Body::Seal { files, .. } => Some(files),
            _ => None,
        })
        .flatten()
        .filter(|f| f.path.starts_with("audit/"))
        .collect();
    // One file, or two if the dataset's two seconds crossed an hour.
    assert!(
        sealed.iter().any(|f| a.body.contains(&f.sha256)),
        "a sealed audit file's SHA-256 in the proof panel: {}",
        a.body
    );

    let other = view(&c, &format!("/find?event_id={OTHER_AGENT}")).await;
    assert_eq!(verdict(&other.body), "AI");
    assert!(other.body.contains("<dd>usr_bob</dd>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn prove_human_passes_and_fails_as_the_command_does() {
    let c = Console::start(&[]);
    let ok = view(&c, &format!("/prove?event_id={HUMAN_OK}")).await;
    assert!(verdict(&ok.body).starts_with("PROVEN"), "{}", ok.body);
    // An unrelated agent's violation nearby is information, not a failure.
    let near = view(&c, &format!("/prove?event_id={HUMAN_NEAR_VIOLATION}")).await;
    assert!(verdict(&near.body).starts_with("PROVEN"), "{}", near.body);
    assert!(
        near.body.contains("1 violation(s) in service"),
        "{}",
        near.body
    );
}

fn cli(args: &[&str]) -> Vec<u8> {
    let o = Command::new(collector_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .env("AUDIT_ACCESS_DIR", crate::common::access_dir())
        .output()
        .expect("run audit-collector");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn timeline_lists_and_exports_exactly_what_activity_prints() {
    let c = Console::start(&[]);
    let ds = dataset();
    let (from, to) = (ds.from.to_rfc3339(), ds.to.to_rfc3339());
    let q = serde_urlencode(&[("agent", "agt_ledger"), ("from", &from), ("to", &to)]);
    let page = view(&c, &format!("/timeline?{q}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("3 action(s)"), "{}", page.body);
    let mut at = 0;
    for (id, _, key) in LEDGER_ACTIONS {
        let i = page.body.find(id).unwrap_or_else(|| panic!("{id} listed"));
        assert!(i > at, "{id} in time order");
        at = i;
        assert!(page.body.contains(key));
    }
    let dir = ds.path.to_str().expect("utf-8 path");
    for (ext, format) in [("csv", "csv"), ("json", "json")] {
        let export = view(&c, &format!("/timeline.{ext}?{q}")).await;
        assert_eq!(export.status, 200);
        let expected = cli(&[
            "activity",
            "--data-dir",
            dir,
            "--agent",
            "agt_ledger",
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            format,
        ]);
        assert_eq!(
            export.body.as_bytes(),
            expected,
            "the {ext} export is `activity --format {format}`"
        );
    }
    // A filter narrows the export to what the page shows.
    let fq = format!("{q}&action=payments.transfer");
    let narrowed = view(&c, &format!("/timeline.csv?{fq}")).await;
    assert_eq!(narrowed.body.lines().count(), 2, "{}", narrowed.body);
    assert!(narrowed.body.contains(AGENT_A2));
    // An owner's timeline holds their agents' actions and none of others'.
    let owner = view(
        &c,
        &format!(
            "/timeline?{}",
            serde_urlencode(&[("owner", "usr_bob"), ("from", &from), ("to", &to)])
        ),
    )
    .await;
    assert!(
        owner.body.contains(OTHER_AGENT) && !owner.body.contains(AGENT_A1),
        "{}",
        owner.body
    );
}

fn serde_urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test(flavor = "multi_thread")]
async fn violations_and_health_views_answer() {
    let c = Console::start(&[]);
    let ds = dataset();
    let q = serde_urlencode(&[("from", &ds.from.to_rfc3339()), ("to", &ds.to.to_rfc3339())]);
    let v = view(&c, &format!("/violations?{q}")).await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert!(
        v.body.contains("1 violation(s) at 1 callsite(s)"),
        "{}",
        v.body
    );
    assert!(v.body.contains("<td>billing</td>") && v.body.contains("refunds.issue"));
    let h = health(&c.base, &[BEARER]).await;
    assert_eq!(h.status, 200);
    assert_eq!(verdict(&h.body), "INTACT");
    // Six actions and one violation, every one sealed and covered.
    assert!(h.body.contains("2 files, 7 rows"), "{}", h.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_clear_and_every_response_carries_the_policy() {
    let c = Console::start(&[]);
    let path = format!("/find?event_id={HUMAN_OK}");
    let none = get(&c.base, &path, &[]).await;
    assert_eq!(none.status, 401);
    assert!(!none.body.contains("usr_alice"));
    let other = format!("Bearer {OTHER_DEPLOYMENT_TOKEN}");
    let foreign = get(&c.base, &path, &[("authorization", &other)]).await;
    assert_eq!(foreign.status, 401, "a token of another deployment");
    let export = get(&c.base, "/timeline.csv?agent=agt_ledger", &[]).await;
    assert_eq!(export.status, 401, "exports too");

    let bad = view(&c, "/find?event_id=x%27%20OR%20%271%27%3D%271").await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("is not an event id: event ids are UUIDs"),
        "{}",
        bad.body
    );
    let unknown = view(&c, "/find?event_id=019a0000-0000-7000-8000-0000000000ff").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("No audit row has event id"));
    let bad_time = view(&c, "/timeline?agent=agt_ledger&from=yesterday").await;
    assert_eq!(bad_time.status, 400);
    assert!(bad_time.body.contains("is not a time"), "{}", bad_time.body);

    for g in [&none, &bad, &unknown, &view(&c, "/console.css").await] {
        let csp = g
            .headers
            .get("content-security-policy")
            .expect("CSP on every response");
        let csp = csp.to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(g.headers.get("x-content-type-options").unwrap(), "nosniff");
    }

    // A browser signs in once; the cookie then names the viewer.
    let signed = get(&c.base, &format!("/login?token={TOKEN}"), &[]).await;
    assert_eq!(signed.status, 303);
    let cookie = signed
        .headers
        .get("set-cookie")
        .expect("cookie")
        .to_str()
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let with_cookie = get(&c.base, &path, &[("cookie", pair)]).await;
    assert_eq!(with_cookie.status, 200);
    let refused = get(&c.base, "/login?token=not-a-token-of-this-console", &[]).await;
    assert_eq!(refused.status, 401);
    assert!(refused.headers.get("set-cookie").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_names_the_viewer_and_no_one_else_can() {
    let trusted = Console::start(&["--trusted-proxy", "127.0.0.1"]);
    let path = format!("/find?event_id={HUMAN_OK}");
    let named = get(
        &trusted.base,
        &path,
        &[("x-forwarded-user", "carol@example.com")],
    )
    .await;
    assert_eq!(named.status, 200);
    assert!(named
        .body
        .contains("Signed in as <strong>carol@example.com</strong>"));
    // The header from an address that is not the proxy's names nobody.
    let elsewhere = Console::start(&["--trusted-proxy", "127.0.0.2"]);
    let forged = get(
        &elsewhere.base,
        &path,
        &[("x-forwarded-user", "carol@example.com")],
    )
    .await;
    assert_eq!(forged.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_tokens_file_a_one_time_sign_in_link_is_printed() {
    let (c, line) = Console::spawn(&[], tempfile::tempdir().expect("tempdir"), true);
    let line = line.expect("a sign-in line");
    let link = line
        .split_whitespace()
        .find(|w| w.contains("/login?token="))
        .unwrap_or_else(|| panic!("no sign-in link in {line:?}"));
    let path = link.strip_prefix(&c.base).expect("a link to this console");
    let token = path.split("token=").nth(1).expect("token");
    assert_eq!(token.len(), 64, "32 random bytes");
    let signed = get(&c.base, path, &[]).await;
    assert_eq!(signed.status, 303);
    let bearer = format!("Bearer {token}");
    let page = get(&c.base, "/health", &[("authorization", &bearer)]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Signed in as <strong>operator</strong>"));
    assert_eq!(get(&c.base, "/health", &[]).await.status, 401);
}

/// Every question is an access row, durable before the answer, in a
/// dataset `verify` checks, and the "Who looked" view lists them.
#[tokio::test(flavor = "multi_thread")]
async fn every_question_leaves_an_access_row_with_the_viewer() {
    let mut c = Console::start(&[]);
    let ds = dataset();
    let window = serde_urlencode(&[("from", &ds.from.to_rfc3339()), ("to", &ds.to.to_rfc3339())]);
    let asked = [
        (
            format!("/find?event_id={HUMAN_OK}"),
            "console.find",
            Some(format!("event_id={HUMAN_OK}")),
            "1",
        ),
        (
            format!("/timeline.csv?agent=agt_ledger&{window}"),
            "console.timeline.csv",
            Some("agent=agt_ledger".to_owned()),
            "3",
        ),
        (
            format!("/violations?{window}"),
            "console.violations",
            None,
            "1",
        ),
    ];
    for (path, _, _, _) in &asked {
        assert_eq!(view(&c, path).await.status, 200, "{path}");
    }
    assert_eq!(view(&c, "/find?event_id=nope").await.status, 400);
    // Not a viewer: nothing to record, nothing answered.
    assert_eq!(get(&c.base, "/health", &[]).await.status, 401);

    // SIGTERM seals the access rows; the dataset verifies.
    let pid = c.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(
        c.child.wait().expect("wait").success(),
        "console exits 0 on SIGTERM"
    );
    let access = c.dir.path().join("access");
    let access = access.to_str().expect("utf-8 path");
    let verified = String::from_utf8(cli(&["verify", "--data-dir", access])).expect("utf-8");
    assert!(
        verified.contains("intact: 1 manifest(s)") && verified.contains("4 rows"),
        "{verified}"
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&cli(&[
        "query",
        "--data-dir",
        access,
        "--format",
        "json",
        "SELECT owner_id, actor_kind, action, target, outcome, attributes FROM audit ORDER BY seq",
    ]))
    .expect("json");
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (row, (path, action, target, n)) in rows.iter().zip(&asked) {
        assert_eq!(row["owner_id"], "auditor-ann");
        assert_eq!(row["actor_kind"], "human");
        assert_eq!(row["action"], *action);
        assert_eq!(row["target"].as_str(), target.as_deref());
        assert_eq!(row["attributes"]["access.rows"], *n, "{row}");
        assert_eq!(row["outcome"], "ok");
        assert_eq!(
            row["attributes"]["access.parameters"].as_str(),
            path.split_once('?').map(|(_, q)| q)
        );
    }
    assert_eq!(
        rows[3]["outcome"], "error",
        "the refused id is recorded too"
    );

    // A console started again on the same access dataset shows them, and
    // a question asked through the CLI into it while it runs.
    let dir = std::mem::replace(&mut c.dir, tempfile::tempdir().expect("tempdir"));
    let again = Console::spawn_in(dir, &[]);
    let looked = view(&again, "/access?viewer=auditor-ann").await;
    assert_eq!(looked.status, 200, "{}", looked.body);
    assert!(
        looked.body.contains("The latest 4 question(s)"),
        "{}",
        looked.body
    );
    assert!(looked.body.contains("console.timeline.csv"));
    let access = again.dir.path().join("access");
    let data = ds.path.to_str().expect("utf-8 path");
    let access = access.to_str().expect("utf-8 path");
    cli(&[
        "who",
        "--data-dir",
        data,
        "--access-dir",
        access,
        "--viewer",
        "auditor-bob",
        OTHER_AGENT,
    ]);
    let bob = view(&again, "/access?viewer=auditor-bob").await;
    assert!(
        bob.body.contains("The latest 1 question(s)") && bob.body.contains("cli.who"),
        "{}",
        bob.body
    );
    assert!(bob.body.contains(&format!("event_id={OTHER_AGENT}")));
}

/// "Who touched acct_9?": the find view's search by target or action in a
/// window, whoever acted.
#[tokio::test(flavor = "multi_thread")]
async fn find_searches_by_target_and_action_in_a_window() {
    let c = Console::start(&[]);
    let ds = dataset();
    let window = serde_urlencode(&[("from", &ds.from.to_rfc3339()), ("to", &ds.to.to_rfc3339())]);
    let by_target = view(&c, &format!("/find?target=acct_9&{window}")).await;
    assert_eq!(by_target.status, 200, "{}", by_target.body);
    assert!(by_target.body.contains("1 action(s)"), "{}", by_target.body);
    assert!(by_target.body.contains(AGENT_A2) && !by_target.body.contains(AGENT_A1));
    let by_action = view(&c, &format!("/find?action=invoices.read&{window}")).await;
    assert!(by_action.body.contains("2 action(s)"), "{}", by_action.body);
    assert!(by_action.body.contains(AGENT_A1) && by_action.body.contains(AGENT_B1));
    assert!(!by_action.body.contains(AGENT_A2));
    let both = view(
        &c,
        &format!("/find?action=invoices.read&target=inv_2&{window}"),
    )
    .await;
    assert!(both.body.contains("1 action(s)") && both.body.contains(AGENT_B1));
    let quoted = view(
        &c,
        &format!("/find?target=x%27%20OR%20%271%27%3D%271&{window}"),
    )
    .await;
    assert!(
        quoted.body.contains("0 action(s)"),
        "a quote stays in the value: {}",
        quoted.body
    );
    let bad = view(&c, "/find?target=acct_9&from=never").await;
    assert_eq!(bad.status, 400);
}

/// The tokens file is read again on SIGHUP, as the collector's is: a token
/// added since the start works from then on, a removed one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_viewers_tokens() {
    const ADDED: &str = "console-token-added-later";
    let c = Console::start(&[]);
    let added = format!("Bearer {ADDED}");
    let path = "/health";
    assert_eq!(view(&c, path).await.status, 200);
    std::fs::write(
        c.dir.path().join("viewers"),
        format!("auditor-cy:{ADDED}\n"),
    )
    .expect("rewrite tokens");
    assert_eq!(
        get(&c.base, path, &[("authorization", &added)])
            .await
            .status,
        401,
        "not read again before SIGHUP"
    );
    let pid = c.child.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status();
    assert!(hup.is_ok_and(|s| s.success()));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = get(&c.base, path, &[("authorization", &added)]).await;
        if page.status == 200 {
            assert!(page
                .body
                .contains("Signed in as <strong>auditor-cy</strong>"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the added token still refused after SIGHUP: {}",
            page.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view(&c, path).await.status, 401, "the removed token");
    // The process is still serving (SIGHUP did not end it).
    assert_eq!(
        get(&c.base, path, &[("authorization", &added)])
            .await
            .status,
        200
    );
}

/// A dataset written by a collector with a witness (a checkpoint at every
/// one-second digest), stopped and started again after a pause so that its
/// chain records a coverage gap: `(data dir, witness dir, collector id)`.
fn witnessed_dataset() -> (tempfile::TempDir, tempfile::TempDir, String) {
    let data = tempfile::tempdir().expect("tempdir");
    let witness = tempfile::tempdir().expect("tempdir");
    let w = witness.path().to_str().expect("utf-8 path");
    let flags = ["--witness-dir", w, "--digest-interval-secs", "1"];
    let c = crate::common::Collector::start(data.path(), &flags);
    crate::answer_dataset::build(&c.grpc_url()).expect("dataset sent");
    let id = c.collector_id.clone();
    assert!(c.terminate());
    // Down for longer than a digest interval and its slack: a gap.
    std::thread::sleep(Duration::from_millis(2500));
    let c = crate::common::Collector::start(data.path(), &flags);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.terminate());
    (data, witness, id)
}

/// The proof panel shows the chain checked now and the latest signed
/// checkpoint covering the row; trail health shows each collector's last
/// checkpoint and its coverage gaps; a chain cut off after signing shows
/// in both.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_and_coverage_gaps_in_the_proof_panel_and_trail_health() {
    let (data, witness, id) = tokio::task::spawn_blocking(witnessed_dataset)
        .await
        .expect("dataset");
    let w = witness.path().to_str().expect("utf-8 path");
    let c = Console::start_over(data.path(), &["--witness", w]);
    let a = view(&c, &format!("/find?event_id={AGENT_A2}")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("<strong>INTACT</strong> all "),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("covers this row&#39;s seal entry")
            || a.body.contains("covers this row's seal entry"),
        "{}",
        a.body
    );
    assert!(a.body.contains("<strong>SIGNED</strong> by"), "{}", a.body);
    assert!(
        a.body.contains("<strong>NOT VERIFIED</strong>"),
        "consent is stated, not verified: {}",
        a.body
    );
    let h = health(&c.base, &[BEARER]).await;
    assert_eq!(verdict(&h.body), "INTACT", "{}", h.body);
    assert!(h.body.contains("Coverage gaps (1)"), "{}", h.body);
    assert!(
        h.body.contains("<td class=\"pass\">intact</td>"),
        "{}",
        h.body
    );
    assert!(h.body.contains("Last signed checkpoint per collector"));
    assert!(h.body.contains("<strong>SIGNED</strong> by"), "{}", h.body);

    // Cut the chain's last entries off cleanly: the chain still links, but
    // the witness signed more than it now holds.
    let path = audit_collector::manifest::manifest_path(data.path(), &id);
    let text = std::fs::read_to_string(&path).expect("manifest");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, lines[..lines.len() - 2].join("\n") + "\n").expect("cut");
    let cut = view(&c, &format!("/find?event_id={AGENT_A2}")).await;
    assert!(cut.body.contains("cut off since"), "{}", cut.body);
    let h = health(&c.base, &[BEARER]).await;
    assert_eq!(verdict(&h.body), "NOT INTACT", "{}", h.body);
    assert!(h.body.contains("manifest_truncated"), "{}", h.body);
    assert!(
        h.body.contains(" finding(s)</td>"),
        "the collector's own verify result: {}",
        h.body
    );

    // Without a witness the panel says so plainly.
    let plain = Console::start(&[]);
    let p = view(&plain, &format!("/find?event_id={AGENT_A2}")).await;
    assert!(p.body.contains("no witness configured"), "{}", p.body);
}

/// A window of ten years over a dataset of 200,000 rows: every view
/// answers a bounded page (100 actions, 100 search hits), the count and
/// the last page are right, and an export longer than `--export-limit` is
/// refused with a message instead of being built in memory.
#[tokio::test(flavor = "multi_thread")]
async fn a_ten_year_window_pages_and_refuses_an_unbounded_export() {
    let data = tempfile::tempdir().expect("tempdir");
    let generated = Command::new(crate::common::example_bin("gen_dataset"))
        .arg(data.path())
        .args(["200000", "48", "1"])
        .output()
        .expect("gen_dataset");
    assert!(generated.status.success(), "{generated:?}");
    let dir = data.path().to_str().expect("utf-8 path");
    let counted = String::from_utf8(cli(&[
        "query",
        "--data-dir",
        dir,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM audit WHERE owner_id = 'usr_007'",
    ]))
    .expect("utf-8");
    let total: u64 = counted.lines().nth(1).expect("a count").parse().expect("n");
    assert!(total > 500, "the owner has more than a page: {total}");

    let c = Console::start_over(data.path(), &["--export-limit", "500"]);
    let ten_years = "owner=usr_007&from=2016-12-01&to=2026-12-31";
    let rows = |body: &str| body.matches("<td><a href=\"/find?event_id=").count();
    let first = view(&c, &format!("/timeline?{ten_years}")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first
            .body
            .contains(&format!("{total} action(s), showing 1–100")),
        "{}",
        first.body
    );
    assert_eq!(rows(&first.body), 100);
    let last_page = (total - 1) / 100;
    let last = view(&c, &format!("/timeline?{ten_years}&page={last_page}")).await;
    assert!(
        last.body
            .contains(&format!("showing {}–{total}", last_page * 100 + 1)),
        "{}",
        last.body
    );
    assert_eq!(rows(&last.body) as u64, total - last_page * 100);
    assert!(
        !last.body.contains("rel=\"next\""),
        "no page after the last"
    );

    let export = view(&c, &format!("/timeline.csv?{ten_years}")).await;
    assert_eq!(export.status, 413, "{}", export.body);
    assert!(export.body.contains("narrow the window"), "{}", export.body);
    // An hour of it is within the limit, and is `activity --format csv`.
    let (from, to) = ("2026-11-01T00:00:00Z", "2026-11-01T01:00:00Z");
    let hour = view(
        &c,
        &format!("/timeline.csv?owner=usr_007&from={from}&to={to}"),
    )
    .await;
    assert_eq!(hour.status, 200, "{}", hour.body);
    let expected = cli(&[
        "activity",
        "--data-dir",
        dir,
        "--owner",
        "usr_007",
        "--from",
        from,
        "--to",
        to,
        "--format",
        "csv",
    ]);
    assert_eq!(hour.body.as_bytes(), expected);

    let search = view(
        &c,
        "/find?action=invoices.read&from=2016-12-01&to=2026-12-31",
    )
    .await;
    assert_eq!(search.status, 200, "{}", search.body);
    assert!(search.body.contains("(the first 100;"), "{}", search.body);
    assert_eq!(rows(&search.body), 100);
    let violations = view(&c, "/violations?from=2016-12-01&to=2026-12-31").await;
    assert_eq!(violations.status, 200, "{}", violations.body);
}

/// The README's one command, on the quickstart's data, in the directory
/// the quickstart ran in: it prints a sign-in link that works, and the
/// trail-health view finds the data intact.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_command_serves_the_quickstart_data() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run -- console "))
        .expect("README shows the console command");
    let args: Vec<&str> = line
        .split('#')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(3)
        .collect();
    assert_eq!(args[..2], ["console", "--data-dir"], "{line}");
    let cwd = tempfile::tempdir().expect("tempdir");
    let quickstart = Command::new(crate::common::example_bin("quickstart"))
        .arg(cwd.path().join(args[2]))
        .current_dir(cwd.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("quickstart");
    assert!(quickstart.status.success(), "{quickstart:?}");
    let mut child = Command::new(collector_bin())
        .args(&args)
        // Any free port instead of the documented 8080.
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env("RUST_LOG", "warn")
        .env_remove("AUDIT_ACCESS_DIR")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn console");
    let lines = stdout_lines(&mut child);
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from the console")
    };
    let (listening, sign_in) = (next(), next());
    let base = listening
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address")
        .to_owned();
    let c = Console {
        child,
        base,
        dir: cwd,
    };
    let link = sign_in
        .split_whitespace()
        .find(|w| w.contains("/login?token="))
        .expect("a sign-in link");
    let signed = get(&c.base, link.strip_prefix(&c.base).expect("path"), &[]).await;
    assert_eq!(signed.status, 303);
    let cookie = signed.headers.get("set-cookie").expect("cookie");
    let pair = cookie
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair");
    let h = health(&c.base, &[("cookie", pair)]).await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(verdict(&h.body), "INTACT");
    assert!(
        c.dir.path().join("audit-access").is_dir(),
        "the access dataset beside the data, as documented"
    );
}
