//! What crosses the wire: tcpdump's own BGP decoder on one interface of a namespace (an
//! independent reading of the MP_REACH_NLRI next hops each side sends), and the addresses
//! of that interface.

use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;

/// tcpdump printing every BGP message on `dev` verbosely, line-buffered into its log.
pub struct Capture {
    pub guard: ChildGuard,
}

impl Capture {
    pub fn start(ns: &Netns, dev: &str) -> Self {
        let guard = ChildGuard::spawn_in(
            ns,
            "tcpdump",
            "tcpdump",
            &["-i", dev, "-n", "-vvv", "-l", "-s", "0", "tcp port 179"],
        )
        .unwrap();
        // Nothing sent before tcpdump listens is seen: wait for it.
        twill_harness::wait::wait_until(
            "tcpdump listening",
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(50),
            || guard.log().contains("listening on"),
        )
        .unwrap();
        Self { guard }
    }

    /// The decoded packets so far.
    pub fn text(&self) -> String {
        self.guard.log()
    }

    /// The `nexthop: ...` field of each MP_REACH_NLRI of `afi` ("IPv6" or "IPv4") in the
    /// packets `from` sent (tcpdump's `src.port > dst.port` header lines), as printed.
    pub fn mp_next_hops(&self, from: &str, afi: &str) -> Vec<String> {
        let text = self.text();
        let mut out = Vec::new();
        let mut sender = false;
        // tcpdump prints "AFI: IPv6 (2), SAFI: Unicast (1)" and, on the next line,
        // "nexthop: 2001:db8:1::2, fe80::1, nh-length: 32, no SNPA".
        let mut in_family = false;
        for line in text.lines() {
            let t = line.trim_start();
            // Packet header lines: "2001:db8:1::1.179 > 2001:db8:1::2.40000: Flags [P.]...".
            if let Some((head, _)) = t.split_once(" > ")
                && t.contains("Flags [")
            {
                let src = head.rsplit(' ').next().unwrap_or(head);
                sender = src.rsplit_once('.').is_some_and(|(a, _)| a == from);
                in_family = false;
                continue;
            }
            if t.starts_with("AFI: ") {
                in_family = t.starts_with(&format!("AFI: {afi} ("));
            } else if let Some(nh) = t.strip_prefix("nexthop: ")
                && sender
                && in_family
            {
                out.push(ipv6_in_quads(nh.trim()));
            }
        }
        out
    }
}

/// The one veth-like interface of a test namespace (not `lo`).
pub fn only_link(ns: &Netns) -> String {
    let links = ns.ip(&["-o", "link", "show"]).unwrap();
    links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .find(|n| n != "lo")
        .unwrap()
}

/// The kernel's own link-local address of `dev` (derived from its MAC), once duplicate
/// address detection is over: daemons ignore a tentative address (BIRD would send no
/// link-local next hop at all).
pub fn link_local_of(ns: &Netns, dev: &str) -> String {
    let read = || {
        let out = ns
            .ip(&[
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                dev,
                "scope",
                "link",
                "-tentative",
            ])
            .unwrap_or_default();
        out.split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_owned()
    };
    twill_harness::wait::wait_until(
        "a link-local address past DAD",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(100),
        || !read().is_empty(),
    )
    .unwrap();
    read()
}

/// tcpdump 4.99 prints an IPv6 next hop of IPv4 NLRI (RFC 8950) as dotted quads, four
/// octets each ("32.1.13.184, 0.1.0.0, ..., nh-length: 32"): put the addresses back
/// together ("2001:db8:1::1, fe80::..., nh-length: 32"). Anything else is left as is.
fn ipv6_in_quads(printed: &str) -> String {
    let Some((hops, rest)) = printed.split_once(", nh-length") else {
        return printed.to_owned();
    };
    let quads: Option<Vec<std::net::Ipv4Addr>> = hops.split(", ").map(|q| q.parse().ok()).collect();
    let Some(quads) = quads.filter(|q| q.len() % 4 == 0 && !q.is_empty()) else {
        return printed.to_owned();
    };
    let octets: Vec<u8> = quads.iter().flat_map(|q| q.octets()).collect();
    let v6: Vec<String> = octets
        .chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            std::net::Ipv6Addr::from(a).to_string()
        })
        .collect();
    format!("{}, nh-length{rest}", v6.join(", "))
}
