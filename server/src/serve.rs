//! `driftdb serve`: the gRPC and HTTP servers over one node, the rule scheduler and the
//! webhook delivery worker; optionally TLS on both listeners (rustls, ring).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::error::{Error, Result};
use crate::node::Node;

/// Where a started server listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// gRPC address.
    pub grpc: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
}

/// A server certificate chain and its private key, both PEM, served on both listeners.
#[derive(Clone)]
pub struct TlsIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        detail: format!("cannot read the TLS {what}: {e}"),
    })
}

impl TlsIdentity {
    /// From PEM bytes: the certificate chain (leaf first) and the private key (PKCS#8, PKCS#1
    /// or SEC1). Both are checked here, so a bad file fails at start-up, not at the first
    /// handshake.
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<TlsIdentity> {
        let id = TlsIdentity { cert_pem, key_pem };
        id.rustls_config()?;
        Ok(id)
    }

    /// Reads the PEM files `cert` and `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity> {
        TlsIdentity::from_pem(read_pem("certificate", cert)?, read_pem("key", key)?)
    }

    /// The rustls server configuration of the HTTP listener (HTTP/1.1 and HTTP/2 by ALPN).
    fn rustls_config(&self) -> Result<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        crate::tls::install_crypto_provider();
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Invalid(format!("TLS certificate: not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Invalid(
                "TLS certificate: the file holds no CERTIFICATE block".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| Error::Invalid(format!("TLS key: no usable private key: {e}")))?;
        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::Invalid(format!("TLS certificate and key: {e}")))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// How to serve a node.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// gRPC listen address.
    pub grpc: SocketAddr,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// TLS on both listeners; plaintext when `None`.
    pub tls: Option<TlsIdentity>,
}

/// A running server; dropping the handle does not stop it, [`Running::shutdown`] does.
#[derive(Debug)]
pub struct Running {
    /// Bound addresses.
    pub bound: Bound,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Running {
    /// Stops both servers and waits for them.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            t.await.map_err(|e| Error::Internal(e.to_string()))??;
        }
        Ok(())
    }

    /// Waits until a server stops (an error) or `stop` resolves, then shuts down.
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::select! {
            _ = stop => {}
            r = futures::future::select_all(self.tasks.iter_mut()) => {
                let (res, _, _) = r;
                res.map_err(|e| Error::Internal(e.to_string()))??;
            }
        }
        self.shutdown().await
    }
}

/// Binds both listeners and starts serving `node` in plaintext.
pub async fn start(node: Node, grpc: SocketAddr, http: SocketAddr) -> Result<Running> {
    start_with(
        node,
        ServeOptions {
            grpc,
            http,
            tls: None,
        },
    )
    .await
}

/// HTTP/2 receive window of one gRPC stream: how far a client may send ahead of the server.
/// An ingest stream is handled one batch at a time; with this window the next batch (a
/// 2,000-row × 500-feature batch is 8 MB) arrives while the current one is written, instead
/// of waiting for the ack.
const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// HTTP/2 receive window of one connection, shared by its streams. hyper's default (1 MiB)
/// let one stream's unread batch stall every other stream of the connection: `driftdb bench
/// ingest` kept its cores 1.7 busy out of 2 instead of 1.8 (BENCHMARKS.md). This bounds what a
/// connection can make the server buffer before any batch is decoded and counted against
/// `ingest_memory_mb`.
const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;

/// Largest HTTP/2 frame the server accepts (advertised to clients). HTTP/2's default of
/// 16 KiB cut an 8 MB ingest batch into 512 DATA frames, each parsed, flow-controlled and
/// buffered on its own; 1 MiB frames take 8.
const MAX_FRAME_BYTES: u32 = 1 << 20;

/// Time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once on the HTTP listener; more connections wait in the
/// kernel's accept queue.
const MAX_HANDSHAKES: usize = 256;

/// The HTTP listener with TLS: connections are accepted and their handshakes run in tasks of
/// their own (a slow client never holds up the others), bounded in number and time; finished
/// ones are handed to axum.
struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn new(
        listener: TcpListener,
        config: rustls::ServerConfig,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<TlsListener> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = shutdown.wait_for(|v| *v) => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor stopped (shutdown): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Binds both listeners and starts serving `node` as `opts` say.
pub async fn start_with(node: Node, opts: ServeOptions) -> Result<Running> {
    let (grpc, http) = (opts.grpc, opts.http);
    let gl = TcpListener::bind(grpc)
        .await
        .map_err(|e| Error::Invalid(format!("cannot bind gRPC address {grpc}: {e}")))?;
    let hl = TcpListener::bind(http)
        .await
        .map_err(|e| Error::Invalid(format!("cannot bind HTTP address {http}: {e}")))?;
    let bound = Bound {
        grpc: gl
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?,
        http: hl
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?,
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut rx1 = rx.clone();
    let mut rx2 = rx.clone();
    let scheduler = tokio::spawn(crate::rules::run_scheduler(
        std::sync::Arc::clone(&node.rules),
        rx.clone(),
    ));
    let delivery = tokio::spawn(crate::rules::run_delivery(
        std::sync::Arc::clone(&node.rules),
        rx.clone(),
    ));
    let maintenance = tokio::spawn(crate::maintenance::run_maintenance(
        std::sync::Arc::clone(&node.store),
        rx.clone(),
    ));
    let mut tasks = vec![scheduler, delivery, maintenance];
    if let Some(c) = node.checkpoints.clone() {
        tasks.push(tokio::spawn(crate::checkpoint::run_checkpoints(
            std::sync::Arc::clone(&node.store),
            c,
            std::sync::Arc::clone(&node.clock),
            rx.clone(),
        )));
    }
    // Alert streams never end by themselves; end them so graceful shutdown can finish.
    let rules = std::sync::Arc::clone(&node.rules);
    let mut rx3 = rx.clone();
    tokio::spawn(async move {
        let _ = rx3.wait_for(|v| *v).await;
        rules.stop_watchers();
    });
    let routes = crate::grpc::router(&node);
    // Nagle's algorithm off on every accepted connection: a unary call's response and its
    // trailers are two small writes, and with Nagle the second waited for the client's delayed
    // ACK, 40 ms on Linux, on every query. (tonic applies its builder's TCP settings only to
    // listeners it binds itself, so they are set on the incoming stream here.)
    let incoming = tonic::transport::server::TcpIncoming::from(gl)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(256))
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    if let Some(tls) = &opts.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| Error::Invalid(format!("gRPC TLS: {e}")))?;
    }
    let g = tokio::spawn(async move {
        builder
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = rx1.wait_for(|v| *v).await;
            })
            .await
            .map_err(|e| Error::Internal(format!("gRPC server: {e}")))
    });
    let app = crate::http::router(node);
    let stop = async move {
        let _ = rx2.wait_for(|v| *v).await;
    };
    let h = match &opts.tls {
        None => tokio::spawn(async move {
            // No Nagle here either: a response's head and body are separate writes.
            let hl = axum::serve::ListenerExt::tap_io(hl, |tcp: &mut TcpStream| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
            });
            axum::serve(hl, app)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| Error::Internal(format!("HTTP server: {e}")))
        }),
        Some(tls) => {
            let listener = TlsListener::new(hl, tls.rustls_config()?, rx)?;
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                    .map_err(|e| Error::Internal(format!("HTTP server: {e}")))
            })
        }
    };
    Ok(Running {
        bound,
        shutdown: tx,
        tasks: [g, h].into_iter().chain(tasks).collect(),
    })
}
