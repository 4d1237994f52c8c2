//! gRPC client helpers used by the CLI commands and `driftdb bench`: one channel to the server
//! (TLS for `https://` URLs), every call carrying the API key as `authorization: Bearer …`.

use std::path::PathBuf;

use driftdb_proto::v1 as pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::error::{Error, Result};
use driftdb_server::grpc::MAX_MESSAGE_BYTES;

/// Adds `authorization: Bearer <key>` to every call (nothing without a key).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_tuple("Bearer")
            .field(&self.0.as_ref().map(|_| "***"))
            .finish()
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The channel every service client uses.
pub type Channel = InterceptedService<tonic::transport::Channel, Bearer>;

/// How to reach a server.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// `http://host:port`, or `https://host:port` for TLS.
    pub url: String,
    /// The API key (`ddb_…`), sent with every call.
    pub api_key: Option<String>,
    /// PEM file of the CA that signed the server's certificate (`https://` only; the system's
    /// roots otherwise).
    pub ca_cert: Option<PathBuf>,
}

impl ClientConfig {
    /// A plaintext, keyless configuration for `url`.
    pub fn url(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            ..Default::default()
        }
    }

    /// The same with an API key.
    pub fn with_key(mut self, key: impl Into<String>) -> ClientConfig {
        self.api_key = Some(key.into());
        self
    }
}

/// Connected clients for every service.
#[derive(Debug, Clone)]
pub struct Client {
    /// Models and reference upload.
    pub models: pb::models_client::ModelsClient<Channel>,
    /// Ingest and labels.
    pub ingest: pb::ingest_client::IngestClient<Channel>,
    /// DriftQL queries and drift summaries.
    pub query: pb::query_client::QueryClient<Channel>,
    /// Rules and event announcements.
    pub rules: pb::rules_client::RulesClient<Channel>,
    /// The alert stream and history.
    pub alerts: pb::alerts_client::AlertsClient<Channel>,
    /// API keys.
    pub admin: pb::admin_client::AdminClient<Channel>,
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`) without an API key.
    pub async fn connect(url: &str) -> Result<Client> {
        Client::connect_with(&ClientConfig::url(url)).await
    }

    /// Connects as `cfg` says.
    pub async fn connect_with(cfg: &ClientConfig) -> Result<Client> {
        let url = &cfg.url;
        let mut ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| Error::Invalid(format!("bad server URL {url:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5));
        if url.starts_with("https://") {
            driftdb_server::tls::install_crypto_provider();
            let mut tls = ClientTlsConfig::new();
            tls = match &cfg.ca_cert {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| Error::File {
                        path: path.display().to_string(),
                        detail: format!("cannot read the CA certificate: {e}"),
                    })?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_native_roots(),
            };
            ep = ep
                .tls_config(tls)
                .map_err(|e| Error::Invalid(format!("TLS for {url}: {e}")))?;
        } else if cfg.ca_cert.is_some() {
            return Err(Error::Invalid(format!(
                "--ca-cert needs an https:// server URL, got {url}"
            )));
        }
        let bearer = match &cfg.api_key {
            Some(k) => {
                let k = k.trim();
                Some(MetadataValue::try_from(format!("Bearer {k}")).map_err(|_| {
                    Error::Invalid("the API key holds characters a header cannot carry".into())
                })?)
            }
            None => None,
        };
        let ch = ep.connect().await.map_err(|e| {
            Error::Transport(format!("cannot connect to {url}: {}", error_chain(&e)))
        })?;
        let ch = InterceptedService::new(ch, Bearer(bearer));
        Ok(Client {
            models: pb::models_client::ModelsClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ingest: pb::ingest_client::IngestClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            query: pb::query_client::QueryClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            rules: pb::rules_client::RulesClient::new(ch.clone()),
            alerts: pb::alerts_client::AlertsClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            admin: pb::admin_client::AdminClient::new(ch),
        })
    }

    /// Fetches a model definition.
    pub async fn model(&mut self, id: &str) -> Result<pb::Model> {
        self.models
            .get_model(pb::GetModelRequest { id: id.to_string() })
            .await?
            .into_inner()
            .model
            .ok_or_else(|| Error::Internal("server returned no model".into()))
    }
}

/// An error and its sources on one line (tonic's own message hides why a connection failed,
/// e.g. an unknown certificate authority).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
