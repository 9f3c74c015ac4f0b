//! Exporter settings and the standard OpenTelemetry environment variables.
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (`_LOGS_` variant wins) | `grpc` or `http/protobuf` (default, as the OTel spec says) |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; `/v1/logs` is appended for HTTP |
//! | `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` | full URL, used as-is |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (`_LOGS_` variant wins) | `k=v,k2=v2`, values percent-decoded |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` (`_LOGS_` variant wins) | per-request timeout, ms (default 10000) |
//! | `OTEL_EXPORTER_OTLP_CERTIFICATE` (`_LOGS_` variant wins) | PEM CA file the collector's certificate must chain to (`https://` endpoints) |
//! | `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` (`_LOGS_` variant wins) | PEM client certificate chain, for mutual TLS |
//! | `OTEL_EXPORTER_OTLP_CLIENT_KEY` (`_LOGS_` variant wins) | PEM key of that certificate |
//! | `OTEL_SERVICE_NAME` | `service.name` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `service.instance.id` (and `service.name` when the above is unset) |

use std::time::Duration;

use super::tls::TlsFiles;
use crate::build_error::BuildError;

/// Default gRPC endpoint (the collector's loopback listener).
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";
/// Default HTTP base endpoint; `/v1/logs` is appended.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";
/// Default per-request timeout (the OTel spec's 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`grpc`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`).
    HttpProtobuf,
}

impl Protocol {
    fn parse(var: &str, s: &str) -> Result<Protocol, BuildError> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(BuildError::Env {
                var: var.to_owned(),
                message: format!(
                    "protocol {other:?} is not supported; use \"grpc\" or \"http/protobuf\""
                ),
            }),
        }
    }
}

/// What the environment says, before explicit builder settings are applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct EnvSettings {
    pub protocol: Option<Protocol>,
    /// Full endpoint for the chosen protocol (HTTP: including `/v1/logs`).
    pub endpoint: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub service_name: Option<String>,
    pub service_instance_id: Option<String>,
    pub tls: TlsFiles,
}

impl EnvSettings {
    /// Reads the variables through `get` (the process environment in
    /// production; a map in tests, since mutating the environment races).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<EnvSettings, BuildError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let either = |specific: &str, general: &str| {
            get(specific)
                .map(|v| (specific.to_owned(), v))
                .or_else(|| get(general).map(|v| (general.to_owned(), v)))
        };
        let mut s = EnvSettings::default();
        if let Some((var, v)) = either(
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            s.protocol = Some(Protocol::parse(&var, &v)?);
        }
        let protocol = s.protocol.unwrap_or(Protocol::HttpProtobuf);
        s.endpoint = match (
            get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(logs), _) => Some(logs.trim().to_owned()),
            (None, Some(base)) => Some(match protocol {
                Protocol::Grpc => base.trim().to_owned(),
                Protocol::HttpProtobuf => http_logs_url(&base),
            }),
            (None, None) => None,
        };
        if let Some((var, v)) = either(
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            s.headers = parse_pairs(&var, &v)?;
        }
        if let Some((var, v)) = either(
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            let ms: u64 = v.trim().parse().map_err(|_| BuildError::Env {
                var: var.clone(),
                message: format!("{v:?} is not a whole number of milliseconds"),
            })?;
            s.timeout = Some(Duration::from_millis(ms));
        }
        let file = |specific: &str, general: &str| {
            either(specific, general).map(|(_, v)| std::path::PathBuf::from(v.trim()))
        };
        s.tls = TlsFiles {
            ca: file(
                "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            ),
            client_cert: file(
                "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ),
            client_key: file(
                "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            ),
        };
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in parse_pairs("OTEL_RESOURCE_ATTRIBUTES", &v)? {
                match k.as_str() {
                    audit_schema::wire::RESOURCE_SERVICE_NAME => s.service_name = Some(v),
                    audit_schema::wire::RESOURCE_SERVICE_INSTANCE_ID => {
                        s.service_instance_id = Some(v)
                    }
                    _ => {}
                }
            }
        }
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            s.service_name = Some(v.trim().to_owned());
        }
        Ok(s)
    }
}

/// `base` + `/v1/logs`, unless `base` already ends with it.
pub(crate) fn http_logs_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/logs") {
        base.to_owned()
    } else {
        format!("{base}/v1/logs")
    }
}

/// `k=v,k2=v2` with percent-encoded values (W3C baggage style, as the OTel
/// spec prescribes for headers and resource attributes).
fn parse_pairs(var: &str, s: &str) -> Result<Vec<(String, String)>, BuildError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| BuildError::Env {
                var: var.to_owned(),
                message: format!("{pair:?} is not of the form key=value"),
            })?;
            Ok((percent_decode(k.trim()), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::{EnvSettings, Protocol, TlsFiles};
    use crate::build_error::BuildError;

    fn read(vars: &[(&str, &str)]) -> Result<EnvSettings, BuildError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvSettings::read(|k| map.get(k).cloned())
    }

    #[test]
    fn http_base_endpoint_gets_the_logs_path_and_logs_endpoint_is_used_as_is() {
        let s = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://c:4318/v1/logs"));
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://d:9/custom"),
        ])
        .unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://d:9/custom"));
    }

    #[test]
    fn grpc_endpoint_is_used_as_is() {
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
        ])
        .unwrap();
        assert_eq!(s.protocol, Some(Protocol::Grpc));
        assert_eq!(s.endpoint.as_deref(), Some("http://c:4317"));
    }

    #[test]
    fn headers_timeout_and_resource_are_parsed() {
        let s = read(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-tenant=a%20b, authorization=Bearer%20t",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=fromattr,service.instance.id=i-1",
            ),
            ("OTEL_SERVICE_NAME", "billing"),
        ])
        .unwrap();
        assert_eq!(
            s.headers,
            [
                ("x-tenant".to_owned(), "a b".to_owned()),
                ("authorization".to_owned(), "Bearer t".to_owned())
            ]
        );
        assert_eq!(s.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(s.service_name.as_deref(), Some("billing"));
        assert_eq!(s.service_instance_id.as_deref(), Some("i-1"));
    }

    #[test]
    fn certificate_files_come_from_the_logs_variable_first() {
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/etc/logs-ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/c.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/etc/c.key"),
        ])
        .unwrap();
        assert_eq!(
            s.tls,
            TlsFiles {
                ca: Some("/etc/logs-ca.pem".into()),
                client_cert: Some("/etc/c.pem".into()),
                client_key: Some("/etc/c.key".into()),
            }
        );
    }

    #[test]
    fn bad_values_are_build_errors_naming_the_variable() {
        let err = read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
        let err = read(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]).unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_TIMEOUT"),
            "{err}"
        );
        assert!(read(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).is_err());
    }
}
