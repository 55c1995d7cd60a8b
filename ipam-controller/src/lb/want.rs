//! What a Service asks of LoadBalancer IPAM, as a pure function of the object: whether it
//! is ours at all (type `LoadBalancer`, no `loadBalancerClass` or `twill.dev/bgp`), which
//! families, which specific addresses (`twill.dev/loadBalancerIPs`, else the legacy
//! `spec.loadBalancerIP`) and which pool (`twill.dev/ipPool`).

use std::net::IpAddr;

use twill_api::resources::native::Service;

use crate::net::Family;

/// The annotation asking for specific addresses (comma-separated, at most one per family).
pub const IPS_ANNOTATION: &str = "twill.dev/loadBalancerIPs";
/// The annotation naming the pool(s) to allocate from (comma-separated pool names).
pub const POOL_ANNOTATION: &str = "twill.dev/ipPool";
/// The `loadBalancerClass` Twill answers for (besides none).
pub const CLASS: &str = "twill.dev/bgp";

/// What one Service wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    /// The families, in the Service's order (`spec.ipFamilies`).
    pub families: Vec<Family>,
    /// Specific addresses asked for (at most one per family).
    pub addrs: Vec<IpAddr>,
    /// Pools it may come from (empty: any `LoadBalancer` pool).
    pub pools: Vec<String>,
}

impl Want {
    /// The address asked for in `family`, if any.
    pub fn addr_of(&self, family: Family) -> Option<IpAddr> {
        self.addrs
            .iter()
            .copied()
            .find(|a| Family::of_addr(a) == family)
    }
}

/// A request that cannot be understood (reported on the Service).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// Whether Twill allocates for `svc`: type LoadBalancer and a class that is Twill's.
pub fn is_ours(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec
            .load_balancer_class
            .as_deref()
            .is_none_or(|c| c == CLASS)
}

/// What `svc` asks for; `Ok(None)` when it is not Twill's to serve.
pub fn want_of(svc: &Service) -> Result<Option<Want>, BadRequest> {
    if !is_ours(svc) {
        return Ok(None);
    }
    let spec = svc.spec.as_ref();
    let annotations = svc.metadata.annotations.as_ref();
    let listed = annotations
        .and_then(|a| a.get(IPS_ANNOTATION))
        .map(String::as_str)
        .or_else(|| spec.and_then(|s| s.load_balancer_ip.as_deref()))
        .unwrap_or("");
    let mut addrs = Vec::new();
    for item in listed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr: IpAddr = item.parse().map_err(|_| {
            BadRequest(format!(
                "{item:?} (asked for in {IPS_ANNOTATION}) is not an IP address"
            ))
        })?;
        if addrs
            .iter()
            .any(|a| Family::of_addr(a) == Family::of_addr(&addr))
        {
            return Err(BadRequest(format!(
                "{IPS_ANNOTATION} asks for more than one {:?} address",
                Family::of_addr(&addr)
            )));
        }
        addrs.push(addr);
    }
    let mut families: Vec<Family> = spec
        .and_then(|s| s.ip_families.as_ref())
        .map(|fs| {
            fs.iter()
                .filter_map(|f| match f.as_str() {
                    "IPv4" => Some(Family::V4),
                    "IPv6" => Some(Family::V6),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if families.is_empty() {
        // Not defaulted by an API server (etcd mode): the families of the asked-for
        // addresses, else IPv4.
        families = addrs.iter().map(Family::of_addr).collect();
        if families.is_empty() {
            families.push(Family::V4);
        }
    }
    families.dedup();
    if let Some(extra) = addrs
        .iter()
        .find(|a| !families.contains(&Family::of_addr(a)))
    {
        return Err(BadRequest(format!(
            "{extra} is asked for but the Service's ipFamilies do not include {:?}",
            Family::of_addr(extra)
        )));
    }
    let pools = annotations
        .and_then(|a| a.get(POOL_ANNOTATION))
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Want {
        families,
        addrs,
        pools,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_load_balancers_of_no_class_or_twills_class_are_ours() {
        let cluster_ip = svc(json!({"metadata": {"name": "a"}, "spec": {"type": "ClusterIP"}}));
        assert_eq!(want_of(&cluster_ip), Ok(None));
        let other = svc(json!({"metadata": {"name": "a"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "metallb.io/x"}}));
        assert_eq!(want_of(&other), Ok(None));
        let ours = svc(json!({"metadata": {"name": "a"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "twill.dev/bgp"}}));
        assert_eq!(want_of(&ours).unwrap().unwrap().families, vec![Family::V4]);
    }

    #[test]
    fn families_addresses_and_pools_are_read() {
        let s = svc(json!({"metadata": {"name": "a", "annotations": {
                "twill.dev/loadBalancerIPs": "203.0.113.7, 2001:db8::7",
                "twill.dev/ipPool": "lb-a,lb-b"}},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6", "IPv4"],
                     "loadBalancerIP": "203.0.113.9"}}));
        let w = want_of(&s).unwrap().unwrap();
        assert_eq!(w.families, vec![Family::V6, Family::V4]);
        assert_eq!(w.addr_of(Family::V4), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(w.addr_of(Family::V6), Some("2001:db8::7".parse().unwrap()));
        assert_eq!(w.pools, vec!["lb-a".to_owned(), "lb-b".to_owned()]);
        // The legacy field when there is no annotation; its family when none is given.
        let legacy = svc(json!({"metadata": {"name": "a"},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "2001:db8::9"}}));
        let w = want_of(&legacy).unwrap().unwrap();
        assert_eq!(w.families, vec![Family::V6]);
        assert_eq!(w.addrs, vec!["2001:db8::9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn unusable_requests_say_why() {
        let bad = svc(json!({"metadata": {"name": "a", "annotations": {
                "twill.dev/loadBalancerIPs": "203.0.113.300"}},
            "spec": {"type": "LoadBalancer"}}));
        assert!(want_of(&bad).unwrap_err().0.contains("not an IP address"));
        let two = svc(json!({"metadata": {"name": "a", "annotations": {
                "twill.dev/loadBalancerIPs": "203.0.113.1,203.0.113.2"}},
            "spec": {"type": "LoadBalancer"}}));
        assert!(want_of(&two).unwrap_err().0.contains("more than one"));
        let family = svc(json!({"metadata": {"name": "a", "annotations": {
                "twill.dev/loadBalancerIPs": "2001:db8::1"}},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"]}}));
        assert!(want_of(&family).unwrap_err().0.contains("ipFamilies"));
    }
}
