//! Hostile input over both protocols against the real binary: every case
//! gets its exact status (HTTP code, gRPC code, `partial_success` counts),
//! a valid record sent right after it is stored, and nothing a request
//! says ends up in a file path.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use audit_collector::partition::read_violations;
use audit_schema::otlp::encode_action;
use audit_schema::AuditRecord;
use common::wire::{action, channel, grpc_raw, http_post, request};
use common::{stored_ids, Collector};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::Code;

/// `max_request_bytes` of the collector under test: small, so that bombs
/// and oversized bodies stay cheap to build.
const MAX: usize = 64 * 1024;
const PROTOBUF: &str = "application/x-protobuf";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    Http,
    Grpc,
}

/// How the body travels.
#[derive(Clone, Copy, Debug)]
enum Enc {
    Plain,
    Gzip,
    Zstd,
    /// Declared as an encoding the collector does not know, sent plain.
    Unknown,
    /// Declared gzip, sent as is (HTTP only: gRPC flags compression per message).
    DeclaredGzip,
}

/// What the collector must answer.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// 200 / OK with this many records refused, the message naming this.
    Stored { refused: i64, says: &'static str },
    /// A whole-request error. `None`: the case does not apply to gRPC.
    Error { http: u16, grpc: Option<Code> },
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    enc: Enc,
    want: Want,
    /// Event ids in the body that must be stored (besides the follow-up).
    stored: Vec<String>,
}

fn lr(r: &AuditRecord) -> LogRecord {
    encode_action(r)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn body(records: Vec<LogRecord>) -> Vec<u8> {
    request(records).encode_to_vec()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// A record whose owner id holds `n` zero bytes (valid UTF-8, compresses to nothing).
fn big(id: &str, n: usize) -> Vec<u8> {
    let mut r = action(id);
    r.owner_id = "\0".repeat(n);
    body(vec![lr(&r)])
}

fn nested(levels: usize) -> AnyValue {
    let mut v = AnyValue {
        value: Some(Value::StringValue("x".into())),
    };
    for _ in 0..levels {
        v = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    v
}

const TRAVERSALS: &[&str] = &[
    "../../../../tmp/escaped",
    "..\\..\\escaped",
    "/etc/passwd",
    "a/../../b",
    "%2e%2e%2fescaped",
    "./.",
    "..",
];

/// The cases, with event ids made unique per protocol `p`.
fn cases(p: Proto) -> Vec<Case> {
    let id = |case: &str, n: u32| format!("{p:?}-{case}-{n}");
    let ok = |case: &str, n: u32| lr(&action(&id(case, n)));
    let valid = body(vec![ok("valid", 0)]);
    let mut invalid_utf8 = valid.clone();
    let at = invalid_utf8
        .windows(9)
        .position(|w| w == b"usr_alice")
        .expect("owner in body");
    invalid_utf8[at + 3] = 0xff;
    let now = chrono::Utc::now()
        .timestamp_nanos_opt()
        .expect("now in range");
    let timed = |n: u32, t: i64| {
        let mut r = action(&id("time", n));
        r.start_time_ns = t;
        r.end_time_ns = None;
        lr(&r)
    };
    let mut many = ok("many", 1);
    many.attributes
        .extend((0..130).map(|i| kv(&format!("k{i}"), Value::IntValue(i))));
    let mut long_value = action(&id("long", 1));
    long_value.target = Some("t".repeat(8193));
    let mut long_key = ok("long", 2);
    long_key
        .attributes
        .push(kv(&"k".repeat(257), Value::BoolValue(true)));
    let mut deep = ok("deep", 1);
    deep.attributes.push(KeyValue {
        key: "deep".into(),
        value: Some(nested(9)),
        ..KeyValue::default()
    });
    let mut shallow = ok("deep", 2);
    shallow.attributes.push(KeyValue {
        key: "shallow".into(),
        value: Some(nested(8)),
        ..KeyValue::default()
    });
    let traversal = |n: usize| {
        let t = TRAVERSALS[n % TRAVERSALS.len()];
        let mut r = action(&format!("{t}/{p:?}/{n}"));
        for s in [
            &mut r.owner_id,
            &mut r.action,
            &mut r.service_name,
            &mut r.outcome,
        ] {
            *s = t.into();
        }
        r.outcome = "ok".into();
        for s in [
            &mut r.agent_id,
            &mut r.agent_name,
            &mut r.agent_credential_id,
            &mut r.initiator_id,
            &mut r.task_id,
            &mut r.target,
            &mut r.inputs_sha256,
            &mut r.service_instance_id,
        ] {
            *s = Some(t.into());
        }
        r.scopes = vec![t.into()];
        r.attributes.insert(t.into(), t.into());
        r
    };
    let traversals: Vec<AuditRecord> = (0..TRAVERSALS.len()).map(traversal).collect();
    let mut traversal_req = request(traversals.iter().map(lr).collect());
    // The resource is where a service name travels; it names no file either.
    for kv in &mut traversal_req.resource_logs[0]
        .resource
        .as_mut()
        .expect("resource")
        .attributes
    {
        kv.value = Some(AnyValue {
            value: Some(Value::StringValue(TRAVERSALS[0].into())),
        });
    }
    let bad = |http, grpc| Want::Error {
        http,
        grpc: Some(grpc),
    };
    let case = |name, body, enc, want| Case {
        name,
        body,
        content_type: PROTOBUF,
        enc,
        want,
        stored: vec![],
    };
    vec![
        case(
            "garbage",
            b"\xff\x00garbage\x07".repeat(9),
            Enc::Plain,
            bad(400, Code::InvalidArgument),
        ),
        case(
            "truncated",
            valid[..valid.len() - 7].to_vec(),
            Enc::Plain,
            bad(400, Code::InvalidArgument),
        ),
        case(
            "invalid utf-8",
            invalid_utf8,
            Enc::Plain,
            bad(400, Code::InvalidArgument),
        ),
        Case {
            content_type: "text/plain",
            ..case(
                "wrong content type",
                valid.clone(),
                Enc::Plain,
                Want::Error {
                    http: 415,
                    grpc: None,
                },
            )
        },
        Case {
            content_type: "application/json",
            ..case(
                "bad json",
                b"{\"resourceLogs\": [".to_vec(),
                Enc::Plain,
                Want::Error {
                    http: 400,
                    grpc: None,
                },
            )
        },
        case(
            "unknown encoding",
            valid.clone(),
            Enc::Unknown,
            bad(415, Code::Unimplemented),
        ),
        case(
            "oversized",
            big(&id("big", 0), MAX + 1),
            Enc::Plain,
            bad(413, Code::ResourceExhausted),
        ),
        case(
            "gzip bomb",
            big(&id("big", 1), 64 * MAX),
            Enc::Gzip,
            bad(413, Code::ResourceExhausted),
        ),
        case(
            "zstd bomb",
            big(&id("big", 2), 64 * MAX),
            Enc::Zstd,
            bad(413, Code::ResourceExhausted),
        ),
        case(
            "corrupt gzip",
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            Enc::DeclaredGzip,
            Want::Error {
                http: 400,
                grpc: None,
            },
        ),
        Case {
            stored: vec![id("gzip", 0)],
            ..case(
                "gzip",
                body(vec![ok("gzip", 0)]),
                Enc::Gzip,
                Want::Stored {
                    refused: 0,
                    says: "",
                },
            )
        },
        Case {
            stored: vec![id("zstd", 0)],
            ..case(
                "zstd",
                body(vec![ok("zstd", 0)]),
                Enc::Zstd,
                Want::Stored {
                    refused: 0,
                    says: "",
                },
            )
        },
        Case {
            stored: vec![id("time", 0), id("time", 4)],
            ..case(
                "absurd timestamps",
                body(vec![
                    timed(0, now),
                    timed(1, 1),
                    timed(2, 946_684_799_000_000_000),
                    timed(3, now + 2 * 86_400 * 1_000_000_000),
                    timed(4, now + 3_600 * 1_000_000_000),
                ]),
                Enc::Plain,
                Want::Stored {
                    refused: 3,
                    says: "ns since the epoch; accepted",
                },
            )
        },
        Case {
            stored: vec![id("many", 0)],
            ..case(
                "too many attributes",
                body(vec![ok("many", 0), many]),
                Enc::Plain,
                Want::Stored {
                    refused: 1,
                    says: "attributes; at most 128",
                },
            )
        },
        Case {
            stored: vec![id("long", 0)],
            ..case(
                "too long",
                body(vec![ok("long", 0), lr(&long_value), long_key]),
                Enc::Plain,
                Want::Stored {
                    refused: 2,
                    says: "bytes; at most",
                },
            )
        },
        Case {
            stored: vec![id("deep", 2)],
            ..case(
                "deeply nested",
                body(vec![deep, shallow]),
                Enc::Plain,
                Want::Stored {
                    refused: 1,
                    says: "deeper than 8 levels",
                },
            )
        },
        Case {
            stored: traversals.iter().map(|r| r.event_id.clone()).collect(),
            ..case(
                "path-like values",
                traversal_req.encode_to_vec(),
                Enc::Plain,
                Want::Stored {
                    refused: 0,
                    says: "",
                },
            )
        },
    ]
}

/// Sends one case over `p`; returns (HTTP status or gRPC code, the OTLP response if any).
async fn send(
    p: Proto,
    c: &Collector,
    http: &reqwest::Client,
    case: &Case,
) -> (
    Result<u16, Code>,
    Option<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse>,
) {
    match p {
        Proto::Http => {
            let (bytes, enc) = match case.enc {
                Enc::Plain => (case.body.clone(), None),
                Enc::Gzip => (gzip(&case.body), Some("gzip")),
                Enc::Zstd => (
                    zstd::encode_all(&case.body[..], 3).expect("zstd"),
                    Some("zstd"),
                ),
                Enc::Unknown => (case.body.clone(), Some("br")),
                Enc::DeclaredGzip => (case.body.clone(), Some("gzip")),
            };
            let a = http_post(http, c.http, bytes, case.content_type, enc).await;
            if a.status != 200 {
                eprintln!(
                    "{}: HTTP {} {}",
                    case.name,
                    a.status,
                    String::from_utf8_lossy(&a.body)
                );
            }
            let resp = (a.status == 200).then(|| a.export());
            (Ok(a.status), resp)
        }
        Proto::Grpc => {
            let (compression, meta): (_, &[(&str, &str)]) = match case.enc {
                Enc::Plain => (None, &[]),
                Enc::Gzip => (Some(CompressionEncoding::Gzip), &[]),
                Enc::Zstd => (Some(CompressionEncoding::Zstd), &[]),
                Enc::Unknown => (None, &[("grpc-encoding", "br")]),
                Enc::DeclaredGzip => (None, &[("grpc-encoding", "gzip")]),
            };
            match grpc_raw(channel(c.grpc).await, case.body.clone(), compression, meta).await {
                Ok(r) => (Err(Code::Ok), Some(r)),
                Err(s) => (Err(s.code()), None),
            }
        }
    }
}

/// Relative paths (as `/`-joined components) of every file under `root`.
fn files(root: &Path) -> Vec<String> {
    audit_collector::fsio::walk(root)
        .into_iter()
        .map(|p| {
            p.strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `rel` is a file of the documented data-dir layout for collector `cid`.
fn in_layout(rel: &str, cid: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let part_file = |name: &str| {
        name.strip_prefix(&format!("part-{cid}-"))
            .and_then(|s| s.strip_suffix(".parquet"))
            .is_some_and(|seq| digits(seq, 20))
    };
    match parts[..] {
        ["collector_id"] => true,
        ["manifest", m] => m == format!("{cid}.jsonl") || m == format!("{cid}.lock"),
        ["wal", c, seg] => {
            c == cid
                && seg
                    .strip_prefix("wal-")
                    .and_then(|s| s.strip_suffix(".log"))
                    .is_some_and(|seq| digits(seq, 20))
        }
        ["audit" | "violations", date, hour, name] => {
            let d = date.strip_prefix("date=").unwrap_or("");
            d.len() == 10
                && digits(&d[..4], 4)
                && digits(&d[5..7], 2)
                && digits(&d[8..], 2)
                && hour.strip_prefix("hour=").is_some_and(|h| digits(h, 2))
                && part_file(name)
        }
        _ => false,
    }
}

#[test]
fn hostile_input_gets_exact_answers_and_the_collector_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, format!("max_request_bytes = {MAX}\n")).expect("config");
    let data = dir.path().join("data");
    let c = Collector::start(&data, &["--config", config.to_str().expect("utf-8")]);
    let http = reqwest::Client::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut want_stored = BTreeSet::new();
    let mut refused_actions = 0;
    rt.block_on(async {
        for p in [Proto::Http, Proto::Grpc] {
            for (n, case) in cases(p).into_iter().enumerate() {
                let what = format!("{p:?} {}", case.name);
                if let (Want::Error { grpc: None, .. }, Proto::Grpc) = (case.want, p) {
                    continue;
                }
                let (got, resp) = send(p, &c, &http, &case).await;
                match (case.want, p) {
                    (Want::Error { http: code, .. }, Proto::Http) => {
                        assert_eq!(got, Ok(code), "{what}")
                    }
                    (Want::Error { grpc, .. }, Proto::Grpc) => {
                        assert_eq!(got.err(), grpc, "{what}")
                    }
                    (Want::Stored { refused, says }, _) => {
                        let ok = if p == Proto::Http {
                            Ok(200)
                        } else {
                            Err(Code::Ok)
                        };
                        assert_eq!(got, ok, "{what}");
                        let ps = resp.expect("response").partial_success;
                        match refused {
                            0 => assert_eq!(ps, None, "{what}"),
                            n => {
                                let ps = ps.expect("partial success");
                                assert_eq!(ps.rejected_log_records, n, "{what}");
                                assert!(
                                    ps.error_message.contains(says),
                                    "{what}: {}",
                                    ps.error_message
                                );
                                refused_actions += n;
                            }
                        }
                        want_stored.extend(case.stored.iter().cloned());
                    }
                }
                // The collector keeps serving: a valid record right after is stored.
                let after = format!("{p:?}-after-{n}");
                let follow = Case {
                    name: "follow-up",
                    body: body(vec![lr(&action(&after))]),
                    content_type: PROTOBUF,
                    enc: Enc::Plain,
                    want: Want::Stored {
                        refused: 0,
                        says: "",
                    },
                    stored: vec![],
                };
                let (got, resp) = send(p, &c, &http, &follow).await;
                assert!(
                    matches!(got, Ok(200) | Err(Code::Ok)),
                    "{what}: follow-up {got:?}"
                );
                assert_eq!(resp.and_then(|r| r.partial_success), None, "{what}");
                want_stored.insert(after);
            }
        }
    });
    // Close the clients' keep-alive connections, so shutdown need not wait for them.
    drop((http, rt));
    let cid = c.collector_id.clone();
    assert!(c.terminate(), "clean exit after the hostile suite");

    assert_eq!(
        stored_ids(&data),
        want_stored,
        "exactly the valid records are stored"
    );
    let collector_rows = read_violations(&data)
        .expect("read violations")
        .into_iter()
        .filter(|(v, _, _)| v.detected_by == "collector")
        .count();
    assert_eq!(
        collector_rows as i64, refused_actions,
        "one violation row per refused action"
    );

    // Nothing escaped the data dir, and every file in it is one of the layout's.
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        beside.len(),
        2,
        "only the config and the data dir: {beside:?}"
    );
    let all = files(&data);
    assert!(all.iter().any(|f| f.starts_with("audit/")), "{all:?}");
    for f in &all {
        assert!(in_layout(f, &cid), "unexpected file {f:?}");
    }
}

/// Every protobuf body of the suite, read both ways (straight from the
/// bytes, as the receivers do, and through prost's generated types): the
/// same records and problems, and the same refusals. The bodies the
/// collector must store are read by the direct reader itself, not left
/// to prost.
#[test]
fn hostile_bodies_read_the_same_both_ways() {
    use audit_collector::fuzzing::protobuf_readers_agree;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

    let limits = audit_schema::Limits::default();
    let mut checked = 0;
    for case in cases(Proto::Http) {
        if case.content_type != PROTOBUF {
            continue;
        }
        let taken = protobuf_readers_agree(&case.body, &limits);
        let prost_ok = ExportLogsServiceRequest::decode(&case.body[..]).is_ok();
        match case.want {
            Want::Stored { .. } => assert!(taken, "{}: left to prost", case.name),
            Want::Error { http: 400, .. } if matches!(case.enc, Enc::Plain) => {
                assert!(!taken && !prost_ok, "{}: decoded", case.name)
            }
            Want::Error { .. } => {}
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} protobuf cases");
}
