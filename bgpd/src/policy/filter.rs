//! Filters shaped like Calico's `BGPFilter`: per direction and family, rules matching a
//! CIDR with an operator (Equal, NotEqual, In, NotIn) and an optional prefix-length range,
//! with an action; first match wins.

use ipnet::IpNet;
use serde::Deserialize;

use super::Direction;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Action {
    Accept,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum MatchOperator {
    /// The prefix is exactly `cidr`.
    Equal,
    /// The prefix is anything but `cidr`.
    NotEqual,
    /// The prefix lies within `cidr` (or is `cidr`).
    In,
    /// The prefix does not lie within `cidr`.
    NotIn,
}

/// Inclusive bounds on the prefix length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default)]
    pub min: Option<u8>,
    #[serde(default)]
    pub max: Option<u8>,
}

/// One rule. Without `cidr` the rule matches every prefix of its family (then only
/// `prefix_length` narrows it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, alias = "matchOperator")]
    pub match_operator: Option<MatchOperator>,
    #[serde(default)]
    pub cidr: Option<IpNet>,
    #[serde(default, alias = "prefixLength")]
    pub prefix_length: Option<PrefixLength>,
}

impl Rule {
    pub fn matches(&self, prefix: &IpNet) -> bool {
        if let Some(cidr) = &self.cidr {
            let op = self.match_operator.unwrap_or(MatchOperator::In);
            let same_family = matches!(
                (cidr, prefix),
                (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
            );
            let hit = match op {
                MatchOperator::Equal => cidr == prefix,
                MatchOperator::NotEqual => same_family && cidr != prefix,
                MatchOperator::In => cidr.contains(prefix),
                MatchOperator::NotIn => same_family && !cidr.contains(prefix),
            };
            if !hit {
                return false;
            }
        }
        if let Some(pl) = &self.prefix_length {
            let len = prefix.prefix_len();
            if pl.min.is_some_and(|m| len < m) || pl.max.is_some_and(|m| len > m) {
                return false;
            }
        }
        true
    }
}

/// A named filter: rule lists per direction and family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, alias = "importV4")]
    pub import_v4: Vec<Rule>,
    #[serde(default, alias = "exportV4")]
    pub export_v4: Vec<Rule>,
    #[serde(default, alias = "importV6")]
    pub import_v6: Vec<Rule>,
    #[serde(default, alias = "exportV6")]
    pub export_v6: Vec<Rule>,
}

impl Filter {
    /// The action of the first matching rule for this direction and the prefix's family.
    pub fn decide(&self, dir: Direction, prefix: &IpNet) -> Option<Action> {
        let rules = match (dir, prefix) {
            (Direction::Import, IpNet::V4(_)) => &self.import_v4,
            (Direction::Export, IpNet::V4(_)) => &self.export_v4,
            (Direction::Import, IpNet::V6(_)) => &self.import_v6,
            (Direction::Export, IpNet::V6(_)) => &self.export_v6,
        };
        rules.iter().find(|r| r.matches(prefix)).map(|r| r.action)
    }

    /// Checks the rules; the error names the offending field under `at`.
    pub(crate) fn validate(&self, at: &str) -> Result<(), InvalidRule> {
        let lists = [
            ("import_v4", &self.import_v4, false),
            ("export_v4", &self.export_v4, false),
            ("import_v6", &self.import_v6, true),
            ("export_v6", &self.export_v6, true),
        ];
        for (name, rules, v6) in lists {
            let max_len = if v6 { 128 } else { 32 };
            for (i, r) in rules.iter().enumerate() {
                let field = format!("{at}.{name}[{i}]");
                if let Some(c) = &r.cidr
                    && matches!(c, IpNet::V6(_)) != v6
                {
                    return Err(InvalidRule::new(
                        format!("{field}.cidr"),
                        "address family does not match the rule list",
                    ));
                }
                if r.match_operator.is_some() && r.cidr.is_none() {
                    return Err(InvalidRule::new(
                        format!("{field}.match_operator"),
                        "needs a cidr",
                    ));
                }
                if let Some(pl) = &r.prefix_length {
                    let (lo, hi) = (pl.min.unwrap_or(0), pl.max.unwrap_or(max_len));
                    if lo > hi || hi > max_len {
                        return Err(InvalidRule::new(
                            format!("{field}.prefix_length"),
                            format!("need min <= max <= {max_len}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A rule that cannot be used, by field path (`filters.f.import_v4[0].cidr`) and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRule {
    pub field: String,
    pub reason: String,
}

impl InvalidRule {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn rule(action: Action, op: MatchOperator, cidr: &str) -> Rule {
        Rule {
            action,
            match_operator: Some(op),
            cidr: Some(net(cidr)),
            prefix_length: None,
        }
    }

    #[test]
    fn operators_match_as_calico_defines_them() {
        use MatchOperator::*;
        let cases = [
            (Equal, "10.244.0.0/16", "10.244.0.0/16", true),
            (Equal, "10.244.0.0/16", "10.244.1.0/26", false),
            (NotEqual, "10.244.0.0/16", "10.244.1.0/26", true),
            (NotEqual, "10.244.0.0/16", "10.244.0.0/16", false),
            (In, "10.244.0.0/16", "10.244.1.0/26", true),
            (In, "10.244.0.0/16", "10.245.0.0/26", false),
            (NotIn, "10.244.0.0/16", "10.245.0.0/26", true),
            (NotIn, "10.244.0.0/16", "10.244.1.0/26", false),
            (NotIn, "10.244.0.0/16", "fd00::/64", false),
        ];
        for (op, cidr, prefix, want) in cases {
            let r = rule(Action::Accept, op, cidr);
            assert_eq!(r.matches(&net(prefix)), want, "{op:?} {cidr} {prefix}");
        }
    }

    #[test]
    fn prefix_length_range_narrows_a_rule() {
        let r = Rule {
            action: Action::Reject,
            match_operator: Some(MatchOperator::In),
            cidr: Some(net("10.0.0.0/8")),
            prefix_length: Some(PrefixLength {
                min: Some(24),
                max: Some(26),
            }),
        };
        assert!(!r.matches(&net("10.1.0.0/16")));
        assert!(r.matches(&net("10.1.1.0/24")));
        assert!(r.matches(&net("10.1.1.0/26")));
        assert!(!r.matches(&net("10.1.1.0/27")));
    }

    #[test]
    fn first_matching_rule_wins_per_direction() {
        let f = Filter {
            import_v4: vec![
                rule(Action::Reject, MatchOperator::Equal, "10.244.9.0/26"),
                rule(Action::Accept, MatchOperator::In, "10.244.0.0/16"),
                rule(Action::Reject, MatchOperator::In, "0.0.0.0/0"),
            ],
            ..Default::default()
        };
        assert_eq!(
            f.decide(Direction::Import, &net("10.244.9.0/26")),
            Some(Action::Reject)
        );
        assert_eq!(
            f.decide(Direction::Import, &net("10.244.8.0/26")),
            Some(Action::Accept)
        );
        assert_eq!(
            f.decide(Direction::Import, &net("192.0.2.0/24")),
            Some(Action::Reject)
        );
        assert_eq!(f.decide(Direction::Export, &net("192.0.2.0/24")), None);
        assert_eq!(f.decide(Direction::Import, &net("fd00::/64")), None);
    }
}
