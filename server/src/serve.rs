//! `driftdb serve`: the gRPC and HTTP servers over one node, the rule scheduler and the
//! webhook delivery worker.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

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

/// Binds both listeners and starts serving `node`.
pub async fn start(node: Node, grpc: SocketAddr, http: SocketAddr) -> Result<Running> {
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
    let scheduler = tokio::spawn(crate::rules::run_scheduler(node.clone(), rx.clone()));
    let delivery = tokio::spawn(crate::rules::run_delivery(node.clone(), rx.clone()));
    // Alert streams never end by themselves; end them so graceful shutdown can finish.
    let rules = std::sync::Arc::clone(&node.rules);
    let mut rx3 = rx;
    tokio::spawn(async move {
        let _ = rx3.wait_for(|v| *v).await;
        rules.stop_watchers();
    });
    let routes = crate::grpc::router(&node);
    let g = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(TcpListenerStream::new(gl), async move {
                let _ = rx1.wait_for(|v| *v).await;
            })
            .await
            .map_err(|e| Error::Internal(format!("gRPC server: {e}")))
    });
    let app = crate::http::router(node);
    let h = tokio::spawn(async move {
        axum::serve(hl, app)
            .with_graceful_shutdown(async move {
                let _ = rx2.wait_for(|v| *v).await;
            })
            .await
            .map_err(|e| Error::Internal(format!("HTTP server: {e}")))
    });
    Ok(Running {
        bound,
        shutdown: tx,
        tasks: vec![g, h, scheduler, delivery],
    })
}
