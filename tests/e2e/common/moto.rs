//! A real S3-compatible server for the tests: moto's server mode (from
//! PyPI, `tests/python/requirements.txt`), started on a loopback port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_collector::store::object_store::aws::AmazonS3Builder;
use audit_collector::store::object_store::ObjectStore;
use audit_collector::store::Location;

/// A moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.http("GET", "/").is_none() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto exited ({status}); install it with \
                     `pip install -r tests/python/requirements.txt`"
                );
            }
            assert!(Instant::now() < deadline, "moto did not answer in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a collector needs to reach this server (moto takes
    /// any credentials).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env_via(self.port)
    }

    /// [`Moto::env`] with the server reached through `port` (a proxy).
    pub fn env_via(&self, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let status = self.http("PUT", &format!("/{bucket}"));
        assert_eq!(status, Some(200), "create bucket {bucket}");
    }

    /// The dataset at `s3://<bucket>/<prefix>`, for reading back and tampering.
    pub fn location(&self, bucket: &str, prefix: &str) -> Location {
        let store: Arc<dyn ObjectStore> = Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_bucket_name(bucket)
                .build()
                .expect("S3 client"),
        );
        Location::from_store(store, prefix.into(), &format!("s3://{bucket}/{prefix}"))
    }

    /// Creates a bucket with S3 Object Lock enabled.
    pub fn create_locked_bucket(&self, bucket: &str) {
        let lock = [("x-amz-bucket-object-lock-enabled", "true")];
        let status = self.request("PUT", &format!("/{bucket}"), &lock);
        assert_eq!(status.map(|r| r.0), Some(200), "create bucket {bucket}");
    }

    /// One bodyless request; the status, or `None` if nobody answered.
    pub fn http(&self, method: &str, path: &str) -> Option<u16> {
        self.request(method, path, &[]).map(|r| r.0)
    }

    /// One bodyless request with extra headers; the status and the
    /// response's header lines, lowercased.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<(u16, Vec<String>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut text = String::new();
        // HEAD answers have no body: read until the server closes.
        let _ = s.read_to_string(&mut text);
        let mut lines = text.split("\r\n");
        let status = lines.next()?.get(9..12)?.parse().ok()?;
        let head = lines
            .take_while(|l| !l.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        Some((status, head))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP proxy in front of a server that can be cut off: while
/// down, it drops every connection (a store outage as clients see it).
pub struct Outage {
    pub port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Outage {
    /// Proxies to `127.0.0.1:target`, up.
    pub fn start(target: u16) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (is_up, conns) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !is_up.load(Ordering::SeqCst) {
                    continue; // dropped: connection reset
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                if let (Ok(c2), Ok(s2), Ok(c3)) =
                    (client.try_clone(), server.try_clone(), client.try_clone())
                {
                    conns.lock().unwrap().push(c3);
                    pipe(client, s2);
                    pipe(server, c2);
                }
            }
        });
        Outage { port, up, open }
    }

    /// Cuts the server off, open connections included, or lets it through again.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for c in self.open.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
