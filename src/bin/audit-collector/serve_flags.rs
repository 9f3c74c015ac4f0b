//! `serve`'s flags (part of the binary, declared by `main.rs`). Each names
//! the config key it sets (`#[serde(rename = …)]`; the same name when
//! there is none) and has an `AUDIT_COLLECTOR_*` variable; [`config`]
//! lays them over the config file with [`Config::load`]: a flag, else its
//! variable, wins over the file's key, which wins over the default.

use std::path::PathBuf;

use audit_collector::config::{parse_listen, Config};
use audit_collector::dataset::DatasetArgs;
use clap::Args;
use serde::Serialize;

use crate::limit_flags::LimitFlags;

#[derive(Args, Debug, Serialize)]
pub struct ServeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    dataset: DatasetArgs,
    /// OTLP/gRPC listen address, or `off` [default: 127.0.0.1:4317].
    #[arg(long, env = "AUDIT_COLLECTOR_OTLP_GRPC", value_parser = listen)]
    otlp_grpc: Option<String>,
    /// OTLP/HTTP listen address (also /healthz, /readyz, /metrics unless --admin-listen), or `off` [default: 127.0.0.1:4318].
    #[arg(long, env = "AUDIT_COLLECTOR_OTLP_HTTP", value_parser = listen)]
    otlp_http: Option<String>,
    /// Separate listen address for /healthz, /readyz and /metrics (then not on the OTLP/HTTP port), or `off` [default: off].
    #[arg(long, env = "AUDIT_COLLECTOR_ADMIN_LISTEN", value_parser = listen)]
    admin_listen: Option<String>,
    /// Collector id (file names, manifest) [default: generated once, kept in DIR/collector_id].
    #[arg(long, env = "AUDIT_COLLECTOR_ID")]
    collector_id: Option<String>,
    /// Seal buffered rows into Parquet at least this often, seconds [default: 60].
    #[arg(long, env = "AUDIT_COLLECTOR_SEAL_INTERVAL_SECS")]
    #[serde(rename = "store.seal_interval_secs")]
    seal_interval_secs: Option<u64>,
    /// Append a digest entry to the manifest this often, seconds, even when idle [default: 3600].
    #[arg(long, env = "AUDIT_COLLECTOR_DIGEST_INTERVAL_SECS")]
    #[serde(rename = "store.digest_interval_secs")]
    digest_interval_secs: Option<u64>,
    /// Directory outside the data dir where a signed checkpoint of the manifest head goes at every digest.
    #[arg(long, env = "AUDIT_COLLECTOR_WITNESS_DIR")]
    #[serde(rename = "store.witness_dir")]
    witness_dir: Option<PathBuf>,
    /// The collector's private key for witness checkpoints; unset, one is generated once in DIR/keys/.
    #[arg(long, env = "AUDIT_COLLECTOR_SIGNING_KEY")]
    #[serde(rename = "store.signing_key")]
    signing_key: Option<PathBuf>,
    /// Seal when this many rows are buffered [default: 100000].
    #[arg(long, env = "AUDIT_COLLECTOR_SEAL_ROWS")]
    #[serde(rename = "store.seal_rows")]
    seal_rows: Option<usize>,
    /// Seconds in-flight requests get to finish at shutdown [default: 10].
    #[arg(long, env = "AUDIT_COLLECTOR_SHUTDOWN_TIMEOUT_SECS")]
    shutdown_timeout_secs: Option<u64>,
    /// File of `name:token` client tokens; when set (or --tokens), OTLP requests need `authorization: Bearer <token>`.
    #[arg(long, env = "AUDIT_COLLECTOR_TOKENS_FILE")]
    #[serde(rename = "auth.tokens_file")]
    tokens_file: Option<PathBuf>,
    /// Client tokens inline, `name:token,name:token` (prefer the environment variable to the flag).
    #[arg(long, env = "AUDIT_COLLECTOR_TOKENS", hide_env_values = true)]
    #[serde(rename = "auth.tokens")]
    tokens: Option<String>,
    /// Seconds between checks of --tokens-file for changes (also reloaded on SIGHUP; inline tokens never are); 0: only on SIGHUP [default: 60].
    #[arg(long, env = "AUDIT_COLLECTOR_TOKENS_RELOAD_INTERVAL_SECS")]
    #[serde(rename = "auth.reload_interval_secs")]
    tokens_reload_interval_secs: Option<u64>,
    /// PEM certificate chain; turns on TLS on both OTLP listeners (needs --tls-key).
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_CERT")]
    #[serde(rename = "tls.cert_file")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_KEY")]
    #[serde(rename = "tls.key_file")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s); clients must present a certificate it issued (mutual TLS).
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_CLIENT_CA")]
    #[serde(rename = "tls.client_ca_file")]
    tls_client_ca: Option<PathBuf>,
    /// PEM CRL(s) of the client CA: a revoked client certificate fails the handshake; repeatable (the variable: comma-separated), replaces the config's.
    #[arg(
        long = "tls-client-crl",
        env = "AUDIT_COLLECTOR_TLS_CLIENT_CRL",
        value_delimiter = ','
    )]
    #[serde(rename = "tls.client_crl_files", skip_serializing_if = "Vec::is_empty")]
    tls_client_crl: Vec<PathBuf>,
    /// Seconds between checks of the TLS files for changes (also reloaded on SIGHUP); 0: only on SIGHUP [default: 60].
    #[arg(long, env = "AUDIT_COLLECTOR_TLS_RELOAD_INTERVAL_SECS")]
    #[serde(rename = "tls.reload_interval_secs")]
    tls_reload_interval_secs: Option<u64>,
    /// JWK Set of the Ed25519 keys consent tokens are signed with; when set, a dangerous action needs a consent token that verifies and matches it.
    #[arg(long, env = "AUDIT_COLLECTOR_CONSENT_KEYS_FILE")]
    #[serde(rename = "consent.keys_file")]
    consent_keys_file: Option<PathBuf>,
    /// Action pattern that requires consent (`*` wildcard); repeatable (the variable: comma-separated), adds to the config's.
    #[arg(
        long = "dangerous-action",
        env = "AUDIT_COLLECTOR_DANGEROUS_ACTIONS",
        value_delimiter = ','
    )]
    #[serde(skip)] // added to the file's list, not replacing it: see `config`
    dangerous_actions: Vec<String>,
    #[command(flatten)]
    #[serde(flatten)]
    limits: LimitFlags,
}

/// A listen address flag is checked as it is parsed, so that the error
/// names the flag; the config parses the same text again.
fn listen(s: &str) -> Result<String, String> {
    parse_listen(s).map(|_| s.to_owned())
}

pub fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(args.dataset.config.as_deref(), args)?;
    cfg.rules
        .dangerous_actions
        .extend(args.dangerous_actions.iter().cloned());
    Ok(cfg)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// The settings `serve` runs with, given these flags.
    pub(crate) fn applied(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .expect("flags parse");
        config(&cli.serve).expect("flags apply")
    }

    #[test]
    fn every_flag_sets_its_config_key() {
        let cfg = applied(&[
            "--data-dir=/d",
            "--store-url=s3://b/p",
            "--otlp-grpc=off",
            "--otlp-http=127.0.0.1:1",
            "--admin-listen=127.0.0.1:2",
            "--collector-id=c1",
            "--seal-interval-secs=3",
            "--digest-interval-secs=4",
            "--seal-rows=5",
            "--shutdown-timeout-secs=6",
            "--tokens-file=/t",
            "--tokens=a:b",
            "--tokens-reload-interval-secs=7",
            "--tls-cert=/c",
            "--tls-key=/k",
            "--tls-client-ca=/ca",
            "--tls-client-crl=/r1",
            "--tls-client-crl=/r2",
            "--tls-reload-interval-secs=8",
            "--consent-keys-file=/jwks",
            "--dangerous-action=x.*",
            "--max-depth=3",
        ]);
        let mut want = Config {
            data_dir: "/d".into(),
            otlp_grpc: None,
            otlp_http: Some("127.0.0.1:1".parse().unwrap()),
            admin_listen: Some("127.0.0.1:2".parse().unwrap()),
            collector_id: Some("c1".into()),
            shutdown_timeout_secs: 6,
            ..Config::default()
        };
        want.store.url = Some("s3://b/p".into());
        want.store.seal_interval_secs = 3;
        want.store.digest_interval_secs = 4;
        want.store.seal_rows = 5;
        want.auth.tokens_file = Some("/t".into());
        want.auth.tokens = Some("a:b".into());
        want.auth.reload_interval_secs = 7;
        want.tls.cert_file = Some("/c".into());
        want.tls.key_file = Some("/k".into());
        want.tls.client_ca_file = Some("/ca".into());
        want.tls.client_crl_files = vec!["/r1".into(), "/r2".into()];
        want.tls.reload_interval_secs = 8;
        want.consent.keys_file = Some("/jwks".into());
        want.rules.dangerous_actions = vec!["x.*".into()];
        want.rules.limits.max_depth = 3;
        assert_eq!(cfg, want);
    }

    #[test]
    fn flags_override_the_file_and_dangerous_actions_add_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\nshutdown_timeout_secs = 2\n\
             [rules]\ndangerous_actions = [\"a.*\"]\n\
             [tls]\nclient_crl_files = [\"/f\"]\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let cfg = applied(&["--config", f, "--shutdown-timeout-secs=9"]);
        assert_eq!(cfg.data_dir, std::path::Path::new("/from/file"));
        assert_eq!(cfg.shutdown_timeout_secs, 9);
        assert_eq!(cfg.tls.client_crl_files, [PathBuf::from("/f")]);
        let cfg = applied(&[
            "--config",
            f,
            "--dangerous-action=b.*",
            "--tls-client-crl=/g",
        ]);
        assert_eq!(cfg.rules.dangerous_actions, ["a.*", "b.*"]);
        assert_eq!(cfg.tls.client_crl_files, [PathBuf::from("/g")]);
    }

    #[test]
    fn a_bad_listen_address_is_refused_naming_the_flag() {
        let err = Cli::try_parse_from(["serve", "--otlp-grpc", "nowhere"])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("--otlp-grpc") && err.contains("HOST:PORT"),
            "{err}"
        );
    }

    /// The `[default: …]` the help states, where it is a value, is the
    /// config's; every limit states one.
    #[test]
    fn the_defaults_the_help_states_are_the_configs() {
        let help = Cli::command().render_long_help().to_string();
        let (mut seen, mut limits) = (0, 0);
        for arg in Cli::command().get_arguments() {
            let long = arg.get_long().expect("long flag");
            let doc = arg.get_help().expect("help").to_string();
            let is_limit = arg.get_help_heading() == Some("Limits");
            let Some((_, stated)) = doc.split_once("[default: ") else {
                assert!(!is_limit, "--{long} states no default: {help}");
                continue;
            };
            let stated = stated.split([']', ',']).next().unwrap_or_default();
            if ["collector-id", "store-url"].contains(&long) {
                continue; // not a value: "generated once", "the data dir"
            }
            let flag = format!("--{long}={stated}");
            assert_eq!(applied(&[&flag]), Config::default(), "{flag}");
            seen += 1;
            limits += usize::from(is_limit);
        }
        assert_eq!((seen, limits), (24, 14));
    }
}
