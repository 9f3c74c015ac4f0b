//! `audit-collector`: the sidecar binary. It only parses flags and wires
//! the library's components; see the crate docs for what each does.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use audit_collector::checkpoint::{self, NoteSigner, NoteVerifier};
use audit_collector::config::{Config, LogFormat};
use audit_collector::dataset::{self, DatasetArgs};
use audit_collector::server::{show, Server};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

mod limit_flags;
mod operator_flags;
mod serve_flags;

use serve_flags::{config, ServeArgs};

#[derive(Parser, Debug)]
#[command(
    name = "audit-collector",
    version,
    about = "Receives dual-keyed audit records over OTLP and keeps them in immutable Parquet"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log format on stderr, `text` or `json` [default: the config's `log_format`, else text].
    #[arg(long, global = true, env = "AUDIT_COLLECTOR_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Receive OTLP and store audit records until SIGTERM/SIGINT (SIGHUP reloads the TLS and tokens files).
    Serve(Box<ServeArgs>),
    /// Recompute hashes, the manifest chain and seq continuity; exit 1 if anything is wrong.
    Verify(VerifyArgs),
    /// Print a signed checkpoint of each collector's manifest head in the data dir (keep it elsewhere).
    Checkpoint(CheckpointArgs),
    /// Generate an Ed25519 key pair for checkpoints (note key format).
    Keygen(KeygenArgs),
    /// Show (then with --apply, perform) the deletions the retention policy allows.
    Retention(RetentionArgs),
    /// Place or release a legal hold, signed by the operator's key.
    Hold(operator_flags::HoldArgs),
    /// Run one read-only SQL statement over the tables `audit` and `violations`.
    #[cfg(feature = "sql")]
    Query(audit_query::cli::QueryArgs),
    /// Who performed an action: human or AI, agent, credential, accountable human.
    #[cfg(feature = "sql")]
    Who(audit_query::cli::WhoArgs),
    /// Every action of an agent (across credentials) or of an owner, in a time range.
    #[cfg(feature = "sql")]
    Activity(audit_query::cli::ActivityArgs),
    /// Exit 0 only if a human performed the action with no agent, the file is
    /// intact in the hash chain, and no violation is near it.
    #[cfg(feature = "sql")]
    ProveHuman(audit_query::cli::ProveArgs),
    /// Serve the auditor's console: a read-only web view of the trail (loopback by default).
    #[cfg(feature = "sql")]
    Console(audit_console::ConsoleArgs),
}

/// `retention`'s flags: the dataset (a data dir; the config's
/// `[retention]` policy) and the policy flags, laid over the config's
/// keys named in their `serde` attributes as `serve`'s are.
#[derive(Args, Debug, Serialize)]
struct RetentionArgs {
    #[command(flatten)]
    #[serde(flatten)]
    dataset: DatasetArgs,
    /// Minimum retention in days (overrides the config).
    #[arg(long)]
    #[serde(rename = "retention.min_days")]
    min_days: Option<u64>,
    /// Maximum retention in days (overrides the config).
    #[arg(long)]
    #[serde(rename = "retention.max_days")]
    max_days: Option<u64>,
    /// Legal hold FROM..TO (YYYY-MM-DD..YYYY-MM-DD), repeatable, adds to the config's.
    #[arg(long = "hold")]
    #[serde(skip)]
    holds: Vec<String>,
    /// Delete files whose newest row is before this day (refused inside min_days).
    #[arg(long)]
    #[serde(skip)]
    before: Option<chrono::NaiveDate>,
    /// Perform the deletions (otherwise only show them); needs --operator-key.
    #[arg(long)]
    #[serde(skip)]
    apply: bool,
    /// The operator's private key file (`PRIVATE+KEY+…`): the policy is
    /// recorded signed with it, and deletions are valid only under it.
    #[arg(long)]
    #[serde(skip)]
    operator_key: Option<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "table")]
    #[serde(skip)]
    format: OutputFormat,
}

/// `checkpoint` signs the manifests in the data dir, where a collector
/// keeps its whole chain even when it uploads to an object store; a store
/// URL is not read.
#[derive(Args, Debug)]
struct CheckpointArgs {
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Private key file (`PRIVATE+KEY+…`, from `keygen`).
    #[arg(long, env = "AUDIT_COLLECTOR_SIGNING_KEY")]
    key: PathBuf,
}

#[derive(Args, Debug)]
struct KeygenArgs {
    /// Key name, shown in every signature line.
    #[arg(long, default_value = "audit-collector")]
    name: String,
    /// Where to write the private key (mode 0600).
    #[arg(long)]
    private: PathBuf,
    /// Where to write the public key.
    #[arg(long)]
    public: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Output format.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    /// Signed checkpoints kept elsewhere (from `checkpoint`); detects a cut-off tail.
    #[arg(long = "checkpoint", requires = "public_key")]
    checkpoints: Vec<PathBuf>,
    /// Public key file to check the checkpoints with (also the witness's,
    /// instead of the key pinned in it).
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// The collectors' witness directory [default: --config's [store] witness_dir]:
    /// every checkpoint in it is checked, catching a cut-off tail or a rewritten chain.
    #[arg(long, env = "AUDIT_COLLECTOR_WITNESS_DIR")]
    witness: Option<PathBuf>,
    /// Operator public key file (repeatable; also --config's [retention]
    /// operator_keys): deletions are valid only under a policy one signed.
    #[arg(long = "operator-key")]
    operator_keys: Vec<PathBuf>,
}

/// Installs the SIGTERM/SIGINT handlers now, before readiness is announced:
/// a supervisor that signals right after start gets a graceful stop (drain,
/// seal, exit 0), not the default action's abrupt kill.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// SIGHUP, installed before start like [`shutdown_signal`] (its default
/// action would end the process): each one reloads the TLS and tokens files.
#[cfg(unix)]
fn reload_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).context("installing SIGHUP handler")
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir.clone();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %data_dir.display(),
        "collector starting"
    );
    let stop = shutdown_signal()?;
    #[cfg(unix)]
    let mut hup = reload_signal()?;
    let server = Server::start(cfg).await?;
    // One stdout line that scripts and tests wait for (ports may be ephemeral).
    println!(
        "listening otlp_grpc={} otlp_http={} admin={} collector_id={} data_dir={}",
        show(server.grpc_addr),
        show(server.http_addr),
        show(server.admin_addr),
        server.collector_id,
        data_dir.display()
    );
    let _ = std::io::stdout().flush();
    #[cfg(unix)]
    {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hup.recv() => {
                    if !server.reload() {
                        tracing::info!("SIGHUP: no TLS nor tokens file, nothing to reload");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    stop.await;
    tracing::info!("signal received: draining and sealing");
    server.shutdown().await?;
    tracing::info!("stopped; everything acknowledged is sealed");
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let cfg = args.dataset.config()?;
    let opts = audit_collector::verify::Options {
        operator_keys: operator_flags::verifiers(
            &args.operator_keys,
            &cfg.retention.operator_keys,
        )?,
    };
    let loc = dataset::locate(&cfg)?;
    if loc.is_remote() {
        if !args.checkpoints.is_empty() {
            dataset::local(&loc, "--checkpoint")?;
        }
        if args.witness.is_some() {
            dataset::local(&loc, "--witness")?;
        }
        let report = audit_collector::verify::verify_store(&loc, &opts)?;
        return print_report(&report, args.format);
    }
    let dir = dataset::local(&loc, "verify")?;
    let mut report = audit_collector::verify::verify(dir, &opts)?;
    let key = match &args.public_key {
        Some(pk) => {
            let key =
                std::fs::read_to_string(pk).with_context(|| format!("reading {}", pk.display()))?;
            Some(NoteVerifier::parse(&key)?)
        }
        None => None,
    };
    if let Some(witness) = args.witness.as_ref().or(cfg.store.witness_dir.as_ref()) {
        audit_collector::verify::check_witness(
            dir,
            witness,
            &cfg.store.remote,
            key.as_ref(),
            &mut report,
        )
        .with_context(|| format!("reading the witness {}", witness.display()))?;
    }
    if let Some(verifier) = &key {
        for path in &args.checkpoints {
            let note = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let cp = verifier
                .open(&note)
                .with_context(|| format!("checkpoint {}", path.display()))?;
            audit_collector::verify::check_checkpoint(dir, &cp, &mut report);
        }
    }
    print_report(&report, args.format)
}

fn print_report(
    report: &audit_collector::verify::Report,
    format: OutputFormat,
) -> anyhow::Result<bool> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Table => {
            for f in &report.findings {
                println!("{:<18} {}  {}", f.kind, f.path, f.detail);
            }
            for w in &report.warnings {
                println!("warning: {:<18} {}  {}", w.kind, w.path, w.detail);
            }
            println!(
                "{}: {} manifest(s), {} entries, {} files, {} rows",
                if report.intact() {
                    "intact"
                } else {
                    "NOT INTACT"
                },
                report.manifests,
                report.entries,
                report.files,
                report.rows
            );
            println!(
                "{}",
                audit_collector::coverage::describe(&report.sealed_through)
            );
        }
    }
    Ok(report.intact())
}

fn checkpoint(args: CheckpointArgs) -> anyhow::Result<bool> {
    let key = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let signer = NoteSigner::parse(&key)?;
    let cfg = args.dataset.config()?;
    let dir = dataset::existing(&cfg.data_dir)?.join("manifest");
    let mut any = false;
    let all = audit_collector::manifest::read_all(&cfg.data_dir)
        .with_context(|| format!("reading {}", dir.display()))?;
    for (id, entries) in all {
        let Some(head) = entries.last() else { continue };
        print!(
            "{}",
            signer.sign(&checkpoint::origin(&id), entries.len() as u64, &head.hash)?
        );
        any = true;
    }
    anyhow::ensure!(any, "no manifest with entries under {}", dir.display());
    Ok(true)
}

fn keygen(args: KeygenArgs) -> anyhow::Result<bool> {
    let (private, public) = checkpoint::generate(&args.name)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&args.private)
            .with_context(|| format!("creating {}", args.private.display()))?;
        writeln!(f, "{private}")?;
    }
    #[cfg(not(unix))]
    std::fs::write(&args.private, format!("{private}\n"))?;
    std::fs::write(&args.public, format!("{public}\n"))?;
    println!("{public}");
    Ok(true)
}

fn retention(args: RetentionArgs) -> anyhow::Result<bool> {
    use audit_collector::retention::{self, LegalHold};
    let cfg = Config::load(args.dataset.config.as_deref(), &args)?;
    let loc = dataset::locate(&cfg)?;
    let data_dir = dataset::local(&loc, "retention")?;
    audit_collector::coverage::require_local(data_dir)?;
    let mut policy = cfg.retention;
    for h in &args.holds {
        let (from, to) = h
            .split_once("..")
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .with_context(|| format!("--hold {h:?}: expected YYYY-MM-DD..YYYY-MM-DD"))?;
        policy.legal_holds.push(LegalHold {
            from,
            to,
            reason: "--hold".into(),
        });
    }
    let today = chrono::Utc::now().date_naive();
    let plan = retention::plan(data_dir, &policy, today, args.before)?;
    let applied = if args.apply {
        let reason = match (args.before, policy.max_days) {
            (Some(b), _) => format!(
                "retention: newest row before {b} (min_days {})",
                policy.min_days
            ),
            (None, Some(m)) => format!("retention: older than max_days {m}"),
            (None, None) => "retention: finishing recorded deletions".to_owned(),
        };
        let key = args.operator_key.as_deref().context(
            "retention --apply needs --operator-key: a deletion is valid only under a policy the operator signed",
        )?;
        let signer = operator_flags::signer(key)?;
        operator_flags::check_listed(&signer, &policy.operator_keys)?;
        let auth = retention::Authority {
            signer: &signer,
            min_days: policy.min_days,
            max_days: policy.max_days,
            before: args.before,
        };
        Some(retention::apply(data_dir, &plan, &reason, &auth)?)
    } else {
        None
    };
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "applied": applied }))?
        ),
        OutputFormat::Table => {
            for c in &plan.delete {
                let verb = if applied.is_some() {
                    "deleted"
                } else {
                    "delete"
                };
                println!("{verb:<8} {}  newest {}", c.file.path, c.newest_day);
            }
            for (c, why) in &plan.held {
                println!("kept     {}  newest {}  ({why})", c.file.path, c.newest_day);
            }
            match plan.cutoff {
                Some(cut) => println!(
                    "{} file(s) {} before {cut}; {} held",
                    plan.delete.len(),
                    if applied.is_some() {
                        "deleted"
                    } else {
                        "would be deleted (use --apply)"
                    },
                    plan.held.len()
                ),
                None => println!("no max_days and no --before: nothing expires"),
            }
        }
    }
    Ok(true)
}

/// `default` is the filter when `RUST_LOG` is unset.
fn init_logs(format: LogFormat, default: &str) {
    use tracing_subscriber::{fmt, prelude::*, EnvFilter};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes would corrupt JSON lines.
    let ansi =
        matches!(format, LogFormat::Text) && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => tracing_subscriber::registry().with(filter).with(fmt).init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(fmt.json())
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` reads its config first: the file may choose the log format.
    let serve_cfg = match &cli.cmd {
        Cmd::Serve(args) => match config(args) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let configured = serve_cfg.as_ref().map(|c| c.log_format);
    // Other commands write only access rows: their writer's start and
    // seal lines would bury the answer.
    let default_filter = match &cli.cmd {
        Cmd::Serve(_) => "info",
        _ => "info,audit_collector::ingest=warn",
    };
    init_logs(
        cli.log_format
            .or(configured)
            .unwrap_or(Config::default().log_format),
        default_filter,
    );
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.cmd {
        Cmd::Serve(_) => match serve_cfg {
            Some(cfg) => rt.block_on(serve(cfg)).map(|()| true),
            None => Ok(false),
        },
        Cmd::Verify(args) => verify(args),
        Cmd::Checkpoint(args) => checkpoint(args),
        Cmd::Keygen(args) => keygen(args),
        Cmd::Retention(args) => retention(args),
        Cmd::Hold(args) => operator_flags::hold(args),
        #[cfg(feature = "sql")]
        Cmd::Query(args) => rt.block_on(args.run()).map_err(Into::into),
        #[cfg(feature = "sql")]
        Cmd::Who(args) => rt.block_on(args.run()).map_err(Into::into),
        #[cfg(feature = "sql")]
        Cmd::Activity(args) => rt.block_on(args.run()).map_err(Into::into),
        #[cfg(feature = "sql")]
        Cmd::ProveHuman(args) => rt.block_on(args.run()).map_err(Into::into),
        #[cfg(feature = "sql")]
        Cmd::Console(args) => rt.block_on(async {
            let stop = shutdown_signal()?;
            Ok(args.run(stop).await?)
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
