//! Stacking the layers: the file's keys over the defaults, the flags' over
//! the file's.
//!
//! A command's flags are a clap struct that also derives `Serialize`, each
//! field renamed to the dotted key it sets (`#[serde(rename =
//! "store.seal_rows")]`). Serialized to a TOML table, unset flags (`None`)
//! drop out; what is left is laid over the file's table key by key, and
//! the result is deserialized into [`Config`], whose `#[serde(default)]`
//! supplies every key neither layer set. clap has already filled each flag
//! from its `AUDIT_COLLECTOR_*` variable when the flag itself is absent, so
//! the environment sits between the file and the flags.

use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

use super::{Config, ConfigError};

impl Config {
    /// Defaults, then the TOML `file` (if any), then `flags` (see the
    /// module docs for the shape they take).
    ///
    /// ```
    /// use audit_collector::config::Config;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Flags {
    ///     #[serde(rename = "store.seal_rows")]
    ///     seal_rows: Option<usize>,
    ///     data_dir: Option<std::path::PathBuf>,
    /// }
    /// let flags = Flags { seal_rows: Some(10), data_dir: None };
    /// let cfg = Config::load(None, &flags)?;
    /// assert_eq!(cfg.store.seal_rows, 10);
    /// assert_eq!(cfg.data_dir, Config::default().data_dir);
    /// # Ok::<(), audit_collector::config::ConfigError>(())
    /// ```
    pub fn load(file: Option<&Path>, flags: &impl Serialize) -> Result<Config, ConfigError> {
        let mut tree = match file {
            Some(path) => parse_file(path)?.1,
            None => Table::new(),
        };
        let invalid = |e: &dyn std::fmt::Display| ConfigError::Invalid(format!("flags: {e}"));
        let flags = Table::try_from(flags).map_err(|e| invalid(&e))?;
        for (path, value) in flags {
            let mut table = &mut tree;
            let (parents, key) = path.rsplit_once('.').unwrap_or(("", &path));
            for part in parents.split('.').filter(|p| !p.is_empty()) {
                let slot = table
                    .entry(part)
                    .or_insert_with(|| Value::Table(Table::new()));
                table = match slot {
                    Value::Table(t) => t,
                    _ => return Err(invalid(&format!("{path}: `{part}` is not a table"))),
                };
            }
            table.insert(key.to_owned(), value);
        }
        tree.try_into().map_err(|e| invalid(&e))
    }
}

/// The file as settings (its errors point at the line) and as a table to
/// lay the flags over.
pub(super) fn parse_file(path: &Path) -> Result<(Config, Table), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_err = |e: toml::de::Error| ConfigError::Parse {
        path: PathBuf::from(path),
        message: e.to_string(),
    };
    let cfg = toml::from_str(&text).map_err(parse_err)?;
    let table = toml::from_str(&text).map_err(parse_err)?;
    Ok((cfg, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Flags {
        data_dir: Option<PathBuf>,
        #[serde(rename = "store.seal_rows")]
        seal_rows: Option<usize>,
        #[serde(rename = "rules.limits.max_depth")]
        max_depth: Option<usize>,
        #[serde(rename = "otlp_grpc")]
        grpc: Option<String>,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_the_defaults() {
        let f = file("data_dir = \"/from/file\"\n[store]\nseal_rows = 7\nqueue_depth = 3\n");
        let flags = Flags {
            seal_rows: Some(9),
            max_depth: Some(2),
            grpc: Some("off".into()),
            ..Flags::default()
        };
        let cfg = Config::load(Some(f.path()), &flags).expect("load");
        assert_eq!(cfg.data_dir, PathBuf::from("/from/file"));
        assert_eq!(cfg.store.seal_rows, 9, "flag over file");
        assert_eq!(cfg.store.queue_depth, 3, "file over default");
        assert_eq!(cfg.rules.limits.max_depth, 2, "a table the file lacks");
        assert_eq!(cfg.otlp_grpc, None);
        let d = Config::default();
        assert_eq!(cfg.store.max_buffered_rows, d.store.max_buffered_rows);
        assert_eq!(Config::load(None, &Flags::default()).expect("load"), d);
    }

    #[test]
    fn a_bad_file_is_reported_with_its_path_and_a_bad_flag_value_as_a_flag() {
        let f = file("[store]\nseal_rowz = 1\n");
        let err = Config::load(Some(f.path()), &Flags::default()).unwrap_err();
        assert!(matches!(&err, ConfigError::Parse { path, .. } if path == f.path()));
        assert!(err.to_string().contains("seal_rowz"), "{err}");
        let flags = Flags {
            grpc: Some("nowhere".into()),
            ..Flags::default()
        };
        let err = Config::load(None, &flags).unwrap_err().to_string();
        assert!(err.starts_with("invalid setting: flags:"), "{err}");
        assert!(err.contains("nowhere"), "{err}");
    }
}
