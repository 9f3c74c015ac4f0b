//! The operator's side of retention on the command line: `hold add|release`,
//! reading the operator's private key, and the operator public keys
//! `verify` checks policy signatures with.

use std::path::{Path, PathBuf};

use anyhow::Context;
use audit_collector::checkpoint::{NoteSigner, NoteVerifier};
use audit_collector::dataset::{self, DatasetArgs};
use audit_collector::policy_chain::{Hold, HoldAction};
use clap::{Args, Subcommand};

/// `hold add|release`.
#[derive(Args, Debug)]
pub struct HoldArgs {
    /// The data dir (the collectors must be stopped: each owns its manifest).
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// The operator's private key file (`PRIVATE+KEY+…`, from `keygen`).
    #[arg(long)]
    pub operator_key: PathBuf,
    #[command(subcommand)]
    pub action: HoldCmd,
}

/// What to do with a hold.
#[derive(Subcommand, Debug)]
pub enum HoldCmd {
    /// Place a legal hold: nothing overlapping FROM..TO may be deleted until released.
    Add {
        /// Names the hold (a case or ticket number); a release gives it.
        #[arg(long)]
        id: String,
        /// First day held (YYYY-MM-DD, UTC).
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day held (YYYY-MM-DD, UTC).
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Release the hold of this id.
    Release {
        /// The hold's id.
        #[arg(long)]
        id: String,
    },
}

/// Reads the operator's private key.
pub fn signer(path: &Path) -> anyhow::Result<NoteSigner> {
    let key =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NoteSigner::parse(&key).with_context(|| format!("operator key {}", path.display()))
}

/// The operator public keys: files given on the command line, then the
/// config's `[retention] operator_keys`.
pub fn verifiers(files: &[PathBuf], configured: &[String]) -> anyhow::Result<Vec<NoteVerifier>> {
    let mut out = Vec::new();
    for path in files {
        let key =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        out.push(
            NoteVerifier::parse(&key)
                .with_context(|| format!("operator key {}", path.display()))?,
        );
    }
    out.extend(NoteVerifier::parse_all(configured).context("[retention] operator_keys")?);
    Ok(out)
}

/// Refuses a signing key that the configured operator keys do not list
/// (when some are configured): its statements would not verify.
pub fn check_listed(signer: &NoteSigner, configured: &[String]) -> anyhow::Result<()> {
    let public = signer.verifier();
    let probe = "audit-collector operator key check\n";
    let line = signer.signature_line(probe);
    let listed = verifiers(&[], configured)?
        .iter()
        .any(|k| k.name() == public.name() && k.signed(probe, &line));
    anyhow::ensure!(
        configured.is_empty() || listed,
        "the operator key {:?} is not among [retention] operator_keys: its statements would not verify",
        public.name()
    );
    Ok(())
}

/// Records a signed hold statement in every collector's manifest.
pub fn hold(args: HoldArgs) -> anyhow::Result<bool> {
    let loc = args.dataset.locate()?;
    let data_dir = dataset::local(&loc, "hold")?;
    audit_collector::coverage::require_local(data_dir)?;
    let signer = signer(&args.operator_key)?;
    let hold = match args.action {
        HoldCmd::Add {
            id,
            from,
            to,
            reason,
        } => {
            anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
            Hold {
                action: HoldAction::Add,
                id,
                from: Some(from),
                to: Some(to),
                reason,
                signature: String::new(),
            }
        }
        HoldCmd::Release { id } => Hold {
            action: HoldAction::Release,
            id,
            from: None,
            to: None,
            reason: String::new(),
            signature: String::new(),
        },
    };
    let ids = audit_collector::retention::record_hold(data_dir, &signer, &hold)?;
    println!(
        "legal hold {} {} in the manifest of {}",
        hold.id,
        match hold.action {
            HoldAction::Add => "placed",
            HoldAction::Release => "released",
        },
        ids.join(", ")
    );
    Ok(true)
}
