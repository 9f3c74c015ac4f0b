//! The `query`, `who`, `activity` and `prove-human` subcommands: flags and
//! printing. `main.rs` only dispatches to [`QueryArgs::run`] and friends;
//! each returns whether the answer was affirmative (the exit code).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args};

use super::access::{self, AccessLog, Asked, Writer};
use super::activity::{Range, Subject};
use super::output::{self, Format};
use super::{activity, prove, who, Engine, QueryError};
use audit_collector::coverage::{self, SealedThrough};
use audit_collector::dataset::DatasetArgs;

/// Opens the query engine over the dataset the flags name, once it is
/// known to be one (a manifest is there), with how far its sealed rows
/// reach and when nothing was listening.
async fn engine(data: &DatasetArgs) -> Result<(Engine, Vec<SealedThrough>), QueryError> {
    let location = data.locate()?;
    let sealed = coverage::require(&location).await?;
    Ok((Engine::open(location).await?, sealed))
}

/// Where `who` and `activity` read from: a local dataset by the direct
/// reader (no SQL session is built), a bucket through the SQL engine.
enum Source {
    Direct(audit_collector::store::Location, PathBuf),
    Sql(Engine),
}

/// [`engine`]'s checks, then the [`Source`] for the dataset.
async fn source(data: &DatasetArgs) -> Result<(Source, Vec<SealedThrough>), QueryError> {
    let location = data.locate()?;
    let sealed = coverage::require(&location).await?;
    let source = match location.local_dir().map(Path::to_owned) {
        Some(root) => Source::Direct(location, root),
        None => Source::Sql(Engine::open(location).await?),
    };
    Ok((source, sealed))
}

/// Says how far the answer reaches: a line of the table, or on stderr when
/// stdout is JSON or CSV for a program to read.
fn sealed_note(o: &mut dyn Write, format: Format, sealed: &[SealedThrough]) -> std::io::Result<()> {
    note(o, format, &coverage::describe(sealed))
}

/// A line about the answer: part of a table, on stderr beside JSON or CSV.
fn note(o: &mut dyn Write, format: Format, line: &str) -> std::io::Result<()> {
    match format {
        Format::Table => writeln!(o, "{line}"),
        Format::Json | Format::Csv => writeln!(std::io::stderr(), "{line}"),
    }
}

/// Where each question asked is recorded, and as whom.
#[derive(Args, Clone, Debug)]
pub struct AccessArgs {
    /// Where this question is recorded (who looked): a dataset of its own,
    /// written like the collector's and checked by `verify`; the console's
    /// --access-dir.
    #[arg(long, env = "AUDIT_ACCESS_DIR", default_value = "./audit-access")]
    pub access_dir: PathBuf,
    /// Who is asking, as recorded [default: the OS user].
    #[arg(long, env = "AUDIT_VIEWER")]
    pub viewer: Option<String>,
}

/// The access log being opened while a question is answered.
type Opening = tokio::task::JoinHandle<Result<AccessLog, access::AccessError>>;

/// One CLI question, before its answer.
struct Question {
    name: &'static str,
    subject: Option<String>,
    asked: DateTime<Utc>,
    log: Option<Opening>,
}

impl Question {
    fn new(name: &'static str, subject: Option<String>) -> Question {
        Question {
            name,
            subject,
            asked: Utc::now(),
            log: None,
        }
    }

    /// Opens the access log while the answer is computed (its recovery and
    /// fsyncs wait on the disk, the answer on the CPU). For the short
    /// questions only: the open log holds the CLI writer's lock, for which
    /// another command waits at most 30 s, so a long free SQL query opens
    /// it after its answer.
    fn opening_log(mut self, access: &AccessArgs) -> Question {
        self.log = Some(open_log(access));
        self
    }

    /// Records the question with its outcome, then lets the answer
    /// through: an answer whose access row is not durable is not printed.
    async fn recorded<T>(
        self,
        access: &AccessArgs,
        result: Result<T, QueryError>,
        rows: impl Fn(&T) -> u64,
    ) -> Result<T, QueryError> {
        let mut extra = std::collections::BTreeMap::new();
        if let Err(e) = &result {
            extra.insert("access.error".to_owned(), e.to_string());
        }
        let q = Asked {
            viewer: access.viewer.clone().unwrap_or_else(access::os_user),
            service: access::CLI,
            question: format!("cli.{}", self.name),
            subject: self.subject,
            parameters: command_line(),
            asked: self.asked,
            ok: result.is_ok(),
            rows: result.as_ref().ok().map(rows),
            extra,
        };
        let log = match self.log {
            Some(opening) => opening,
            None => open_log(access),
        }
        .await
        .map_err(std::io::Error::other)??;
        let written = log.record(&q).await;
        let closed = tokio::task::spawn_blocking(move || log.close())
            .await
            .map_err(std::io::Error::other)?;
        written?;
        closed?;
        result
    }
}

/// Opens the CLI's access log off the async threads.
fn open_log(access: &AccessArgs) -> Opening {
    let dir = access.access_dir.clone();
    tokio::task::spawn_blocking(move || AccessLog::open(&dir, Writer::Cli))
}

/// The command line as typed, each argument quoted when it holds a space
/// or a quote, so a person can read (and re-run) what was asked.
fn command_line() -> String {
    std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn batch_rows(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

/// `query --data-dir DIR|s3://BUCKET/PREFIX "SQL"`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Where the question is recorded.
    #[command(flatten)]
    pub access: AccessArgs,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// One SQL statement over the tables `audit` and `violations` (read only).
    pub sql: String,
}

/// `who --data-dir DIR EVENT_ID`.
#[derive(Args, Debug)]
pub struct WhoArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Where the question is recorded.
    #[command(flatten)]
    pub access: AccessArgs,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Print the SQL this runs (for DuckDB or any engine) instead of running it.
    #[arg(long)]
    pub show_sql: bool,
    /// The action's event id.
    pub event_id: String,
}

/// `activity --agent ID | --owner ID | --origin ID --from T1 [--to T2] | --on DAY | --last 24h`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("subject").required(true).args(["agent", "owner", "origin"])))]
#[command(group(ArgGroup::new("window").required(true).args(["from", "on", "last"])))]
pub struct ActivityArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Where the question is recorded.
    #[command(flatten)]
    pub access: AccessArgs,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Agent principal id (all its credentials).
    #[arg(long)]
    pub agent: Option<String>,
    /// Accountable human: every action they answer for.
    #[arg(long)]
    pub owner: Option<String>,
    /// Human at the start of a delegation chain: everything done in their
    /// name, through any number of agents and services.
    #[arg(long)]
    pub origin: Option<String>,
    /// Start, inclusive: RFC 3339 (2026-11-28T03:00:00Z) or a date (its
    /// first instant).
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive: RFC 3339 or a date (the whole day included)
    /// [default: now].
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// One whole day (UTC), e.g. 2026-11-28.
    #[arg(long, conflicts_with_all = ["from", "to", "last"])]
    pub on: Option<String>,
    /// Up to now: a number and s, m, h, d or w, e.g. 24h.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub last: Option<String>,
    /// Print the SQL this runs (for DuckDB or any engine) instead of running it.
    #[arg(long)]
    pub show_sql: bool,
}

/// `prove-human --data-dir DIR EVENT_ID`.
#[derive(Args, Debug)]
pub struct ProveArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Where the question is recorded.
    #[command(flatten)]
    pub access: AccessArgs,
    /// Output format (`csv` prints the checks as rows).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Seconds before the start and after the end of the action in which a
    /// violation for the same service makes the proof fail.
    #[arg(long, default_value_t = 300)]
    pub window_secs: u32,
    /// The action's event id.
    pub event_id: String,
}

/// Set once a write to stdout finds its reader gone (`… | head -1`).
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Stdout, noting a closed pipe whatever the writer on top (the CSV and
/// JSON writers wrap the I/O error in their own).
struct Stdout(std::io::StdoutLock<'static>);

fn note_closed(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).inspect_err(note_closed)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().inspect_err(note_closed)
    }
}

fn out() -> Stdout {
    Stdout(std::io::stdout().lock())
}

/// A failure once the reader closed stdout is that closing: like other
/// Unix tools the command stops quietly, with `closed` as its answer.
fn quiet<T>(result: Result<T, QueryError>, closed: T) -> Result<T, QueryError> {
    match result {
        Err(_) if CLOSED.load(Ordering::Relaxed) => Ok(closed),
        r => r,
    }
}

impl QueryArgs {
    /// Runs the statement and prints its result.
    pub async fn run(self) -> Result<bool, QueryError> {
        quiet(self.answer().await, true)
    }

    async fn answer(self) -> Result<bool, QueryError> {
        let q = Question::new("query", None);
        let result = async {
            let (engine, sealed) = engine(&self.data).await?;
            Ok((engine.sql_with_schema(&self.sql).await?, sealed))
        }
        .await;
        let ((schema, batches), sealed) = q
            .recorded(&self.access, result, |((_, b), _)| batch_rows(b))
            .await?;
        let mut o = out();
        output::write(&mut o, self.format, &schema, &batches)?;
        sealed_note(&mut o, self.format, &sealed)?;
        Ok(true)
    }
}

impl WhoArgs {
    /// Prints who did it; an unknown event id is an error.
    pub async fn run(self) -> Result<bool, QueryError> {
        quiet(self.answer().await, true)
    }

    async fn answer(self) -> Result<bool, QueryError> {
        if self.show_sql {
            writeln!(out(), "{}", who::sql(&self.event_id))?;
            return Ok(true);
        }
        let q = Question::new("who", Some(format!("event_id={}", self.event_id)))
            .opening_log(&self.access);
        let result = async {
            let (source, sealed) = source(&self.data).await?;
            let answer = match &source {
                Source::Direct(location, root) => {
                    who::who_direct(location, root, &self.event_id).await?
                }
                Source::Sql(engine) => who::who(engine, &self.event_id).await?,
            };
            Ok((answer, sealed))
        }
        .await;
        let (answer, sealed) = q
            .recorded(&self.access, result, |(a, _)| a.rows.len() as u64)
            .await?;
        let mut o = out();
        match self.format {
            Format::Table => {
                for r in &answer.rows {
                    writeln!(o, "{}", who::headline(r))?;
                    if let Some(chain) = who::chain_line(r) {
                        writeln!(o, "{chain}")?;
                    }
                }
                if answer.rows.len() > 1 {
                    writeln!(o, "WARNING: {} rows carry this event_id", answer.rows.len())?;
                }
                writeln!(o)?;
                output::write_vertical(&mut o, &answer.batches, &[])?;
            }
            f => {
                let schema = answer.batches[0].schema();
                output::write(&mut o, f, &schema, &answer.batches)?;
            }
        }
        sealed_note(&mut o, self.format, &sealed)?;
        Ok(true)
    }
}

impl ActivityArgs {
    /// Prints every action of the subject in the range, in order.
    pub async fn run(self) -> Result<bool, QueryError> {
        quiet(self.answer().await, true)
    }

    async fn answer(self) -> Result<bool, QueryError> {
        let now = chrono::Utc::now();
        let range = match (&self.on, &self.last, &self.from) {
            (Some(day), _, _) => Range::on(day)?,
            (None, Some(length), _) => Range::last(length, now)?,
            (None, None, Some(from)) => {
                let to = self.to.clone().unwrap_or_else(|| now.to_rfc3339());
                Range::parse(from, &to)?
            }
            // clap's required group rules this out.
            (None, None, None) => unreachable!("--from, --on or --last is required"),
        };
        let subject = match (self.agent, self.owner, self.origin) {
            (Some(a), _, _) => Subject::Agent(a),
            (None, Some(o), _) => Subject::Owner(o),
            (None, None, Some(o)) => Subject::Origin(o),
            // clap's required group rules this out.
            (None, None, None) => unreachable!("--agent, --owner or --origin is required"),
        };
        if self.show_sql {
            writeln!(out(), "{}", activity::sql(&subject, range))?;
            return Ok(true);
        }
        let about = match &subject {
            Subject::Agent(a) => format!("agent={a}"),
            Subject::Owner(o) => format!("owner={o}"),
            Subject::Origin(o) => format!("origin={o}"),
        };
        let q = Question::new("activity", Some(about)).opening_log(&self.access);
        let result = async {
            let (source, sealed) = source(&self.data).await?;
            let answer = match &source {
                Source::Direct(_, root) => activity::activity_direct(root, &subject, range)?,
                Source::Sql(engine) => activity::activity(engine, &subject, range).await?,
            };
            Ok((answer, sealed))
        }
        .await;
        let ((schema, batches), sealed) = q
            .recorded(&self.access, result, |((_, b), _)| batch_rows(b))
            .await?;
        let mut o = out();
        match self.format {
            Format::Table => {
                output::write_fitted(&mut o, &batches, activity::TABLE, activity::TABLE_WIDTH)?
            }
            f => output::write(&mut o, f, &schema, &batches)?,
        }
        let ns = |t: chrono::DateTime<chrono::Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
        for line in coverage::uncovered(&sealed, ns(range.from), ns(range.to)) {
            note(&mut o, self.format, &line)?;
        }
        sealed_note(&mut o, self.format, &sealed)?;
        Ok(true)
    }
}

impl ProveArgs {
    /// Prints each check; true (exit 0) only when all hold. (A closed pipe leaves it unproven.)
    pub async fn run(self) -> Result<bool, QueryError> {
        quiet(self.answer().await, false)
    }

    async fn answer(self) -> Result<bool, QueryError> {
        let q = Question::new("prove-human", Some(format!("event_id={}", self.event_id)));
        let result = async {
            let (engine, sealed) = engine(&self.data).await?;
            let window = chrono::Duration::seconds(i64::from(self.window_secs));
            let mut proof = prove::prove_human(&engine, &self.event_id, window).await?;
            let (from, to) = proof.window_ns;
            proof.check_coverage(coverage::uncovered(&sealed, from, to));
            Ok((proof, sealed))
        }
        .await;
        let (proof, sealed) = q.recorded(&self.access, result, |_| 1).await?;
        let mut o = out();
        match self.format {
            Format::Json => {
                let mut v = serde_json::to_value(&proof).map_err(std::io::Error::other)?;
                if let Some(obj) = v.as_object_mut() {
                    let s = serde_json::to_value(&sealed).map_err(std::io::Error::other)?;
                    obj.insert("sealed_through".into(), s);
                }
                let s = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
                writeln!(o, "{s}")?;
            }
            Format::Csv => {
                writeln!(o, "check,pass,detail")?;
                for c in &proof.checks {
                    writeln!(
                        o,
                        "{},{},\"{}\"",
                        c.check,
                        c.pass,
                        c.detail.replace('"', "\"\"")
                    )?;
                }
            }
            Format::Table => {
                for c in &proof.checks {
                    let mark = if c.pass { "PASS" } else { "FAIL" };
                    writeln!(o, "{mark}  {:<10} {}", c.check, c.detail)?;
                }
                let verdict = if proof.human {
                    "PROVEN: a human acted, no agent was involved"
                } else {
                    "NOT PROVEN: see the failing check(s) above"
                };
                writeln!(o, "{verdict}")?;
            }
        }
        if self.format != Format::Json {
            sealed_note(&mut o, self.format, &sealed)?;
        }
        Ok(proof.human)
    }
}
