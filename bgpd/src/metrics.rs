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

/// The speaker's metric families, registered in the process's one registry (under
/// `twill_bgp_`) by [`Metrics::register`]; [`Metrics::new`] keeps them unregistered, for a
/// speaker whose process does not export them.
#[derive(Debug)]
pub struct Metrics {
    sessions: Family<StateLabel, Gauge>,
    prefixes: Family<PrefixLabel, Gauge>,
    updates: Family<DirectionLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    bfd_up: Gauge,
    bfd_transitions: Family<BfdStateLabel, Counter>,
    bfd_detections: Counter,
    bfd_dropped: Family<ReasonLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BfdStateLabel {
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Families that no registry exports.
    pub fn new() -> Self {
        Self::register(&mut Registry::default())
    }

    /// Registers the families in `root` under the prefix `twill_bgp`.
    pub fn register(root: &mut Registry) -> Self {
        let registry = root.sub_registry_with_prefix("twill_bgp");
        let sessions = Family::<StateLabel, Gauge>::default();
        let prefixes = Family::<PrefixLabel, Gauge>::default();
        let updates = Family::<DirectionLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register("sessions", "BGP sessions by FSM state", sessions.clone());
        registry.register("prefixes", "Prefixes per peer by kind", prefixes.clone());
        registry.register("updates", "UPDATE messages by direction", updates.clone());
        registry.register("errors", "Session errors by kind", errors.clone());
        let bfd_up = Gauge::default();
        let bfd_transitions = Family::<BfdStateLabel, Counter>::default();
        let bfd_detections = Counter::default();
        let bfd_dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "bfd_sessions_up",
            "BFD sessions in state Up",
            bfd_up.clone(),
        );
        registry.register(
            "bfd_transitions",
            "BFD session state changes by new state",
            bfd_transitions.clone(),
        );
        registry.register(
            "bfd_detections",
            "BFD sessions that went down because the detection time passed",
            bfd_detections.clone(),
        );
        registry.register(
            "bfd_dropped",
            "BFD packets discarded, by reason",
            bfd_dropped.clone(),
        );
        Self {
            sessions,
            prefixes,
            updates,
            errors,
            bfd_up,
            bfd_transitions,
            bfd_detections,
            bfd_dropped,
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

    /// A BFD session changed state; `detected` when the detection time ran out.
    pub fn bfd_transition(&self, to: &'static str, detected: bool) {
        self.bfd_transitions
            .get_or_create(&BfdStateLabel { to })
            .inc();
        if detected {
            self.bfd_detections.inc();
        }
    }

    pub fn bfd_sessions_up(&self, n: usize) {
        self.bfd_up.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A BFD packet was discarded (`reason` is a fixed kind, e.g. "ttl").
    pub fn bfd_dropped(&self, reason: &'static str) {
        self.bfd_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Discarded BFD packets of one reason so far (for tests and status).
    pub fn bfd_dropped_count(&self, reason: &'static str) -> u64 {
        self.bfd_dropped
            .get_or_create(&ReasonLabel { reason })
            .get()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_sessions_by_state_and_prefixes_per_peer() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.update_in();
        m.error("hold_timer_expired");
        m.observe([("192.0.2.1".parse().unwrap(), State::Established, 5, 4, 3)].into_iter());
        let text = twill_utils::telemetry::render(&registry);
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

    #[test]
    fn exposition_names_bfd_sessions_transitions_detections_and_drops() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.bfd_transition("Up", false);
        m.bfd_transition("Down", true);
        m.bfd_sessions_up(2);
        m.bfd_dropped("ttl");
        let text = twill_utils::telemetry::render(&registry);
        for want in [
            "twill_bgp_bfd_sessions_up 2",
            "twill_bgp_bfd_transitions_total{to=\"Down\"} 1",
            "twill_bgp_bfd_detections_total 1",
            "twill_bgp_bfd_dropped_total{reason=\"ttl\"} 1",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}
