//! Where a dataset lives: a local directory (the default) or an object
//! store bucket, behind one [`ObjectStore`] interface.
//!
//! ```
//! use audit_collector::store::{Location, RemoteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let local = Location::parse(dir.path().to_str().unwrap(), &RemoteOptions::default())?;
//! assert!(!local.is_remote());
//! assert_eq!(local.path("audit/x.parquet").as_ref(), "audit/x.parquet");
//!
//! // Credentials, region and endpoint also come from the standard AWS_*
//! // environment variables; nothing is contacted until the first request.
//! let opts = RemoteOptions { region: Some("eu-west-1".into()), ..Default::default() };
//! let s3 = Location::parse("s3://audit-bucket/prod/trail", &opts)?;
//! assert!(s3.is_remote());
//! assert_eq!(s3.path("audit/x.parquet").as_ref(), "prod/trail/audit/x.parquet");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A location string with a scheme (`s3://bucket/prefix`, also `s3a://`) is
//! an object store; anything else is a local directory. Object paths below
//! the prefix are the same relative paths as under a local data dir
//! (`audit/date=…/hour=…/part-….parquet`, `manifest/…`), so every reader
//! (DataFusion, Spark, Trino, DuckDB) sees one Hive-style layout.
//!
//! For S3 the builder starts from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, instance and web
//! identity credentials, …); [`RemoteOptions`] set in the config override it.
//! Conditional create (`If-None-Match: *`) is on, which sealed uploads rely
//! on to never overwrite an object.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ClientConfigKey;
use object_store::ObjectStore;
use serde::Deserialize;

pub use object_store;

pub mod chain;
pub mod lock;
pub mod put;

/// Options of a remote location that are not in its URL. Unset values fall
/// back to the `AWS_*` environment variables, then to the crate's defaults.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteOptions {
    /// Endpoint of an S3-compatible service (MinIO, Ceph, R2, a test
    /// server), e.g. `http://127.0.0.1:9000`; `None` is AWS itself.
    pub endpoint: Option<String>,
    /// Region, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (a loopback test server). Off by
    /// default: credentials and audit data travel over TLS.
    pub allow_http: bool,
}

/// Why a location cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one this build understands.
    #[error("dataset location {url:?}: {reason}")]
    Url {
        /// The location as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store client could not be built from the settings.
    #[error("dataset location {url}: {source}")]
    Build {
        /// The location.
        url: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
}

/// A dataset's store and the prefix under which its layout starts.
#[derive(Clone, Debug)]
pub struct Location {
    /// The store (for S3: the whole bucket; paths include [`Location::prefix`]).
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of every object of the dataset (empty for a local directory,
    /// whose store is rooted at the directory).
    pub prefix: ObjectPath,
    /// The location as given, for messages.
    pub url: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Local(PathBuf),
    Given,
    S3 {
        bucket: String,
        options: RemoteOptions,
    },
}

/// Whether `location` names an object store (`scheme://…`) rather than a
/// local directory.
pub fn is_remote(location: &str) -> bool {
    location
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme != "file" && !scheme.is_empty())
}

impl Location {
    /// Opens `location`: `s3://bucket[/prefix]` (or `s3a://`), else a local
    /// directory (`file://` stripped), which must exist.
    pub fn parse(location: &str, options: &RemoteOptions) -> Result<Location, StoreError> {
        let url_err = |reason: &str| StoreError::Url {
            url: location.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((scheme, rest)) = location.split_once("://") else {
            return Location::local(Path::new(location));
        };
        match scheme {
            "file" => Location::local(Path::new(rest)),
            "s3" | "s3a" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(url_err("no bucket name (expected s3://bucket/prefix)"));
                }
                let prefix = ObjectPath::parse(prefix.trim_end_matches('/'))
                    .map_err(|e| url_err(&format!("invalid prefix: {e}")))?;
                let kind = Kind::S3 {
                    bucket: bucket.to_owned(),
                    options: options.clone(),
                };
                let store =
                    s3_builder(bucket, options)
                        .build()
                        .map_err(|source| StoreError::Build {
                            url: location.to_owned(),
                            source,
                        })?;
                Ok(Location {
                    store: Arc::new(store),
                    prefix,
                    url: location.to_owned(),
                    kind,
                })
            }
            "gs" | "az" | "abfs" | "abfss" | "azure" => Err(url_err(
                "this build has S3 support only; Google Cloud Storage and Azure need the \
                 object_store crate's `gcp` / `azure` features (see README)",
            )),
            other => Err(url_err(&format!(
                "unknown scheme {other:?} (use s3://bucket/prefix or a directory)"
            ))),
        }
    }

    /// A local directory as a location (the directory must exist).
    pub fn local(dir: &Path) -> Result<Location, StoreError> {
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(|source| StoreError::Build {
            url: dir.display().to_string(),
            source,
        })?;
        Ok(Location {
            store: Arc::new(fs),
            prefix: ObjectPath::default(),
            url: dir.display().to_string(),
            kind: Kind::Local(dir.to_owned()),
        })
    }

    /// A location over a store built elsewhere (tests, embedding
    /// applications); counted as remote, without Object Lock support.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: ObjectPath, url: &str) -> Location {
        Location {
            store,
            prefix,
            url: url.to_owned(),
            kind: Kind::Given,
        }
    }

    /// Whether the dataset is in an object store rather than a local directory.
    pub fn is_remote(&self) -> bool {
        !matches!(self.kind, Kind::Local(_))
    }

    /// The local directory, for a local location.
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Local(dir) => Some(dir),
            Kind::S3 { .. } | Kind::Given => None,
        }
    }

    /// The S3 bucket, for an S3 location.
    pub fn bucket(&self) -> Option<&str> {
        match &self.kind {
            Kind::S3 { bucket, .. } => Some(bucket),
            Kind::Local(_) | Kind::Given => None,
        }
    }

    /// The object path of `rel` (a `/`-separated path relative to the
    /// dataset root, as the manifest records them).
    pub fn path(&self, rel: &str) -> ObjectPath {
        self.prefix
            .parts()
            .chain(ObjectPath::from(rel).parts())
            .collect()
    }

    /// `rel` back from an object path under the prefix (`None` outside it).
    pub fn relative(&self, path: &ObjectPath) -> Option<String> {
        let parts: Vec<_> = path.prefix_match(&self.prefix)?.collect();
        Some(
            parts
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// Relative paths of every object under `dir` (relative to the
    /// dataset root), sorted.
    pub async fn list(&self, dir: &str) -> object_store::Result<Vec<String>> {
        use futures::TryStreamExt;
        let metas: Vec<_> = self.store.list(Some(&self.path(dir))).try_collect().await?;
        let mut out: Vec<String> = metas
            .iter()
            .filter_map(|m| self.relative(&m.location))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Another client for the same S3 bucket that sends `headers` with every
    /// request (what object_store offers for headers it has no option for,
    /// e.g. Object Lock), and sends a SHA-256 checksum with uploads (S3
    /// requires an integrity header on uploads that carry a retention).
    /// `None` for a local location.
    pub fn s3_with_headers(
        &self,
        headers: object_store::HeaderMap,
    ) -> Option<Result<Arc<dyn ObjectStore>, StoreError>> {
        let Kind::S3 { bucket, options } = &self.kind else {
            return None;
        };
        let mut headers = headers;
        // S3 wants an integrity header on uploads that carry Object Lock
        // settings: the checksum below is sent as `x-amz-checksum-sha256`,
        // and this names its algorithm as the AWS SDKs do.
        headers.insert(
            "x-amz-sdk-checksum-algorithm",
            object_store::HeaderValue::from_static("SHA256"),
        );
        let builder = s3_builder(bucket, options);
        // Client options are replaced as a whole: carry plain-HTTP over
        // (set by `allow_http` or AWS_ALLOW_HTTP).
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v == "true");
        let client = object_store::ClientOptions::new()
            .with_allow_http(allow_http)
            .with_default_headers(headers);
        Some(
            builder
                .with_client_options(client)
                .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(|source| StoreError::Build {
                    url: self.url.clone(),
                    source,
                }),
        )
    }
}

fn s3_builder(bucket: &str, options: &RemoteOptions) -> AmazonS3Builder {
    // The client's own retries stay short: uploads are retried by
    // `put::create` and by the writer, which must not hang on one request
    // for the crate's default three minutes.
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(20),
        ..Default::default()
    };
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(retry);
    if let Some(e) = &options.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &options.region {
        b = b.with_region(r);
    }
    if options.allow_http {
        b = b.with_allow_http(true);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_decide_local_or_remote() {
        assert!(is_remote("s3://b/p"));
        assert!(!is_remote("/var/lib/audit"));
        assert!(!is_remote("file:///var/lib/audit"));
        let err = Location::parse("gs://b/p", &RemoteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("gcp"), "{err}");
        let err = Location::parse("s3:///p", &RemoteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("bucket"), "{err}");
    }

    #[test]
    fn prefix_joins_and_strips() {
        let loc = Location::parse("s3://b/a/b/", &RemoteOptions::default()).unwrap();
        assert_eq!(loc.bucket(), Some("b"));
        let p = loc.path("manifest/c1/00000000000000000000.json");
        assert_eq!(p.as_ref(), "a/b/manifest/c1/00000000000000000000.json");
        assert_eq!(
            loc.relative(&p).as_deref(),
            Some("manifest/c1/00000000000000000000.json")
        );
        assert_eq!(loc.relative(&ObjectPath::from("other/x")), None);
        let root = Location::parse("s3://b", &RemoteOptions::default()).unwrap();
        assert_eq!(root.path("audit/x").as_ref(), "audit/x");
    }
}
