//! BGP communities on what a node announces, from the `BGPConfiguration` named `default`
//! as Calico shapes them: `communities` names values (`name: internal`, `value:
//! 65000:100`), and `prefixAdvertisements` lists CIDRs whose routes (a block of the
//! pool, a borrowed address) carry communities — given by name or as a literal value.
//! A value is standard (`AS:value`, RFC 1997) or large (`a:b:c`, RFC 8092).

use std::collections::BTreeMap;

use ipnet::IpNet;
use twill_api::resources::BGPConfigurationSpec;
use twill_bgpd::packet::LargeCommunity;
use twill_bgpd::speaker::Communities;

/// Per-CIDR communities, ready to tag prefixes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Advertisements {
    rules: Vec<(IpNet, Communities)>,
    /// Values or names that could not be used (skipped).
    pub warnings: Vec<String>,
}

/// A community value: standard or large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Standard(u32),
    Large(LargeCommunity),
}

/// Parses `AS:value` (each 0-65535) or `a:b:c` (each 0-4294967295).
pub fn parse_value(text: &str) -> Result<Value, String> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    match parts.as_slice() {
        [a, v] => {
            let a: u16 = a
                .parse()
                .map_err(|_| format!("{text:?}: the AS part of AS:value is 0-65535"))?;
            let v: u16 = v
                .parse()
                .map_err(|_| format!("{text:?}: the value part of AS:value is 0-65535"))?;
            Ok(Value::Standard((u32::from(a) << 16) | u32::from(v)))
        }
        [a, b, c] => {
            let n = |s: &str| {
                s.parse::<u32>()
                    .map_err(|_| format!("{text:?}: large community parts are 0-4294967295"))
            };
            Ok(Value::Large(LargeCommunity {
                global_admin: n(a)?,
                local_data1: n(b)?,
                local_data2: n(c)?,
            }))
        }
        _ => Err(format!(
            "{text:?} is not a community (AS:value, or a:b:c for a large one)"
        )),
    }
}

/// Reads the advertisement rules of a `BGPConfiguration`.
pub fn advertisements(spec: Option<&BGPConfigurationSpec>) -> Advertisements {
    let mut out = Advertisements::default();
    let Some(spec) = spec else {
        return out;
    };
    let named: BTreeMap<&str, &str> = spec
        .communities
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    for adv in &spec.prefix_advertisements {
        let cidr: IpNet = match adv.cidr.parse() {
            Ok(c) => c,
            Err(_) => {
                out.warnings.push(format!(
                    "prefixAdvertisements: {:?} is not a CIDR",
                    adv.cidr
                ));
                continue;
            }
        };
        let mut tags = Communities::default();
        for c in &adv.communities {
            let text = named.get(c.as_str()).copied().unwrap_or(c);
            match parse_value(text) {
                Ok(Value::Standard(v)) => tags.standard.push(v),
                Ok(Value::Large(v)) => tags.large.push(v),
                Err(e) => out.warnings.push(format!(
                    "prefixAdvertisements {cidr}: {c:?} is neither a named community nor a value: {e}"
                )),
            }
        }
        out.rules.push((cidr.trunc(), tags));
    }
    out
}

impl Advertisements {
    /// The communities of a prefix: those of every rule whose CIDR holds it, in order,
    /// without repeats.
    pub fn for_prefix(&self, prefix: &IpNet) -> Communities {
        let mut out = Communities::default();
        for (cidr, tags) in &self.rules {
            if cidr.contains(prefix) {
                for s in &tags.standard {
                    if !out.standard.contains(s) {
                        out.standard.push(*s);
                    }
                }
                for l in &tags.large {
                    if !out.large.contains(l) {
                        out.large.push(*l);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use twill_api::resources::bgp::{Community, PrefixAdvertisement};

    use super::*;

    #[test]
    fn values_parse_or_say_why() {
        assert_eq!(
            parse_value("65000:100"),
            Ok(Value::Standard((65000 << 16) | 100))
        );
        assert_eq!(
            parse_value("4200000000:1:2"),
            Ok(Value::Large(LargeCommunity {
                global_admin: 4_200_000_000,
                local_data1: 1,
                local_data2: 2
            }))
        );
        assert!(parse_value("70000:1").unwrap_err().contains("0-65535"));
        assert!(parse_value("no").is_err());
    }

    #[test]
    fn prefixes_within_a_cidr_get_its_communities_by_name_or_value() {
        let spec = BGPConfigurationSpec {
            communities: vec![Community {
                name: "internal".into(),
                value: "65000:100".into(),
            }],
            prefix_advertisements: vec![
                PrefixAdvertisement {
                    cidr: "10.244.0.0/16".into(),
                    communities: vec!["internal".into(), "65000:1:2".into()],
                },
                PrefixAdvertisement {
                    cidr: "10.244.8.0/24".into(),
                    communities: vec!["65000:200".into(), "internal".into(), "bogus".into()],
                },
            ],
            ..Default::default()
        };
        let adv = advertisements(Some(&spec));
        assert_eq!(adv.warnings.len(), 1, "{:?}", adv.warnings);
        let block = adv.for_prefix(&"10.244.8.64/26".parse().unwrap());
        assert_eq!(
            block.standard,
            vec![(65000 << 16) | 100, (65000 << 16) | 200]
        );
        assert_eq!(block.large.len(), 1);
        let other = adv.for_prefix(&"10.244.1.0/26".parse().unwrap());
        assert_eq!(other.standard, vec![(65000 << 16) | 100]);
        assert!(adv.for_prefix(&"10.245.0.0/26".parse().unwrap()).is_empty());
        assert!(
            advertisements(None)
                .for_prefix(&"10.244.0.0/26".parse().unwrap())
                .is_empty()
        );
    }
}
