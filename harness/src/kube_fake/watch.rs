//! The fake's watches: the backlog after the requested revision, then live events, as
//! newline-delimited JSON; 410 (in an ERROR event, as the API server sends it) for a
//! revision older than the last compaction; selectors applied to both the new and the
//! old object, so leaving a selection is a DELETED and entering it an ADDED.

use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::handler::{Target, respond, status};
use super::select::Selectors;
use super::{Body, Event, FakeApiServer};

use bytes::Bytes;
use futures::StreamExt;

/// How an event looks to a watcher with `selectors`: its type and object, or nothing.
fn as_seen(event: &Event, selectors: &Selectors) -> Option<(&'static str, Value)> {
    let now = selectors.matches(&event.object);
    let before = event.old.as_ref().is_some_and(|o| selectors.matches(o));
    match (event.kind, before, now) {
        ("MODIFIED", true, true) => Some(("MODIFIED", event.object.clone())),
        ("MODIFIED", false, true) => Some(("ADDED", event.object.clone())),
        ("MODIFIED", true, false) => Some(("DELETED", event.object.clone())),
        ("MODIFIED", false, false) => None,
        (kind, _, true) => Some((kind, event.object.clone())),
        _ => None,
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(json!({"type": kind, "object": object}).to_string() + "\n")
}

impl FakeApiServer {
    pub(super) async fn watch(
        &self,
        target: &Target,
        from: u64,
        selectors: Selectors,
    ) -> Response<Body> {
        let mut hold = self.hold.subscribe();
        let _ = hold.wait_for(|held| !*held).await;
        let state = self.state.lock().await;
        if from < state.compacted {
            self.expired
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let error = json!({"type": "ERROR", "object": status(410, "Expired",
                &format!("too old resource version: {from} ({})", state.compacted))});
            return respond(StatusCode::OK, &error);
        }
        let matches = {
            let group = target.kind.group.clone();
            let plural = target.kind.plural.clone();
            let namespace = target.namespace.clone();
            move |event: &Event| {
                event.group == group
                    && event.plural == plural
                    && namespace.as_ref().is_none_or(|ns| *ns == event.namespace)
            }
        };
        let backlog: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = state
            .history
            .iter()
            .filter(|e| e.revision > from && matches(e))
            .filter_map(|e| as_seen(e, &selectors))
            .map(|(kind, object)| Ok(Frame::data(line(kind, &object))))
            .collect();
        // Subscribe while holding the lock: nothing can slip between backlog and live.
        let live = self.events.subscribe();
        let last = state.revision;
        drop(state);
        let mut generation = self.generation.subscribe();
        generation.mark_unchanged();
        let live =
            futures::stream::unfold((live, generation), move |(mut live, mut generation)| {
                let matches = matches.clone();
                let selectors = selectors.clone();
                async move {
                    loop {
                        let received = tokio::select! {
                            biased;
                            // close_watches: end the stream as a server timeout does,
                            // before any event that came after it.
                            _ = generation.changed() => return None,
                            r = live.recv() => r,
                        };
                        match received {
                            Ok(event) if event.revision > last && matches(&event) => {
                                if let Some((kind, object)) = as_seen(&event, &selectors) {
                                    let frame = Ok(Frame::data(line(kind, &object)));
                                    return Some((frame, (live, generation)));
                                }
                            }
                            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
        let stream = futures::stream::iter(backlog).chain(live).boxed();
        let mut response = Response::new(StreamBody::new(stream));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}
