//! Warning Events on Services (Kubernetes mode: `v1 Event`, as `kubectl describe service`
//! shows them). Best effort: the log line and the Service's condition carry the same
//! message, so a failed Event write only warns.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;
use twill_api::datastore::Datastore;
use twill_api::resources::native::Service;

use crate::retry::random_u64;

/// The component Events name as their source.
pub const COMPONENT: &str = "twill-ipam-controller";

/// Records a Warning Event `reason: message` on `svc` (nothing in etcd mode).
pub async fn warn(ds: &Datastore, svc: &Service, reason: &str, message: &str) {
    let Some(client) = ds.kube_client() else {
        return;
    };
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:016x}", random_u64())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(ns.clone()),
            name: Some(name.clone()),
            uid: svc.metadata.uid.clone(),
            resource_version: svc.metadata.resource_version.clone(),
            ..Default::default()
        },
        type_: Some("Warning".into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client, &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "could not record the Event");
    }
}
