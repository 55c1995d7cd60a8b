//! Path attributes twill does not interpret, between real peers: ExaBGP announces routes
//! carrying an unknown optional transitive attribute and an unknown optional
//! non-transitive one; twill passes the first on to BIRD (Partial bit set, RFC 4271
//! §5) and drops the second.

mod support;

use support::peers::{Bird, Exabgp, bird_conf};
use support::*;

#[test]
fn unknown_optional_transitive_attributes_are_passed_on_and_non_transitive_ones_dropped() {
    // ExaBGP (192.0.2.3) and BIRD (192.0.2.2) share the link to twill (192.0.2.1).
    let (t, p) = linked("ua", &["192.0.2.1/24"], &["192.0.2.2/24", "192.0.2.3/24"]);
    let bird = Bird::start(
        &p,
        &bird_conf("192.0.2.2", "192.0.2.2", 65002, "192.0.2.1", 65001, &[], ""),
    );
    let exa = Exabgp::start(
        &p,
        "neighbor 192.0.2.1 {\n  router-id 192.0.2.3;\n  local-address 192.0.2.3;\n\
         local-as 65003;\n  peer-as 65001;\n  hold-time 9;\n\
         family { ipv4 unicast; }\n  static {\n\
         route 10.244.20.0/26 next-hop 192.0.2.3 attribute [0x63 0xc0 0x0102030405];\n\
         route 10.244.21.0/26 next-hop 192.0.2.3 attribute [0x64 0x80 0x0a0b0c];\n  }\n}\n",
    );
    let twill = Twill::start(
        &t,
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: { address: 0.0.0.0, port: 179 }\n\
         kernel: { install: true }\npeers:\n\
         - { address: 192.0.2.2, asn: 65002, hold_time: 9, connect_retry: 1 }\n\
         - { address: 192.0.2.3, asn: 65003, hold_time: 9, passive: true }\n",
    );
    let ctx = || {
        format!(
            "{}\nexabgp:\n{}\ntwill:\n{}",
            bird.context(),
            exa.guard.log_tail(20),
            twill.guard.log_tail(30)
        )
    };
    wait_for(
        "ExaBGP's routes reach BIRD through twill",
        SESSION_TIMEOUT,
        || {
            let r = bird.birdc(&["show", "route", "protocol", "twill"]);
            r.contains("10.244.20.0/26") && r.contains("10.244.21.0/26")
        },
        ctx,
    );
    let with_transitive = bird.birdc(&["show", "route", "10.244.20.0/26", "all"]);
    let with_other = bird.birdc(&["show", "route", "10.244.21.0/26", "all"]);
    // BIRD lists attributes it does not know as "BGP.<hex type> [t]: <value>".
    assert!(
        with_transitive.contains("BGP.63 [t]: 01 02 03 04 05"),
        "{with_transitive}"
    );
    assert!(
        !with_other.contains("BGP.64") && !with_other.contains("0a 0b 0c"),
        "the non-transitive attribute must not leave twill:\n{with_other}"
    );
    assert!(
        with_other.contains("BGP.as_path: 65001 65003"),
        "{with_other}"
    );
}
