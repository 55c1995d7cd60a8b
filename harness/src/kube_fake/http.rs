//! Serving the fake over plain HTTP/1.1 on a TCP port, so real binaries can talk to it
//! through a kubeconfig ([`kubeconfig_yaml`]); the bearer token of each request is
//! recorded as its user.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::FakeApiServer;

/// The fake listening on a port. Dropping it stops accepting (open connections end with
/// their tasks).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kubeconfig for `url` authenticating with `token` (the user the fake records), with
/// `namespace` as the default namespace.
pub fn kubeconfig_yaml(url: &str, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
         users:\n- name: {token}\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    \
         cluster: fake\n    user: {token}\n    namespace: {namespace}\ncurrent-context: fake\n"
    )
}

impl FakeApiServer {
    /// Listens on `addr` (port 0 picks one) in the calling thread's network namespace and
    /// serves every connection on the current tokio runtime.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let this = this.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let user = parts
                                .headers
                                .get(http::header::AUTHORIZATION)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("Bearer "))
                                .map(|t| t.trim().to_string());
                            let query = parts.uri.query().unwrap_or_default().to_string();
                            let response = this
                                .handle(&parts.method, parts.uri.path(), &query, user, &body)
                                .await;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(HttpServer { addr, task })
    }
}
