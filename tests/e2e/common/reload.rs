//! What the reload tests share: SIGHUP to the collector and bounded waits
//! for a reload to show.

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use super::Collector;

/// A single-threaded runtime for the async clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `kill -HUP` the collector: reloads its TLS and tokens files.
pub fn sighup(c: &Collector) {
    let pid = c.child.id().to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -HUP");
}

/// Retries `attempt` until it succeeds, for at most 30 s.
pub async fn eventually<F, Fut>(what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !attempt().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
