use super::*;
use crate::packet::{AsSegment, Origin};

fn src(addr: &str, id: [u8; 4], asn: u32, ebgp: bool) -> Arc<Source> {
    Arc::new(Source {
        addr: Some(addr.parse().unwrap()),
        router_id: Ipv4Addr::from(id),
        asn,
        ebgp,
        rr_client: false,
    })
}

fn local() -> Arc<Source> {
    Arc::new(Source {
        addr: None,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        asn: 65001,
        ebgp: false,
        rr_client: false,
    })
}

fn attrs(f: impl FnOnce(&mut PathAttributes)) -> Arc<PathAttributes> {
    let mut a = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![AsSegment::Sequence(vec![65002])],
        ..Default::default()
    };
    f(&mut a);
    Arc::new(a)
}

fn path(source: Arc<Source>, a: Arc<PathAttributes>, nh: &str) -> Path {
    Path {
        source,
        attrs: a,
        next_hop: nh.parse().unwrap(),
        stale: false,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A baseline path from peer A (eBGP, AS 65002, id .9, address .2).
fn base() -> Path {
    path(
        src("192.0.2.2", [192, 0, 2, 9], 65002, true),
        attrs(|_| {}),
        "192.0.2.2",
    )
}

/// A path from peer B that differs from the baseline only as `f` says.
fn other(f: impl FnOnce(&mut PathAttributes), ebgp: bool, id: [u8; 4]) -> Path {
    let a = attrs(|a| {
        a.as_path = vec![AsSegment::Sequence(vec![65003])];
        f(a);
    });
    path(src("192.0.2.3", id, 65003, ebgp), a, "192.0.2.3")
}

#[test]
fn best_path_steps_in_rfc_order() {
    use std::cmp::Ordering::{Greater, Less};
    let hi = [192, 0, 2, 200];
    let lo = [192, 0, 2, 1];
    // (what differs, the other path, how base compares to it)
    let cases: Vec<(&str, Path, std::cmp::Ordering)> = vec![
        (
            "higher local-pref wins",
            other(|a| a.local_pref = Some(200), true, hi),
            Greater,
        ),
        (
            "lower local-pref loses",
            other(|a| a.local_pref = Some(50), true, lo),
            Less,
        ),
        (
            "shorter as-path wins",
            other(
                |a| a.as_path = vec![AsSegment::Sequence(vec![65003, 1])],
                true,
                lo,
            ),
            Less,
        ),
        (
            "an as-set counts as one",
            other(
                |a| {
                    a.as_path = vec![
                        AsSegment::Sequence(vec![65003]),
                        AsSegment::Set(vec![1, 2, 3]),
                    ]
                },
                true,
                lo,
            ),
            Less,
        ),
        (
            "lower origin wins",
            other(|a| a.origin = Some(Origin::Incomplete), true, lo),
            Less,
        ),
        ("ebgp beats ibgp", other(|_| {}, false, lo), Less),
        (
            "lower router id wins at the end",
            other(|_| {}, true, hi),
            Less,
        ),
        (
            "higher router id loses at the end",
            other(|_| {}, true, lo),
            Greater,
        ),
        (
            "originator id replaces router id",
            other(
                |a| a.originator_id = Some(Ipv4Addr::new(1, 1, 1, 1)),
                true,
                hi,
            ),
            Greater,
        ),
    ];
    for (what, b, want) in cases {
        assert_eq!(best::compare(&base(), &b), want, "{what}");
        assert_eq!(
            best::compare(&b, &base()),
            want.reverse(),
            "{what} (reversed)"
        );
    }
}

#[test]
fn med_is_compared_only_within_one_neighbour_as() {
    let same_as = |med| {
        path(
            src("192.0.2.3", [192, 0, 2, 1], 65002, true),
            attrs(|a| a.med = Some(med)),
            "192.0.2.3",
        )
    };
    let a = path(
        src("192.0.2.2", [192, 0, 2, 9], 65002, true),
        attrs(|a| a.med = Some(50)),
        "192.0.2.2",
    );
    // Same neighbour AS: lower MED wins despite the higher router id.
    assert_eq!(best::compare(&a, &same_as(100)), std::cmp::Ordering::Less);
    // Different neighbour AS: MED ignored, router id decides.
    let b = other(|a| a.med = Some(100), true, [192, 0, 2, 1]);
    assert_eq!(best::compare(&a, &b), std::cmp::Ordering::Greater);
}

#[test]
fn locally_originated_path_beats_learned_one() {
    let l = path(local(), attrs(|a| a.as_path.clear()), "0.0.0.0");
    assert_eq!(best::compare(&l, &base()), std::cmp::Ordering::Less);
}

#[test]
fn equal_paths_from_two_peers_form_one_multipath() {
    let mut rib = Rib::new();
    let p = net("10.244.1.0/26");
    assert!(rib.update(p, base()).changed);
    assert!(rib.update(p, other(|_| {}, true, [192, 0, 2, 200])).changed);
    let hops: Vec<IpAddr> = rib
        .get(&p)
        .unwrap()
        .multipath()
        .iter()
        .map(|p| p.next_hop)
        .collect();
    assert_eq!(hops.len(), 2);
    assert!(hops.contains(&"192.0.2.2".parse().unwrap()));
    assert!(hops.contains(&"192.0.2.3".parse().unwrap()));
}

#[test]
fn worse_path_is_not_part_of_the_multipath() {
    let mut rib = Rib::new();
    let p = net("10.244.1.0/26");
    rib.update(p, base());
    let u = rib.update(
        p,
        other(|a| a.origin = Some(Origin::Incomplete), true, [1, 1, 1, 1]),
    );
    assert_eq!(
        u,
        Upsert {
            changed: false,
            added: true
        }
    );
    assert_eq!(rib.get(&p).unwrap().multipath().len(), 1);
}

#[test]
fn withdrawing_the_best_path_promotes_the_next() {
    let mut rib = Rib::new();
    let p = net("10.244.1.0/26");
    rib.update(p, base());
    rib.update(p, other(|_| {}, false, [1, 1, 1, 1]));
    assert!(rib.withdraw(&p, Some("192.0.2.2".parse().unwrap())));
    assert_eq!(
        rib.get(&p).unwrap().best().unwrap().next_hop,
        "192.0.2.3".parse::<IpAddr>().unwrap()
    );
    assert!(rib.withdraw(&p, Some("192.0.2.3".parse().unwrap())));
    assert!(rib.get(&p).is_none());
}

#[test]
fn withdrawing_an_unknown_path_changes_nothing() {
    let mut rib = Rib::new();
    let p = net("10.244.1.0/26");
    rib.update(p, base());
    assert!(!rib.withdraw(&p, Some("192.0.2.99".parse().unwrap())));
    assert!(!rib.withdraw(&net("10.0.0.0/8"), None));
}

#[test]
fn replacing_a_path_with_identical_attributes_is_no_change() {
    let mut rib = Rib::new();
    let p = net("10.244.1.0/26");
    let b = base();
    rib.update(p, b.clone());
    assert_eq!(
        rib.update(p, b),
        Upsert {
            changed: false,
            added: false
        }
    );
}

#[test]
fn removing_a_source_reports_every_prefix_it_held() {
    let mut rib = Rib::new();
    for i in 0..10u8 {
        rib.update(net(&format!("10.244.{i}.0/26")), base());
    }
    rib.update(net("10.244.100.0/26"), other(|_| {}, true, [1, 1, 1, 1]));
    let changed = rib.remove_source(Some("192.0.2.2".parse().unwrap()));
    assert_eq!(changed.len(), 10);
    assert_eq!(rib.len(), 1);
}

#[test]
fn stale_paths_are_swept_unless_refreshed() {
    let mut rib = Rib::new();
    let peer = Some("192.0.2.2".parse().unwrap());
    rib.update(net("10.244.1.0/26"), base());
    rib.update(net("10.244.2.0/26"), base());
    rib.mark_stale(peer);
    assert!(
        rib.get(&net("10.244.1.0/26"))
            .unwrap()
            .best()
            .unwrap()
            .stale
    );
    // The restarted peer re-announces one of the two.
    rib.update(net("10.244.1.0/26"), base());
    let swept = rib.sweep_stale(peer);
    assert_eq!(swept, vec![net("10.244.2.0/26")]);
    assert!(
        !rib.get(&net("10.244.1.0/26"))
            .unwrap()
            .best()
            .unwrap()
            .stale
    );
}

#[test]
fn adj_rib_out_sends_only_differences() {
    let mut out = AdjRibOut::default();
    let a = attrs(|_| {});
    assert!(out.advertise(net("10.0.0.0/24"), a.clone()));
    assert!(!out.advertise(net("10.0.0.0/24"), a));
    assert!(out.advertise(net("10.0.0.0/24"), attrs(|a| a.med = Some(5))));
    assert!(out.withdraw(&net("10.0.0.0/24")));
    assert!(!out.withdraw(&net("10.0.0.0/24")));
}
