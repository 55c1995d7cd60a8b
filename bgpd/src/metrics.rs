//! Prometheus metrics of the speaker: sessions by state, prefixes per peer, UPDATEs in and
//! out, errors by kind. Labels are bounded: a state name, a configured peer address, an
//! error *kind* — never error text.

use std::net::IpAddr;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::fsm::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrefixLabel {
    peer: String,
    /// received | accepted | advertised
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    kind: &'static str,
}

const STATES: [State; 6] = [
    State::Idle,
    State::Connect,
    State::Active,
    State::OpenSent,
    State::OpenConfirm,
    State::Established,
];

/// The speaker's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sessions: Family<StateLabel, Gauge>,
    prefixes: Family<PrefixLabel, Gauge>,
    updates: Family<DirectionLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("twill_bgp");
        let sessions = Family::<StateLabel, Gauge>::default();
        let prefixes = Family::<PrefixLabel, Gauge>::default();
        let updates = Family::<DirectionLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register("sessions", "BGP sessions by FSM state", sessions.clone());
        registry.register("prefixes", "Prefixes per peer by kind", prefixes.clone());
        registry.register("updates", "UPDATE messages by direction", updates.clone());
        registry.register("errors", "Session errors by kind", errors.clone());
        Self {
            registry,
            sessions,
            prefixes,
            updates,
            errors,
        }
    }

    pub fn update_in(&self) {
        self.updates
            .get_or_create(&DirectionLabel { direction: "in" })
            .inc();
    }

    pub fn update_out(&self) {
        self.updates
            .get_or_create(&DirectionLabel { direction: "out" })
            .inc();
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabel { kind }).inc();
    }

    /// Refreshes the gauges from (peer, state, received, accepted, advertised).
    pub fn observe(&self, peers: impl Iterator<Item = (IpAddr, State, u64, u64, u64)>) {
        let mut counts = [0i64; 6];
        self.prefixes.clear();
        for (addr, state, rx, acc, adv) in peers {
            if let Some(i) = STATES.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
            for (kind, v) in [("received", rx), ("accepted", acc), ("advertised", adv)] {
                self.prefixes
                    .get_or_create(&PrefixLabel {
                        peer: addr.to_string(),
                        kind,
                    })
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        }
        for (s, c) in STATES.iter().zip(counts) {
            self.sessions
                .get_or_create(&StateLabel { state: s.name() })
                .set(c);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_sessions_by_state_and_prefixes_per_peer() {
        let m = Metrics::new();
        m.update_in();
        m.error("hold_timer_expired");
        m.observe([("192.0.2.1".parse().unwrap(), State::Established, 5, 4, 3)].into_iter());
        let text = m.encode();
        assert!(
            text.contains("twill_bgp_sessions{state=\"Established\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("twill_bgp_sessions{state=\"Idle\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("twill_bgp_prefixes{peer=\"192.0.2.1\",kind=\"accepted\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("twill_bgp_updates_total{direction=\"in\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("twill_bgp_errors_total{kind=\"hold_timer_expired\"} 1"),
            "{text}"
        );
    }
}
