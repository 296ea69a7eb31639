//! Local simulators of Customer.io's App API and of each destination API.
//! Each enforces the documented contract of `API-CONTRACTS.md` (auth, batch
//! limits, hashing, error and rate-limit answers) so a wrong request fails
//! the way the real API would, and records what it accepted for assertions.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod aws_faults;
pub mod clevertap;
pub mod customerio;
pub mod faults;
pub mod google;
pub mod google_ads_schema;
pub mod google_dm;
pub mod google_oauth;
pub mod meta;
pub mod platform_keys;
pub mod webhook;
pub mod wire;

/// A simulator serving on a loopback port. Dropping it stops the server.
pub struct RunningSim {
    pub base_url: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// Stop serving and wait for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serve `router` on 127.0.0.1 at a free port.
pub async fn serve(router: axum::Router) -> anyhow::Result<RunningSim> {
    serve_on(router, "127.0.0.1:0").await
}

/// Serve `router` on a given loopback address (`127.0.0.1:0` for any port).
pub async fn serve_on(router: axum::Router, addr: &str) -> anyhow::Result<RunningSim> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(RunningSim {
        base_url: format!("http://{addr}"),
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}
