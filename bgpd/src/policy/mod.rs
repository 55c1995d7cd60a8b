//! Route policy: BGPFilter-shaped import/export filters, and the per-peer limits
//! (max-prefix). Pure functions over prefixes; never touches the RIB or sessions.

mod filter;

pub use filter::{Action, Filter, InvalidRule, MatchOperator, PrefixLength, Rule};

use ipnet::IpNet;

/// Direction a filter list is applied in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Import,
    Export,
}

/// Applies filters in order: the first rule that matches (in the first filter that has
/// one) decides; a prefix no rule matches is accepted (Calico's BGPFilter default).
pub fn evaluate<'a>(
    filters: impl IntoIterator<Item = &'a Filter>,
    dir: Direction,
    prefix: &IpNet,
) -> Action {
    for f in filters {
        if let Some(a) = f.decide(dir, prefix) {
            return a;
        }
    }
    Action::Accept
}

/// Whether a peer now holding `count` accepted prefixes has exceeded its limit.
pub fn exceeds_max_prefixes(limit: Option<u32>, count: usize) -> bool {
    limit.is_some_and(|l| count > l as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn no_filters_accepts_everything() {
        assert_eq!(
            evaluate([], Direction::Import, &net("10.0.0.0/8")),
            Action::Accept
        );
    }

    #[test]
    fn max_prefix_trips_only_above_the_limit() {
        assert!(!exceeds_max_prefixes(Some(2), 2));
        assert!(exceeds_max_prefixes(Some(2), 3));
        assert!(!exceeds_max_prefixes(None, 1_000_000));
    }
}
