//! Domain types to protobuf, at the API boundary. Conversions destructure exhaustively so
//! a new field on either side breaks the build instead of being silently dropped.

use std::time::SystemTime;

use twill_proto::bgp as pb;

use crate::bfd::SessionStatus;
use crate::packet::{AsSegment, Origin, PathAttributes};
use crate::speaker::{BfdPeerStatus, Event, PeerStatus, RouteEntry};

pub fn peer(p: PeerStatus) -> pb::Peer {
    let PeerStatus {
        address,
        asn,
        kind,
        state,
        since,
        router_id,
        received,
        accepted,
        advertised,
        last_error,
        bfd,
        held,
    } = p;
    let since_unix = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let uptime_seconds = SystemTime::now()
        .duration_since(since)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    pb::Peer {
        address: address.to_string(),
        asn,
        r#type: kind.to_owned(),
        state: state.name().to_owned(),
        since_unix,
        uptime_seconds,
        router_id: router_id.map(|r| r.to_string()).unwrap_or_default(),
        prefixes_received: received,
        prefixes_accepted: accepted,
        prefixes_advertised: advertised,
        last_error: last_error.unwrap_or_default(),
        bfd: bfd.map(bfd_status),
        held: held.unwrap_or_default(),
    }
}

fn bfd_status(b: BfdPeerStatus) -> pb::BfdStatus {
    let BfdPeerStatus {
        session,
        holding_bgp,
    } = b;
    let SessionStatus {
        state,
        remote_state,
        diag,
        local_discr,
        remote_discr,
        tx_interval,
        detect_time,
    } = session;
    let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    pb::BfdStatus {
        state: state.name().to_owned(),
        remote_state: remote_state.name().to_owned(),
        diagnostic: diag.name().to_owned(),
        local_discriminator: local_discr,
        remote_discriminator: remote_discr,
        tx_interval_ms: ms(tx_interval),
        detect_time_ms: ms(detect_time),
        holding_bgp,
    }
}

pub fn as_path(segments: &[AsSegment]) -> String {
    let mut parts = Vec::new();
    for s in segments {
        match s {
            AsSegment::Sequence(v) | AsSegment::ConfedSequence(v) => {
                parts.extend(v.iter().map(u32::to_string));
            }
            AsSegment::Set(v) | AsSegment::ConfedSet(v) => {
                let inner: Vec<String> = v.iter().map(u32::to_string).collect();
                parts.push(format!("{{{}}}", inner.join(",")));
            }
        }
    }
    parts.join(" ")
}

pub fn route(r: RouteEntry) -> pb::Route {
    let RouteEntry {
        prefix,
        from,
        next_hop,
        best,
        multipath,
        stale,
        attrs,
    } = r;
    let PathAttributes {
        origin,
        as_path: path,
        med,
        local_pref,
        communities,
        large_communities,
        ..
    } = attrs;
    pb::Route {
        prefix: prefix.to_string(),
        from_peer: from.map(|a| a.to_string()).unwrap_or_default(),
        next_hop: next_hop.to_string(),
        best,
        multipath,
        stale,
        as_path: as_path(&path),
        origin: match origin {
            Some(Origin::Igp) | None => "igp",
            Some(Origin::Egp) => "egp",
            Some(Origin::Incomplete) => "incomplete",
        }
        .to_owned(),
        med,
        local_pref,
        communities: communities
            .iter()
            .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
            .collect(),
        large_communities: large_communities
            .iter()
            .map(|c| format!("{}:{}:{}", c.global_admin, c.local_data1, c.local_data2))
            .collect(),
    }
}

pub fn event(e: Event) -> pb::WatchEvent {
    let ev = match e {
        Event::PeerState { peer, state } => pb::watch_event::Event::Peer(pb::PeerEvent {
            address: peer.to_string(),
            state: state.name().to_owned(),
        }),
        Event::Route { prefix, next_hops } => pb::watch_event::Event::Route(pb::RouteEvent {
            prefix: prefix.to_string(),
            next_hops: next_hops.iter().map(ToString::to_string).collect(),
        }),
    };
    pb::WatchEvent { event: Some(ev) }
}
