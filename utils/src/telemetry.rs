//! The one telemetry server of every Twill binary: `/livez`, `/readyz` and `/metrics`
//! over HTTP/1 (hyper). Each process keeps one Prometheus [`Registry`] (its parts register
//! into sub-registries with their own prefixes, `twill_felix_*`, `twill_bgp_*`, ...), and
//! the server encodes it in the OpenMetrics text format. A probe that fails answers 503
//! with its reason; an accept error backs off instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::backoff::Backoff;
use crate::task::TaskGuard;

/// The content type of `/metrics`: what prometheus-client's text encoder writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a process tells its probes. `Err` carries the reason, which the probe prints.
pub trait Probes: Send + Sync + 'static {
    /// The process is making progress (a failure means: restart me).
    fn live(&self) -> Result<(), String>;
    /// The process does its job (a failure means: do not count on me yet).
    fn ready(&self) -> Result<(), String>;
    /// The process's one registry.
    fn registry(&self) -> &Registry;
}

/// The whole registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would leave a partial text.
    if encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// The status, content type and body for `path`.
pub fn answer(probes: &dyn Probes, path: &str) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let probe = |r: Result<(), String>| match r {
        Ok(()) => (StatusCode::OK, TEXT, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
    };
    match path {
        "/livez" => probe(probes.live()),
        "/readyz" => probe(probes.ready()),
        "/metrics" => (
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            render(probes.registry()),
        ),
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_string()),
    }
}

/// Serves `/livez`, `/readyz` and `/metrics` on `listener` until the guard is dropped.
pub fn serve(listener: TcpListener, probes: Arc<dyn Probes>) -> TaskGuard {
    TaskGuard::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => {
                    backoff.reset();
                    s
                }
                Err(e) => {
                    // Out of file descriptors, usually: retrying at once would spin.
                    tracing::warn!(error = %e, "telemetry listener accept");
                    backoff.wait().await;
                    continue;
                }
            };
            let probes = probes.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let probes = probes.clone();
                    async move {
                        let (status, content_type, body) = if req.method() == Method::GET {
                            answer(probes.as_ref(), req.uri().path())
                        } else {
                            (
                                StatusCode::METHOD_NOT_ALLOWED,
                                "text/plain; charset=utf-8",
                                "GET only\n".to_string(),
                            )
                        };
                        Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "telemetry connection");
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    struct Fixed {
        live: bool,
        registry: Registry,
    }

    impl Probes for Fixed {
        fn live(&self) -> Result<(), String> {
            if self.live {
                Ok(())
            } else {
                Err("loop stalled".into())
            }
        }
        fn ready(&self) -> Result<(), String> {
            Err("not synced".into())
        }
        fn registry(&self) -> &Registry {
            &self.registry
        }
    }

    fn fixed(live: bool) -> Fixed {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        c.inc();
        registry
            .sub_registry_with_prefix("twill_a")
            .register("things", "Things", c);
        let c2 = Counter::<u64>::default();
        registry
            .sub_registry_with_prefix("twill_b")
            .register("others", "Others", c2);
        Fixed { live, registry }
    }

    #[test]
    fn probes_answer_503_with_their_reason() {
        let p = fixed(false);
        let (s, _, body) = answer(&p, "/livez");
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "loop stalled\n");
        let (s, _, body) = answer(&p, "/readyz");
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not synced\n");
        assert_eq!(answer(&fixed(true), "/livez").0, StatusCode::OK);
        assert_eq!(answer(&p, "/nope").0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn metrics_are_one_exposition_of_every_sub_registry() {
        let (s, ct, body) = answer(&fixed(true), "/metrics");
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct, METRICS_CONTENT_TYPE);
        assert!(body.contains("twill_a_things_total 1"), "{body}");
        assert!(body.contains("twill_b_others_total 0"), "{body}");
        assert_eq!(body.matches("# EOF").count(), 1, "{body}");
    }

    #[tokio::test]
    async fn serves_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _guard = serve(listener, Arc::new(fixed(true)));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text))
            .await
            .unwrap()
            .unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains(METRICS_CONTENT_TYPE), "{text}");
        assert!(text.contains("twill_a_things_total 1"), "{text}");
    }
}
