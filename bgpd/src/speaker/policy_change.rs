//! A peer's import or export filters changed (a SIGHUP reload, or felix's `set_peers`)
//! while nothing else about it did: the session stays up. Export changes are applied by
//! re-exporting the table (only differences go out); import changes by asking the peer
//! for its routes again with ROUTE-REFRESH (RFC 2918), since rejected paths are not kept.
//! Only a peer without the route-refresh capability gets its session reset.

use std::net::IpAddr;

use bytes::BytesMut;
use ipnet::IpNet;

use super::export;
use super::owner::Owner;
use crate::config::{Family, PeerConfig};
use crate::fsm::cease;
use crate::packet::{Afi, DecodeCxt, Message, RouteRefresh, Safi, encode_message};
use crate::session::SessionCmd;

impl Owner {
    /// Applies new filters to a peer whose session is otherwise unchanged.
    pub(super) fn change_policy(&mut self, addr: IpAddr, cfg: PeerConfig) {
        let import = self.resolve(&cfg.import);
        let export_filters = self.resolve(&cfg.export);
        let ctx = self.export_ctx();
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let import_changed = import != p.import;
        let export_changed = export_filters != p.export;
        p.cfg = cfg;
        p.import = import;
        p.export = export_filters;
        let Some(live) = p.live.as_ref() else {
            return; // not up: the new filters apply from the next session on
        };
        let refresh = live.negotiated.route_refresh;
        let cxt = DecodeCxt {
            four_octet_as: live.negotiated.four_octet_as,
        };
        let families = live.negotiated.families.clone();
        if export_changed {
            let all: Vec<IpNet> = self.rib.iter().map(|(n, _)| n).collect();
            if let Some(bytes) = export::export(&ctx, &self.rib, p, &all) {
                self.stats.updates_out += 1;
                self.metrics.update_out();
                p.session.send(SessionCmd::Send(bytes));
            }
        }
        if !import_changed {
            return;
        }
        if !refresh {
            tracing::info!(peer = %addr, "import policy changed; the peer cannot refresh: reset");
            let cfg = p.cfg.clone();
            self.remove_peer(addr, cease::OTHER_CONFIG_CHANGE);
            self.add_peer(cfg);
            return;
        }
        tracing::info!(peer = %addr, "import policy changed: route refresh");
        let mut buf = BytesMut::new();
        for f in families {
            let (afi, safi) = match f {
                Family::Ipv4Unicast => (Afi::Ipv4, Safi::Unicast),
                Family::Ipv6Unicast => (Afi::Ipv6, Safi::Unicast),
            };
            encode_message(
                &Message::RouteRefresh(RouteRefresh { afi, safi }),
                &cxt,
                &mut buf,
            );
        }
        p.session.send(SessionCmd::Send(buf.freeze()));
    }
}
