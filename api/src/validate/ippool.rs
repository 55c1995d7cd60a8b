//! `IPPool` rules: a masked `cidr`, a `blockSize` that fits the family and the pool, no
//! link-local ranges, a selector that parses. Overlap with other pools is checked at store
//! time by the datastore (see [`pools_overlap`]).

use ipnet::IpNet;

use super::meta::check_name;
use super::net::parse_cidr_masked;
use super::{Validate, ValidationError};
use crate::resources::{IPPool, IPPoolSpec, IPPoolUse};
use crate::selector::Selector;

impl Validate for IPPool {
    fn validate(&self) -> Result<(), ValidationError> {
        check_name(&self.metadata)?;
        let cidr = parse_cidr_masked("spec.cidr", &self.spec.cidr)?;
        let (min, max, family) = match cidr {
            IpNet::V4(_) => (20u8, 32u8, "IPv4"),
            IpNet::V6(_) => (116, 128, "IPv6"),
        };
        let block_size = self.spec.effective_block_size();
        if !(min..=max).contains(&block_size) {
            return Err(ValidationError::new(
                "spec.blockSize",
                format!(
                    "{block_size} is out of range: an {family} pool's blockSize must be {min}-{max}"
                ),
            ));
        }
        if block_size < cidr.prefix_len() {
            return Err(ValidationError::new(
                "spec.blockSize",
                format!(
                    "/{block_size} blocks are larger than the pool {cidr}: blockSize must be >= {}",
                    cidr.prefix_len()
                ),
            ));
        }
        for reserved in ["169.254.0.0/16", "fe80::/10"] {
            if let Ok(reserved) = reserved.parse::<IpNet>()
                && overlaps(&cidr, &reserved)
            {
                return Err(ValidationError::new(
                    "spec.cidr",
                    format!("{cidr} overlaps the link-local range {reserved}"),
                ));
            }
        }
        if let Some(selector) = &self.spec.node_selector {
            Selector::parse(selector)
                .map_err(|e| ValidationError::new("spec.nodeSelector", e.to_string()))?;
        }
        check_allowed_uses(&self.spec)
    }
}

/// `allowedUses`: not empty, and `LoadBalancer` alone (a pool either serves pods or
/// Services, never both); a LoadBalancer pool is cluster-wide, so its `nodeSelector`, if
/// any, must be `all()`.
fn check_allowed_uses(spec: &IPPoolSpec) -> Result<(), ValidationError> {
    let Some(uses) = &spec.allowed_uses else {
        return Ok(());
    };
    if uses.is_empty() {
        return Err(ValidationError::new(
            "spec.allowedUses",
            "must list at least one use (Workload, LoadBalancer), or be left out for Workload",
        ));
    }
    if !uses.contains(&IPPoolUse::LoadBalancer) {
        return Ok(());
    }
    if uses.iter().any(|u| *u != IPPoolUse::LoadBalancer) {
        return Err(ValidationError::new(
            "spec.allowedUses",
            "LoadBalancer cannot be combined with other uses: a pool serves pods or Services, not both",
        ));
    }
    if let Some(selector) = spec.node_selector.as_deref()
        && !matches!(selector.trim(), "" | "all()")
    {
        return Err(ValidationError::new(
            "spec.nodeSelector",
            format!(
                "{selector:?}: a LoadBalancer pool is cluster-wide; its nodeSelector must be all()"
            ),
        ));
    }
    Ok(())
}

/// Whether two networks share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Refuses `pool` when its CIDR overlaps one of `others` (pools of other names).
pub fn pools_overlap(pool: &IPPool, others: &[IPPool]) -> Result<(), ValidationError> {
    let cidr = parse_cidr_masked("spec.cidr", &pool.spec.cidr)?;
    for other in others {
        if other.metadata.name == pool.metadata.name {
            continue;
        }
        let Ok(other_cidr) = other.spec.cidr.parse::<IpNet>() else {
            continue;
        };
        if overlaps(&cidr, &other_cidr) {
            return Err(ValidationError::new(
                "spec.cidr",
                format!(
                    "{cidr} overlaps pool {:?} ({other_cidr}); pools may not overlap",
                    other.metadata.name.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses an update that changes a stored pool's `cidr` or `blockSize`: to move pods to
/// another range, create a new pool and disable the old one.
pub fn pool_unchanged_shape(stored: &IPPool, updated: &IPPool) -> Result<(), ValidationError> {
    if stored.spec.cidr != updated.spec.cidr {
        return Err(ValidationError::new(
            "spec.cidr",
            format!(
                "cannot be changed (was {}); create a new pool and disable this one",
                stored.spec.cidr
            ),
        ));
    }
    let (old, new) = (
        stored.spec.effective_block_size(),
        updated.spec.effective_block_size(),
    );
    if old != new {
        return Err(ValidationError::new(
            "spec.blockSize",
            format!("cannot be changed (was {old}); create a new pool and disable this one"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, cidr: &str, block_size: Option<u8>) -> IPPool {
        IPPool::new(
            name,
            IPPoolSpec {
                cidr: cidr.into(),
                block_size,
                ..Default::default()
            },
        )
    }

    #[test]
    fn block_size_40_is_refused_naming_block_size() {
        let err = pool("p", "10.244.0.0/16", Some(40)).validate().unwrap_err();
        assert_eq!(err.field, "spec.blockSize");
        assert!(err.message.contains("20-32"), "{err}");
    }

    #[test]
    fn block_larger_than_pool_is_refused() {
        let err = pool("p", "10.244.0.0/24", Some(20)).validate().unwrap_err();
        assert_eq!(err.field, "spec.blockSize");
    }

    #[test]
    fn ipv6_pool_takes_ipv6_block_sizes() {
        pool("p", "fd00:10:244::/48", None).validate().unwrap();
        pool("p", "fd00:10:244::/48", Some(120)).validate().unwrap();
        let err = pool("p", "fd00:10:244::/48", Some(26))
            .validate()
            .unwrap_err();
        assert!(err.message.contains("116-128"), "{err}");
    }

    #[test]
    fn unmasked_cidr_is_refused_naming_cidr() {
        let err = pool("p", "10.244.0.1/16", None).validate().unwrap_err();
        assert_eq!(err.field, "spec.cidr");
        assert!(err.message.contains("10.244.0.0/16"), "{err}");
    }

    #[test]
    fn link_local_pools_are_refused() {
        assert!(pool("p", "169.254.0.0/16", None).validate().is_err());
        assert!(pool("p", "169.0.0.0/8", Some(26)).validate().is_err());
        assert!(pool("p", "fe80::/64", None).validate().is_err());
    }

    #[test]
    fn overlapping_pools_are_refused_and_disjoint_accepted() {
        let a = pool("a", "10.244.0.0/16", None);
        let b = pool("b", "10.244.128.0/17", None);
        let c = pool("c", "10.245.0.0/16", None);
        assert!(pools_overlap(&b, std::slice::from_ref(&a)).is_err());
        pools_overlap(&c, std::slice::from_ref(&a)).unwrap();
        // A pool does not overlap its own previous version.
        pools_overlap(&a, std::slice::from_ref(&a)).unwrap();
    }

    #[test]
    fn cidr_and_block_size_are_immutable_but_other_fields_are_not() {
        let stored = pool("p", "10.244.0.0/16", None);
        let mut same = pool("p", "10.244.0.0/16", Some(26));
        same.spec.disabled = Some(true);
        pool_unchanged_shape(&stored, &same).unwrap();
        let err = pool_unchanged_shape(&stored, &pool("p", "10.244.0.0/16", Some(28))).unwrap_err();
        assert_eq!(err.field, "spec.blockSize");
        let err = pool_unchanged_shape(&stored, &pool("p", "10.244.0.0/15", None)).unwrap_err();
        assert_eq!(err.field, "spec.cidr");
    }

    #[test]
    fn bad_node_selector_is_refused() {
        let mut p = pool("p", "10.244.0.0/16", None);
        p.spec.node_selector = Some("rack == ".into());
        assert_eq!(p.validate().unwrap_err().field, "spec.nodeSelector");
    }

    #[test]
    fn allowed_uses_load_balancer_stands_alone_and_is_cluster_wide() {
        let mut p = pool("p", "203.0.113.0/24", Some(28));
        assert!(p.spec.allows(IPPoolUse::Workload));
        assert!(!p.spec.allows(IPPoolUse::LoadBalancer));
        p.spec.allowed_uses = Some(vec![IPPoolUse::LoadBalancer]);
        p.validate().unwrap();
        assert!(p.spec.allows(IPPoolUse::LoadBalancer));
        assert!(!p.spec.allows(IPPoolUse::Workload));
        p.spec.node_selector = Some("all()".into());
        p.validate().unwrap();
        p.spec.node_selector = Some("rack == 'a'".into());
        assert_eq!(p.validate().unwrap_err().field, "spec.nodeSelector");
        p.spec.node_selector = None;
        p.spec.allowed_uses = Some(vec![IPPoolUse::Workload, IPPoolUse::LoadBalancer]);
        let err = p.validate().unwrap_err();
        assert_eq!(err.field, "spec.allowedUses");
        assert!(err.message.contains("cannot be combined"), "{err}");
        p.spec.allowed_uses = Some(vec![]);
        assert_eq!(p.validate().unwrap_err().field, "spec.allowedUses");
        p.spec.allowed_uses = Some(vec![IPPoolUse::Workload]);
        p.validate().unwrap();
    }

    #[test]
    fn allowed_uses_round_trips_with_calico_spelling() {
        let p: IPPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.twill.dev/v1", "kind": "IPPool",
            "metadata": {"name": "lb"},
            "spec": {"cidr": "203.0.113.0/24", "allowedUses": ["LoadBalancer"]}
        }))
        .unwrap();
        assert_eq!(p.spec.allowed_uses, Some(vec![IPPoolUse::LoadBalancer]));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v["spec"]["allowedUses"],
            serde_json::json!(["LoadBalancer"])
        );
        assert!(
            serde_json::from_value::<IPPool>(serde_json::json!({
                "apiVersion": "networking.twill.dev/v1", "kind": "IPPool",
                "metadata": {"name": "lb"},
                "spec": {"cidr": "203.0.113.0/24", "allowedUses": ["Tunnel2"]}
            }))
            .is_err()
        );
    }
}
