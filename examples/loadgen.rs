//! Load generator for any OTLP logs endpoint: schema-valid audit records
//! (unique event and trace ids), sent with C concurrent clients in batches
//! of B, counting what the endpoint acknowledged. Requests are encoded
//! before the clock starts (about 300 bytes per record held in memory), so
//! the figure is the endpoint's. A request the endpoint throttles (429/503,
//! UNAVAILABLE, RESOURCE_EXHAUSTED with a RetryInfo) is counted and sent
//! again after a short pause, so the loadgen can also drive an endpoint
//! beyond its capacity. The last line is the result:
//!
//! ```text
//! cargo run --release --example loadgen -- --endpoint http://127.0.0.1:4317 \
//!     --protocol grpc --records 200000 --concurrency 8 --batch 500
//! ...
//! sent=200000 acked=200000 throttled=0 secs=1.52 rate=131578/s
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use audit_layer::export::{PreEncoded, EXPORT_PATH};
use audit_schema::otlp::{encode_action, ResourceInfo};
use audit_schema::{AuditRecord, Draft, Rules};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use prost::Message;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_types::StatusExt;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Protocol {
    Grpc,
    Http,
}

#[derive(Parser, Debug)]
#[command(about = "Drive an OTLP logs endpoint with audit records")]
struct Args {
    /// gRPC: http://HOST:PORT; HTTP: http://HOST:PORT (/v1/logs is appended).
    #[arg(long)]
    endpoint: String,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    /// Total records to send.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Concurrent clients (each with its own connection).
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    batch: u64,
}

/// Record `n` of run `run`: ids unique across runs and records.
fn record(run: &str, n: u64, now_ns: i64) -> AuditRecord {
    let agent = n % 97;
    let draft = Draft {
        event_id: Some(format!("{run}-{n:012}")),
        start_time_ns: Some(now_ns + n as i64),
        end_time_ns: Some(now_ns + n as i64 + 1_500_000),
        agent_id: Some(format!("agt_{agent:03}")),
        agent_name: Some(format!("worker-{agent}")),
        agent_credential_id: Some(format!("key_{agent:03}_2026")),
        owner_id: Some(format!("usr_{:02}", agent % 13)),
        task_id: Some(format!("tsk_{}", n / 100)),
        action: Some(["files.read", "invoices.approve", "users.update"][(n % 3) as usize].into()),
        target: Some(format!("obj_{}", n % 5000)),
        scopes: vec!["files:read".into()],
        service_name: Some("loadgen".into()),
        service_instance_id: Some(run.into()),
        trace_id: Some(format!("{:032x}", (n as u128) << 64 | 0xabcdef)),
        span_id: Some(format!("{:016x}", n + 1)),
        ..Draft::default()
    };
    Rules::default()
        .check(draft)
        .expect("every generated record names its agent and owner")
}

fn request(records: &[AuditRecord]) -> ExportLogsServiceRequest {
    let res = ResourceInfo {
        service_name: Some("loadgen".into()),
        service_instance_id: records.first().and_then(|r| r.service_instance_id.clone()),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(res.to_resource()),
            scope_logs: vec![ScopeLogs {
                log_records: records.iter().map(encode_action).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn acked(batch: u64, resp: &ExportLogsServiceResponse) -> u64 {
    let rejected = resp
        .partial_success
        .as_ref()
        .map_or(0, |p| p.rejected_log_records.max(0) as u64);
    batch.saturating_sub(rejected)
}

/// Every request, encoded before the clock starts: the figure is then the
/// endpoint's, not the cost of building protobuf on the same two cores.
fn encode_all(args: &Args, run: &str) -> Vec<(u64, Bytes)> {
    let now_ns = audit_collector::now_ns();
    let mut out = Vec::new();
    let mut start = 0;
    while start < args.records {
        let end = (start + args.batch).min(args.records);
        let records: Vec<AuditRecord> = (start..end).map(|n| record(run, n, now_ns)).collect();
        out.push((end - start, Bytes::from(request(&records).encode_to_vec())));
        start = end;
    }
    out
}

/// What the workers count; the last line prints them.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    /// Answers asking to retry later (HTTP 429/503, gRPC UNAVAILABLE, or
    /// RESOURCE_EXHAUSTED with a RetryInfo); the request is sent again
    /// after a pause.
    throttled: AtomicU64,
}

/// Pause before resending a throttled request.
const THROTTLE_PAUSE: Duration = Duration::from_millis(20);

enum Answer {
    Done(ExportLogsServiceResponse),
    Throttled,
}

async fn send_grpc(client: &mut Grpc<Channel>, body: &Bytes) -> anyhow::Result<Answer> {
    client.ready().await?;
    let path = PathAndQuery::from_static(EXPORT_PATH);
    match client
        .unary(tonic::Request::new(body.clone()), path, PreEncoded)
        .await
    {
        Ok(r) => Ok(Answer::Done(r.into_inner())),
        // RESOURCE_EXHAUSTED is a throttle only with a RetryInfo; without
        // one it is "too large", which no resend fixes (OTLP spec).
        Err(s)
            if s.code() == Code::Unavailable
                || (s.code() == Code::ResourceExhausted
                    && s.get_details_retry_info().is_some()) =>
        {
            Ok(Answer::Throttled)
        }
        Err(s) => Err(s.into()),
    }
}

async fn send_http(http: &reqwest::Client, url: &str, body: &Bytes) -> anyhow::Result<Answer> {
    let r = http
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await?;
    match r.status().as_u16() {
        429 | 503 => Ok(Answer::Throttled),
        _ if !r.status().is_success() => bail!("HTTP {}", r.status()),
        _ => Ok(Answer::Done(ExportLogsServiceResponse::decode(
            r.bytes().await?,
        )?)),
    }
}

async fn worker(
    args: Arc<Args>,
    requests: Arc<Vec<(u64, Bytes)>>,
    next: Arc<AtomicUsize>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let mut grpc = match args.protocol {
        Protocol::Grpc => {
            let channel = Endpoint::from_shared(args.endpoint.clone())?
                .connect()
                .await
                .with_context(|| format!("connecting to {}", args.endpoint))?;
            Some(Grpc::new(channel))
        }
        Protocol::Http => None,
    };
    let http = reqwest::Client::new();
    let url = format!("{}/v1/logs", args.endpoint.trim_end_matches('/'));
    loop {
        let Some((n, body)) = requests.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return Ok(());
        };
        counters.sent.fetch_add(*n, Ordering::Relaxed);
        let resp = loop {
            let answer = match grpc.as_mut() {
                Some(client) => send_grpc(client, body).await?,
                None => send_http(&http, &url, body).await?,
            };
            match answer {
                Answer::Done(resp) => break resp,
                Answer::Throttled => {
                    counters.throttled.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(THROTTLE_PAUSE).await;
                }
            }
        };
        counters
            .acked
            .fetch_add(acked(*n, &resp), Ordering::Relaxed);
    }
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(
        args.batch > 0 && args.concurrency > 0,
        "--batch and --concurrency must be > 0"
    );
    let rt = tokio::runtime::Runtime::new()?;
    let run = format!("lg{}", audit_collector::now_ns());
    let requests = Arc::new(encode_all(&args, &run));
    let next = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(Counters::default());
    let t0 = Instant::now();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|_| {
                tokio::spawn(worker(
                    args.clone(),
                    requests.clone(),
                    next.clone(),
                    counters.clone(),
                ))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    let secs = t0.elapsed().as_secs_f64();
    for r in results {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("worker failed: {e:#}"),
            Err(e) => eprintln!("worker panicked: {e}"),
        }
    }
    let sent = counters.sent.load(Ordering::Relaxed);
    let acked = counters.acked.load(Ordering::Relaxed);
    let throttled = counters.throttled.load(Ordering::Relaxed);
    println!(
        "sent={sent} acked={acked} throttled={throttled} secs={secs:.2} rate={:.0}/s",
        acked as f64 / secs
    );
    Ok(())
}
