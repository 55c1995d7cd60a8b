//! Service addresses this node advertises, from the `BGPConfiguration` named `default`, as
//! Calico does: every node advertises each range of `serviceClusterIPs`,
//! `serviceExternalIPs` and `serviceLoadBalancerIPs`; a Service with
//! `externalTrafficPolicy: Local` is also advertised as a /32 (/128) of each of its
//! addresses in those ranges (cluster IPs, `spec.externalIPs`, LoadBalancer ingress), only
//! by the nodes that have a local endpoint of it: the more specific route takes the fabric
//! straight to them, and it is withdrawn when the node's last local endpoint goes.
//!
//! A local endpoint is a ready endpoint on this node in one of the Service's
//! EndpointSlices (label `kubernetes.io/service-name`; `conditions.ready` not false). A
//! Service without any EndpointSlice (etcd mode, or an API server before 1.21) falls back
//! to the `WorkloadEndpoint`s on this node, in its namespace, that its selector matches.
//! Pure data: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use twill_api::resources::native::{EndpointSlice, Service};
use twill_api::resources::{BGPConfigurationSpec, WorkloadEndpoint};

/// What the node advertises for Services, and the ranges it could not read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAdvertisement {
    /// Ranges and /32 (/128) prefixes.
    pub prefixes: BTreeSet<IpNet>,
    /// Ranges that do not parse (skipped; validation refuses them at store time).
    pub warnings: Vec<String>,
}

/// The three kinds of ranges.
#[derive(Clone, Debug, Default)]
struct Ranges {
    cluster: Vec<IpNet>,
    external: Vec<IpNet>,
    load_balancer: Vec<IpNet>,
}

fn within(ranges: &[IpNet], ip: &IpAddr) -> bool {
    ranges.iter().any(|r| r.contains(ip))
}

/// The addresses of `svc` that fall in the configured ranges.
fn addresses(svc: &Service, r: &Ranges) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    let Some(spec) = &svc.spec else { return out };
    let parse = |s: &String| s.parse::<IpAddr>().ok();
    let cluster = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(parse);
    out.extend(cluster.filter(|ip| within(&r.cluster, ip)));
    let external = spec.external_ips.iter().flatten().filter_map(parse);
    out.extend(external.filter(|ip| within(&r.external, ip)));
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_ref().and_then(parse));
    out.extend(ingress.filter(|ip| within(&r.load_balancer, ip)));
    out
}

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether `node` runs a ready endpoint of `svc`: from its EndpointSlices when it has
/// any, else from the workload endpoints its selector matches.
fn has_local_endpoint<'a>(
    svc: &Service,
    node: &str,
    slices: &[&EndpointSlice],
    endpoints: impl IntoIterator<Item = &'a Arc<WorkloadEndpoint>>,
) -> bool {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let own: Vec<&&EndpointSlice> = slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref().unwrap_or_default() == ns
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|n| n == name)
        })
        .collect();
    if !own.is_empty() {
        return own
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .any(|e| {
                e.node_name.as_deref() == Some(node)
                    && e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
            });
    }
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty() {
        return false;
    }
    endpoints.into_iter().any(|w| {
        w.spec.node == node
            && w.metadata.namespace.as_deref().unwrap_or_default() == ns
            && w.metadata.labels.as_ref().is_some_and(|labels| {
                selector
                    .iter()
                    .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
            })
    })
}

/// Computes what `node` advertises for Services.
pub fn advertised<'a>(
    node: &str,
    spec: Option<&BGPConfigurationSpec>,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    endpoints: &BTreeMap<(String, String), Arc<WorkloadEndpoint>>,
) -> ServiceAdvertisement {
    let mut out = ServiceAdvertisement::default();
    let Some(spec) = spec else { return out };
    let mut ranges = Ranges::default();
    for (field, list, into) in [
        (
            "serviceClusterIPs",
            &spec.service_cluster_ips,
            &mut ranges.cluster,
        ),
        (
            "serviceExternalIPs",
            &spec.service_external_ips,
            &mut ranges.external,
        ),
        (
            "serviceLoadBalancerIPs",
            &spec.service_load_balancer_ips,
            &mut ranges.load_balancer,
        ),
    ] {
        for range in list {
            match range.cidr.parse::<IpNet>() {
                Ok(net) => {
                    into.push(net.trunc());
                    out.prefixes.insert(net.trunc());
                }
                Err(_) => out
                    .warnings
                    .push(format!("{field}: {:?} is not a CIDR", range.cidr)),
            }
        }
    }
    if out.prefixes.is_empty() {
        return out;
    }
    let slices: Vec<&EndpointSlice> = slices.into_iter().collect();
    for svc in services {
        let local_policy = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        if !local_policy || !has_local_endpoint(svc, node, &slices, endpoints.values()) {
            continue;
        }
        out.prefixes
            .extend(addresses(svc, &ranges).into_iter().map(IpNet::from));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use twill_api::resources::bgp::ServiceCidr;

    fn spec() -> BGPConfigurationSpec {
        let r = |c: &str| vec![ServiceCidr { cidr: c.into() }];
        BGPConfigurationSpec {
            service_cluster_ips: r("10.96.0.0/16"),
            service_external_ips: r("198.51.100.0/24"),
            service_load_balancer_ips: r("203.0.113.0/24"),
            ..Default::default()
        }
    }

    fn svc(name: &str, policy: &str, lb_ip: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "externalIPs": ["198.51.100.7", "192.0.2.99"],
                     "externalTrafficPolicy": policy},
            "status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
        }))
        .unwrap()
    }

    fn wep(
        ns: &str,
        name: &str,
        node: &str,
        app: &str,
    ) -> ((String, String), Arc<WorkloadEndpoint>) {
        let w: WorkloadEndpoint = serde_json::from_value(json!({
            "apiVersion": "networking.twill.dev/v1", "kind": "WorkloadEndpoint",
            "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
            "spec": {"node": node, "ipNetworks": ["10.244.0.1/32"]}
        }))
        .unwrap();
        ((ns.into(), name.into()), Arc::new(w))
    }

    fn nets(list: &[&str]) -> BTreeSet<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn every_node_advertises_the_ranges_and_cluster_policy_adds_nothing() {
        let services = [svc("web", "Cluster", "203.0.113.5")];
        let endpoints = BTreeMap::from([wep("shop", "w1", "n1", "web")]);
        let got = advertised("n1", Some(&spec()), &services, [], &endpoints);
        assert_eq!(
            got.prefixes,
            nets(&["10.96.0.0/16", "198.51.100.0/24", "203.0.113.0/24"])
        );
        // Nothing configured: nothing advertised.
        let none = advertised("n1", None, &services, [], &endpoints);
        assert!(none.prefixes.is_empty());
    }

    #[test]
    fn local_policy_adds_host_routes_only_where_an_endpoint_runs() {
        let services = [svc("web", "Local", "203.0.113.5")];
        let endpoints = BTreeMap::from([
            wep("shop", "w1", "n1", "web"),
            // Another namespace, another app: not endpoints of shop/web.
            wep("other", "w2", "n2", "web"),
            wep("shop", "w3", "n3", "db"),
        ]);
        let with = advertised("n1", Some(&spec()), &services, [], &endpoints);
        assert_eq!(
            with.prefixes,
            nets(&[
                "10.96.0.0/16",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "10.96.0.10/32",
                "198.51.100.7/32",
                "203.0.113.5/32",
            ])
        );
        for node in ["n2", "n3"] {
            let without = advertised(node, Some(&spec()), &services, [], &endpoints);
            assert_eq!(
                without.prefixes,
                nets(&["10.96.0.0/16", "198.51.100.0/24", "203.0.113.0/24"]),
                "{node}"
            );
        }
    }

    #[test]
    fn addresses_outside_the_ranges_are_not_advertised() {
        let services = [svc("web", "Local", "2001:db8::5")];
        let endpoints = BTreeMap::from([wep("shop", "w1", "n1", "web")]);
        let mut only_lb = spec();
        only_lb.service_cluster_ips.clear();
        only_lb.service_external_ips.clear();
        only_lb.service_load_balancer_ips.push(ServiceCidr {
            cidr: "2001:db8::/64".into(),
        });
        let got = advertised("n1", Some(&only_lb), &services, [], &endpoints);
        assert_eq!(
            got.prefixes,
            nets(&["203.0.113.0/24", "2001:db8::/64", "2001:db8::5/128"])
        );
    }

    fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": name,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints
        }))
        .unwrap()
    }

    #[test]
    fn endpoint_slices_decide_where_ready_endpoints_are() {
        let services = [svc("web", "Local", "203.0.113.5")];
        // The workload endpoints say n1; the slices say: ready on n2, not ready on n1.
        let endpoints = BTreeMap::from([wep("shop", "w1", "n1", "web")]);
        let slices = [
            slice(
                "web-a",
                "web",
                json!([
                    {"addresses": ["10.244.0.1"], "nodeName": "n1", "conditions": {"ready": false}},
                    {"addresses": ["10.244.0.65"], "nodeName": "n2", "conditions": {"ready": true}}
                ]),
            ),
            // Another Service's slice says n3.
            slice(
                "db-a",
                "db",
                json!([{"addresses": ["10.244.0.129"], "nodeName": "n3"}]),
            ),
        ];
        let host = nets(&["10.96.0.10/32", "198.51.100.7/32", "203.0.113.5/32"]);
        let has = |node: &str| {
            advertised(node, Some(&spec()), &services, &slices, &endpoints)
                .prefixes
                .is_superset(&host)
        };
        assert!(!has("n1"), "not ready on n1");
        assert!(has("n2"));
        assert!(!has("n3"));
        // A slice with no endpoints left: nowhere (not the selector fallback).
        let empty = [slice("web-a", "web", json!([]))];
        let got = advertised("n1", Some(&spec()), &services, &empty, &endpoints);
        assert!(!got.prefixes.contains(&"203.0.113.5/32".parse().unwrap()));
    }
}
