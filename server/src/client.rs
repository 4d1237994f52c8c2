//! gRPC client helpers used by the CLI commands and `driftdb bench`.

use driftdb_proto::v1 as pb;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::grpc::MAX_MESSAGE_BYTES;

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
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(url: &str) -> Result<Client> {
        let ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| Error::Invalid(format!("bad server URL {url:?}: {e}")))?;
        let ch = ep
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| Error::Transport(format!("cannot connect to {url}: {e}")))?;
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
            alerts: pb::alerts_client::AlertsClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
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
