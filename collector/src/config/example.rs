use super::*;
use std::collections::BTreeSet;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/deploy/collector.toml"
);

/// Dotted paths of every leaf of a JSON value (`store.seal_rows`).
fn paths(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v.as_object() {
        Some(map) => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                paths(v, &p, out);
            }
        }
        None => {
            out.insert(prefix.to_owned());
        }
    }
}

/// `key = value` lines of the example, active or commented out, with
/// their table: (path, line, whether active).
fn documented(text: &str) -> Vec<(String, String, bool)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = t.to_owned();
            continue;
        }
        let (body, active) = match line.strip_prefix("# ") {
            Some(b) => (b, false),
            None => (line, true),
        };
        let Some((key, _)) = body.split_once(" = ") else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let path = if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        };
        out.push((path, body.to_owned(), active));
    }
    out
}

#[test]
fn example_parses_to_the_defaults_but_data_dir() {
    let cfg = Config::from_file(Path::new(EXAMPLE)).expect("example parses");
    assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/audit-collector"));
    let expected = Config {
        data_dir: cfg.data_dir.clone(),
        ..Config::default()
    };
    assert_eq!(cfg, expected, "a value in the example is not the default");
}

#[test]
fn example_names_every_key_and_its_commented_values_are_valid() {
    let text = std::fs::read_to_string(EXAMPLE).expect("read example");
    let lines = documented(&text);
    let named: BTreeSet<String> = lines.iter().map(|(p, _, _)| p.clone()).collect();
    // Keys without a default serialize as null: they still have a key.
    let defaults = serde_json::to_value(Config::default()).expect("serialize");
    let mut keys = BTreeSet::new();
    paths(&defaults, "", &mut keys);
    let missing: Vec<&String> = keys.difference(&named).collect();
    assert!(missing.is_empty(), "keys not in the example: {missing:?}");
    for (path, line, active) in &lines {
        if *active {
            continue;
        }
        // A commented example value must be one the collector accepts.
        let doc = match path.rsplit_once('.') {
            Some((table, _)) => format!("[{table}]\n{line}\n"),
            None => format!("{line}\n"),
        };
        let parsed: Result<Config, _> = toml::from_str(&doc);
        assert!(parsed.is_ok(), "{path}: {line:?}: {parsed:?}");
    }
}

#[test]
fn listen_addresses_can_be_turned_off_in_the_file() {
    let c: Config =
        toml::from_str("otlp_grpc = \"off\"\nadmin_listen = \"127.0.0.1:9464\"\n").expect("parse");
    assert_eq!(c.otlp_grpc, None);
    assert_eq!(c.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(toml::from_str::<Config>("otlp_http = \"nowhere\"\n").is_err());
}
