//! [`BuildError`]: what is wrong with a layer's configuration. The
//! exporter's transports validate endpoints, headers and TLS files while
//! the layer is built, so this sits below both the builder and `export`.

/// What was wrong with the configuration, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An `OTEL_*` variable holds something unusable.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// The collector endpoint is not a usable URL.
    #[error("OTLP endpoint {endpoint:?}: {message}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },
    /// A header name or value is not valid in HTTP/gRPC metadata.
    #[error("OTLP header {name:?} has an invalid name or value (names: lower-case ASCII tokens; values: visible ASCII)")]
    Header {
        /// The header name as given.
        name: String,
    },
    /// A TLS file is missing or unusable, or TLS settings do not fit the endpoint.
    #[error("OTLP TLS: {0}")]
    Tls(String),
    /// The consent keys file is missing or not a usable JWK Set.
    #[error("consent keys: {0}")]
    Consent(String),
    /// The export worker thread or its runtime could not be started.
    #[error("could not start the audit export worker: {0}")]
    Worker(#[from] std::io::Error),
}
