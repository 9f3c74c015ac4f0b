//! A strict reader of Prometheus' text exposition format (0.0.4), to check
//! what `/metrics` serves line by line.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `a="b",c="d"}` (after the `{`): the labels and what follows the `}`.
fn label_set(body: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (lname, r) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !is_name(lname, false) {
            return Err(format!("bad label name {lname:?}"));
        }
        let mut v = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().ok_or("unterminated label value")?;
            match c {
                '\\' => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => v.push('\n'),
                    c @ ('\\' | '"') => v.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                '"' => break i + 1,
                '\n' => return Err("newline in label value".into()),
                c => v.push(c),
            }
        };
        if labels.insert(lname.to_owned(), v).is_some() {
            return Err(format!("label {lname} twice"));
        }
        rest = &r[end..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// `name{a="b",c="d"} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return Err("no value".into()),
    };
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(body) => label_set(body)?,
        None => (BTreeMap::new(), rest),
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    let mut parts = rest.split(' ');
    let v = value(parts.next().ok_or("no value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: v,
    })
}

/// Parses a whole exposition, checking that every sample belongs to a
/// family declared by `# HELP` and `# TYPE` before it, that a family's
/// samples are contiguous, that counters end in `_total`, and that
/// histograms have cumulative `le` buckets ending in `+Inf` = `_count`.
/// Returns the samples, or the first line at fault.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut out = Vec::new();
    if !text.ends_with('\n') {
        return Err("exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            if !is_name(name, true) || helps.insert(name.into(), help.into()).is_some() {
                return Err(at("bad or repeated HELP".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if !helps.contains_key(name) {
                return Err(at("TYPE before its HELP".into()));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("counter name without _total".into()));
            }
            if types.insert(name.into(), kind.into()).is_some() {
                return Err(at("repeated TYPE".into()));
            }
            if let Some(c) = current.replace(name.to_owned()) {
                finished.push(c);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            return Err(at("blank line".into()));
        }
        let s = sample(line).map_err(at)?;
        let family = current
            .clone()
            .ok_or_else(|| at("sample before any TYPE".into()))?;
        let kind = &types[&family];
        let belongs = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| s.name == format!("{family}{suffix}")),
            _ => s.name == family,
        };
        if !belongs || finished.contains(&family) {
            return Err(at(format!("sample outside its family {family}")));
        }
        if kind == "histogram" && s.name.ends_with("_bucket") && !s.labels.contains_key("le") {
            return Err(at("bucket without le".into()));
        }
        out.push(s);
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let buckets: Vec<&Sample> = out
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
            .collect();
        let bounds: Vec<f64> = buckets
            .iter()
            .map(|s| value(&s.labels["le"]))
            .collect::<Result<_, _>>()?;
        if bounds.last() != Some(&f64::INFINITY) || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("{family}: le bounds must rise and end with +Inf"));
        }
        if buckets.windows(2).any(|w| w[0].value > w[1].value) {
            return Err(format!("{family}: buckets not cumulative"));
        }
        let count = out.iter().find(|s| s.name == format!("{family}_count"));
        if count.map(|c| c.value) != buckets.last().map(|b| b.value) {
            return Err(format!("{family}: +Inf bucket differs from _count"));
        }
    }
    Ok(out)
}

/// The value of the sample `name` with exactly `labels`, if present.
pub fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}
