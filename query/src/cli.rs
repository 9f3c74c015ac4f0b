//! The `query`, `who`, `activity` and `prove-human` subcommands: flags and
//! printing. `main.rs` only dispatches to [`QueryArgs::run`] and friends;
//! each returns whether the answer was affirmative (the exit code).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{ArgGroup, Args};

use super::activity::{Range, Subject};
use super::output::{self, Format};
use super::{activity, prove, who, Engine, QueryError};
use audit_collector::config::Config;
use audit_collector::store::{self, Location};

/// The dataset the answer commands read: the collector's data directory,
/// or the bucket prefix its sealed files and manifests are uploaded to.
/// Credentials, region and endpoint of a bucket come from the standard
/// `AWS_*` variables (`AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for an
/// S3-compatible server on loopback), or from `--config`'s `[store.remote]`.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Dataset: a directory, or `s3://bucket/prefix`.
    #[arg(
        long = "data-dir",
        visible_alias = "data",
        env = "AUDIT_COLLECTOR_DATA_DIR",
        default_value = "./audit-data"
    )]
    pub data_dir: String,
    /// The collector's object store (`s3://bucket/prefix`); wins over
    /// --data-dir, as it does for `serve`, where the data dir then only
    /// holds the WAL.
    #[arg(long, env = "AUDIT_COLLECTOR_STORE_URL")]
    pub store_url: Option<String>,
    /// The collector's TOML config: `[store] url` (below --store-url) and
    /// `[store.remote]` (endpoint, region, plain HTTP), as `verify` reads it.
    #[arg(long, env = "AUDIT_COLLECTOR_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

impl DataArgs {
    /// Where the dataset is.
    pub fn location(&self) -> Result<Location, QueryError> {
        let cfg = match &self.config {
            Some(path) => Config::from_file(path).map_err(|e| QueryError::BadLocation {
                location: path.display().to_string(),
                reason: e.to_string(),
            })?,
            None => Config::default(),
        };
        let url = self
            .store_url
            .as_deref()
            .or(cfg.store.url.as_deref())
            .unwrap_or(&self.data_dir);
        if !store::is_remote(url) {
            let dir = std::path::Path::new(url.strip_prefix("file://").unwrap_or(url));
            if !dir.is_dir() {
                return Err(QueryError::MissingDataDir(dir.to_owned()));
            }
        }
        Ok(Location::parse(url, &cfg.store.remote)?)
    }

    /// Opens the query engine over the dataset.
    pub async fn engine(&self) -> Result<Engine, QueryError> {
        Engine::open(self.location()?).await
    }
}

/// `query --data-dir DIR|s3://BUCKET/PREFIX "SQL"`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DataArgs,
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
    pub data: DataArgs,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Print the SQL this runs (for DuckDB or any engine) instead of running it.
    #[arg(long)]
    pub show_sql: bool,
    /// The action's event id.
    pub event_id: String,
}

/// `activity --agent ID | --owner ID --from T1 [--to T2] | --on DAY | --last 24h`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("subject").required(true).args(["agent", "owner"])))]
#[command(group(ArgGroup::new("window").required(true).args(["from", "on", "last"])))]
pub struct ActivityArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DataArgs,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Agent principal id (all its credentials).
    #[arg(long)]
    pub agent: Option<String>,
    /// Accountable human: every action they answer for.
    #[arg(long)]
    pub owner: Option<String>,
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
    pub data: DataArgs,
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

fn note(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).inspect_err(note)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().inspect_err(note)
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
        let engine = self.data.engine().await?;
        let (schema, batches) = engine.sql_with_schema(&self.sql).await?;
        output::write(&mut out(), self.format, &schema, &batches)?;
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
        let engine = self.data.engine().await?;
        let answer = who::who(&engine, &self.event_id).await?;
        let mut o = out();
        match self.format {
            Format::Table => {
                for r in &answer.rows {
                    writeln!(o, "{}", who::headline(r))?;
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
        let subject = match (self.agent, self.owner) {
            (Some(a), _) => Subject::Agent(a),
            (None, Some(o)) => Subject::Owner(o),
            // clap's required group rules this out.
            (None, None) => unreachable!("--agent or --owner is required"),
        };
        if self.show_sql {
            writeln!(out(), "{}", activity::sql(&subject, range))?;
            return Ok(true);
        }
        let engine = self.data.engine().await?;
        let (schema, batches) = activity::activity(&engine, &subject, range).await?;
        match self.format {
            Format::Table => {
                output::write_fitted(&mut out(), &batches, activity::TABLE, activity::TABLE_WIDTH)?
            }
            f => output::write(&mut out(), f, &schema, &batches)?,
        }
        Ok(true)
    }
}

impl ProveArgs {
    /// Prints each check; true (exit 0) only when all hold. (A closed pipe leaves it unproven.)
    pub async fn run(self) -> Result<bool, QueryError> {
        quiet(self.answer().await, false)
    }

    async fn answer(self) -> Result<bool, QueryError> {
        let engine = self.data.engine().await?;
        let window = chrono::Duration::seconds(i64::from(self.window_secs));
        let proof = prove::prove_human(&engine, &self.event_id, window).await?;
        let mut o = out();
        match self.format {
            Format::Json => {
                let s = serde_json::to_string_pretty(&proof).map_err(std::io::Error::other)?;
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
        Ok(proof.human)
    }
}
