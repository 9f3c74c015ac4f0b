//! The `query`, `who`, `activity` and `prove-human` subcommands: flags and
//! printing. `main.rs` only dispatches to [`QueryArgs::run`] and friends;
//! each returns whether the answer was affirmative (the exit code).

use std::io::Write;

use clap::{ArgGroup, Args};

use super::activity::{Range, Subject};
use super::output::{self, Format};
use super::{activity, prove, who, Engine, QueryError};
use audit_collector::dataset::DatasetArgs;

/// Opens the query engine over the dataset the flags name.
async fn engine(data: &DatasetArgs) -> Result<Engine, QueryError> {
    Engine::open(data.locate()?).await
}

/// `query --data-dir DIR|s3://BUCKET/PREFIX "SQL"`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DatasetArgs,
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
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Print the SQL this runs (for DuckDB or any engine) instead of running it.
    #[arg(long)]
    pub show_sql: bool,
    /// The action's event id.
    pub event_id: String,
}

/// `activity --agent ID | --owner ID --from T1 --to T2`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("subject").required(true).args(["agent", "owner"])))]
pub struct ActivityArgs {
    /// Where the dataset is.
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Output format.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Agent principal id (all its credentials).
    #[arg(long)]
    pub agent: Option<String>,
    /// Accountable human: every action they answer for.
    #[arg(long)]
    pub owner: Option<String>,
    /// Start, inclusive (RFC 3339, e.g. 2026-11-28T03:00:00Z).
    #[arg(long)]
    pub from: String,
    /// End, exclusive (RFC 3339).
    #[arg(long)]
    pub to: String,
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

fn out() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

impl QueryArgs {
    /// Runs the statement and prints its result.
    pub async fn run(self) -> Result<bool, QueryError> {
        let engine = engine(&self.data).await?;
        let (schema, batches) = engine.sql_with_schema(&self.sql).await?;
        output::write(&mut out(), self.format, &schema, &batches)?;
        Ok(true)
    }
}

impl WhoArgs {
    /// Prints who did it; an unknown event id is an error.
    pub async fn run(self) -> Result<bool, QueryError> {
        if self.show_sql {
            writeln!(out(), "{}", who::sql(&self.event_id))?;
            return Ok(true);
        }
        let engine = engine(&self.data).await?;
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
        let range = Range::parse(&self.from, &self.to)?;
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
        let engine = engine(&self.data).await?;
        let (schema, batches) = activity::activity(&engine, &subject, range).await?;
        output::write(&mut out(), self.format, &schema, &batches)?;
        Ok(true)
    }
}

impl ProveArgs {
    /// Prints each check; true (exit 0) only when all hold.
    pub async fn run(self) -> Result<bool, QueryError> {
        let engine = engine(&self.data).await?;
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
