//! Best-path selection (RFC 4271 §9.1.2.2 plus the usual tie-breaks) and the ECMP rule.
//! Pure comparisons over paths; nothing here mutates a table.

use std::cmp::Ordering;

use crate::packet::{AsSegment, Origin};

use super::Path;

/// LOCAL_PREF assumed when a path has none (eBGP-learned or locally originated).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// AS_PATH length as RFC 4271 §9.1.2.2 a) counts it: an AS_SET counts as one, confederation
/// segments do not count.
pub fn as_path_len(segments: &[AsSegment]) -> usize {
    segments
        .iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => 0,
        })
        .sum()
}

/// The neighbouring AS a path came through: the first AS of the path (0 for local paths).
pub fn neighbor_as(segments: &[AsSegment]) -> u32 {
    for s in segments {
        match s {
            AsSegment::Sequence(v) if !v.is_empty() => return v[0],
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => continue,
            _ => return 0,
        }
    }
    0
}

fn local_pref(p: &Path) -> u32 {
    p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

fn origin_rank(o: Option<Origin>) -> u8 {
    match o.unwrap_or(Origin::Incomplete) {
        Origin::Igp => 0,
        Origin::Egp => 1,
        Origin::Incomplete => 2,
    }
}

/// The steps that must tie for two paths to share forwarding (ECMP): degree of
/// preference, AS_PATH length, ORIGIN, MED (between paths from the same neighbour AS),
/// and eBGP/iBGP. `Less` = `a` is better.
fn compare_multipath_steps(a: &Path, b: &Path) -> Ordering {
    // a) highest LOCAL_PREF.
    local_pref(b)
        .cmp(&local_pref(a))
        // Locally originated paths first.
        .then_with(|| b.source.is_local().cmp(&a.source.is_local()))
        // b) shortest AS_PATH.
        .then_with(|| as_path_len(&a.attrs.as_path).cmp(&as_path_len(&b.attrs.as_path)))
        // c) lowest ORIGIN.
        .then_with(|| origin_rank(a.attrs.origin).cmp(&origin_rank(b.attrs.origin)))
        // d) lowest MED, only between paths from the same neighbouring AS.
        .then_with(|| {
            if neighbor_as(&a.attrs.as_path) == neighbor_as(&b.attrs.as_path) {
                a.attrs.med.unwrap_or(0).cmp(&b.attrs.med.unwrap_or(0))
            } else {
                Ordering::Equal
            }
        })
        // e) eBGP-learned over iBGP-learned.
        .then_with(|| b.source.ebgp.cmp(&a.source.ebgp))
}

/// Total preference order. `Less` = `a` is better.
pub fn compare(a: &Path, b: &Path) -> Ordering {
    compare_multipath_steps(a, b)
        // f) (IGP cost to the next hop: every next hop here is directly connected.)
        // Fresh paths over stale ones kept through a peer's graceful restart.
        .then_with(|| a.stale.cmp(&b.stale))
        // RFC 4456 §9: ORIGINATOR_ID stands in for the router id; then shorter CLUSTER_LIST.
        .then_with(|| a.effective_router_id().cmp(&b.effective_router_id()))
        .then_with(|| a.attrs.cluster_list.len().cmp(&b.attrs.cluster_list.len()))
        // g) lowest peer address.
        .then_with(|| a.source.addr.cmp(&b.source.addr))
}

/// Whether `b` may share forwarding with the best path `a`.
pub fn multipath_equal(a: &Path, b: &Path) -> bool {
    compare_multipath_steps(a, b) == Ordering::Equal && !a.source.is_local()
}
