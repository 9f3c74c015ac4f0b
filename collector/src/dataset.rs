//! Which dataset a command works on, named the same way for every command
//! that reads one (`serve` too, which writes it): `--data-dir`,
//! `--store-url`, `--config`, each with its `AUDIT_COLLECTOR_*` variable,
//! layered over the config file as every setting is ([`Config::load`]).
//!
//! ```
//! use audit_collector::dataset::DatasetArgs;
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     dataset: DatasetArgs,
//! }
//! let dir = tempfile::tempdir()?;
//! let cli = Cli::try_parse_from(["x", "--data-dir", dir.path().to_str().unwrap()])?;
//! let loc = cli.dataset.locate()?;
//! assert_eq!(loc.local_dir(), Some(dir.path()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::store::{self, Location, StoreError};

/// The dataset flags. A bucket's credentials, region and endpoint come
/// from the standard `AWS_*` variables (`AWS_ENDPOINT_URL` and
/// `AWS_ALLOW_HTTP=true` for an S3-compatible server on loopback), or from
/// the config's `[store.remote]`.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct DatasetArgs {
    /// Data directory [default: ./audit-data]; commands that read the dataset also take s3://bucket/prefix here.
    #[arg(
        long = "data-dir",
        visible_alias = "data",
        env = "AUDIT_COLLECTOR_DATA_DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Object store of the sealed files and manifests, e.g. s3://bucket/prefix (the data dir keeps the WAL); commands that read the dataset read it [default: the data dir].
    #[arg(long, env = "AUDIT_COLLECTOR_STORE_URL")]
    #[serde(rename = "store.url")]
    pub store_url: Option<String>,
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "AUDIT_COLLECTOR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// Why a command cannot use the dataset it was given.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The settings are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory is not there.
    #[error(
        "data dir {} does not exist (pass --data-dir DIR, or --store-url s3://BUCKET/PREFIX)",
        .0.display()
    )]
    MissingDataDir(PathBuf),
    /// The object store URL is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command works on a local data dir only.
    #[error(
        "{what} works on a data dir, not on the object store {url} \
         (run it where the collector's data dir is)"
    )]
    NotLocal {
        /// The command or flag.
        what: &'static str,
        /// The store.
        url: String,
    },
}

impl DatasetArgs {
    /// The settings: defaults, `--config`'s file, then these flags.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), self)
    }

    /// The dataset of these flags (see [`locate`]).
    pub fn locate(&self) -> Result<Location, DatasetError> {
        locate(&self.config()?)
    }
}

/// Where `cfg`'s dataset is: the store URL when one is set, else the data
/// dir, which must exist (or, given an object store URL, that store).
pub fn locate(cfg: &Config) -> Result<Location, DatasetError> {
    let given = match (&cfg.store.url, cfg.data_dir.to_str()) {
        (Some(url), _) => url.as_str(),
        (None, Some(dir)) => dir,
        (None, None) => return Ok(Location::local(existing(&cfg.data_dir)?)?),
    };
    if store::is_remote(given) {
        return Ok(Location::parse(given, &cfg.store.remote)?);
    }
    let dir = Path::new(given.strip_prefix("file://").unwrap_or(given));
    Ok(Location::local(existing(dir)?)?)
}

/// The local directory of a dataset, for `what`, which works on a data dir only.
pub fn local<'a>(loc: &'a Location, what: &'static str) -> Result<&'a Path, DatasetError> {
    loc.local_dir().ok_or_else(|| DatasetError::NotLocal {
        what,
        url: loc.url.clone(),
    })
}

/// `dir`, if it is a directory.
pub fn existing(dir: &Path) -> Result<&Path, DatasetError> {
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(DatasetError::MissingDataDir(dir.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dataset: DatasetArgs,
    }

    fn args(a: &[&str]) -> DatasetArgs {
        Cli::try_parse_from(std::iter::once("x").chain(a.iter().copied()))
            .expect("flags parse")
            .dataset
    }

    #[test]
    fn a_directory_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let loc = args(&["--data-dir", d]).locate().expect("locate");
        assert_eq!(loc.local_dir(), Some(dir.path()));
        let loc = args(&["--data", &format!("file://{d}")])
            .locate()
            .expect("file://");
        assert!(!loc.is_remote());
        let gone = dir.path().join("gone");
        let err = args(&["--data-dir", gone.to_str().unwrap()])
            .locate()
            .unwrap_err();
        assert!(matches!(err, DatasetError::MissingDataDir(p) if p == gone));
    }

    #[test]
    fn the_store_url_wins_over_the_data_dir_and_the_config_file_is_a_layer() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let loc = args(&["--data-dir", d, "--store-url", "s3://b/p"])
            .locate()
            .expect("locate");
        assert_eq!((loc.is_remote(), loc.url.as_str()), (true, "s3://b/p"));
        assert!(matches!(
            local(&loc, "retention"),
            Err(DatasetError::NotLocal {
                what: "retention",
                ..
            })
        ));
        let loc = args(&["--data", "s3://b/q"]).locate().expect("url as data");
        assert_eq!(loc.url, "s3://b/q");

        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!("data_dir = {d:?}\n[store]\nurl = \"s3://b/c\"\n"),
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let cfg = args(&["--config", f]).config().expect("config");
        assert_eq!(cfg.data_dir, dir.path());
        assert_eq!(
            args(&["--config", f]).locate().expect("locate").url,
            "s3://b/c"
        );
        let loc = args(&["--config", f, "--store-url", "s3://b/flag"]).locate();
        assert_eq!(loc.expect("locate").url, "s3://b/flag");
    }
}
