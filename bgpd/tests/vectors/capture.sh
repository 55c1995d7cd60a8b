#!/bin/bash
# Captures real BGP sessions between BIRD 2, GoBGP and FRR in throwaway network namespaces
# and writes the pcaps to $OUT (default: a fresh temp dir). The codec's test vectors in
# bgpd/tests/codec_*.rs were cut from these captures with pcap_to_messages.py.
#
#   sudo bash bgpd/tests/vectors/capture.sh /tmp/caps
#   python3 bgpd/tests/vectors/pcap_to_messages.py /tmp/caps/*.pcap
#
# Topology (all links 192.0.2.0/24 and fd00::/8):
#   A: BIRD 2,  AS 4200000001 -- B: GoBGP, AS 65002   (192.0.2.1/.2, one IPv4 session, v4+v6)
#   A                         -- C: FRR,   AS 65003   (192.0.2.5/.6 and fd00:13::1/::2)
#   A                         -- D: passive_peer.py, AS 65004 without the 4-octet AS
#                                   capability (192.0.2.9/.10): BIRD sends AS_TRANS + AS4_PATH
#   A (route reflector)       -- E: GoBGP, AS 4200000001, iBGP client (192.0.2.13/.14)
#   A (route reflector)       -- F: passive_peer.py, AS 4200000001, iBGP client
#                                   (192.0.2.17/.18): gets E's routes with ORIGINATOR_ID,
#                                   CLUSTER_LIST and LOCAL_PREF
set -u
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
W=$(mktemp -d)
P="h2cap$$"
NS_A="$P-a" NS_B="$P-b" NS_C="$P-c" NS_D="$P-d" NS_E="$P-e" NS_F="$P-f"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for f in "$W"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 1
    for ns in $NS_A $NS_B $NS_C $NS_D $NS_E $NS_F; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT

for ns in $NS_A $NS_B $NS_C $NS_D $NS_E $NS_F; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
link() { # link NS1 IF1 ADDR1 NS2 IF2 ADDR2 [V6_1 V6_2]
    ip link add "$2" type veth peer name "$5"
    ip link set "$2" netns "$1"; ip link set "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"; ip -n "$4" addr add "$6" dev "$5"
    if [ $# -ge 8 ]; then
        ip -n "$1" addr add "$7" dev "$2" nodad; ip -n "$4" addr add "$8" dev "$5" nodad
    fi
    ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}
link $NS_A "h2a$$b" 192.0.2.1/30 $NS_B "h2b$$a" 192.0.2.2/30 fd00:12::1/64 fd00:12::2/64
link $NS_A "h2a$$c" 192.0.2.5/30 $NS_C "h2c$$a" 192.0.2.6/30 fd00:13::1/64 fd00:13::2/64
link $NS_A "h2a$$d" 192.0.2.9/30 $NS_D "h2d$$a" 192.0.2.10/30
link $NS_A "h2a$$e" 192.0.2.13/30 $NS_E "h2e$$a" 192.0.2.14/30
link $NS_A "h2a$$f" 192.0.2.17/30 $NS_F "h2f$$a" 192.0.2.18/30
sleep 2 # link-local addresses (FRR sends one as the second IPv6 next hop)

for pair in "b:h2a$$b" "c:h2a$$c" "d:h2a$$d" "e:h2a$$e" "f:h2a$$f"; do
    ip netns exec $NS_A tcpdump -i "${pair#*:}" -U -s 0 -w "$OUT/a-${pair%%:*}.pcap" tcp port 179 2>/dev/null &
    PIDS+=($!)
done
sleep 1

cat > "$W/bird-a.conf" <<CONF
router id 192.0.2.1;
protocol device {}
protocol static s4 {
    ipv4;
    route 10.244.1.0/26 blackhole { bgp_community.add((65001,100)); bgp_large_community.add((4200000001,1,2)); bgp_med = 50; };
    route 10.244.2.0/24 blackhole;
}
protocol static s6 {
    ipv6;
    route fd00:10:244:1::/64 blackhole { bgp_community.add((65001,200)); };
}
protocol bgp gobgp {
    local 192.0.2.1 as 4200000001; neighbor 192.0.2.2 as 65002;
    ipv4 { import all; export all; };
    ipv6 { import all; export all; next hop address fd00:12::1; };
}
protocol bgp frr4 {
    local 192.0.2.5 as 4200000001; neighbor 192.0.2.6 as 65003;
    ipv4 { import all; export all; };
}
protocol bgp frr6 {
    local fd00:13::1 as 4200000001; neighbor fd00:13::2 as 65003;
    ipv6 { import all; export all; };
}
protocol bgp old {
    local 192.0.2.9 as 4200000001; neighbor 192.0.2.10 as 65004;
    ipv4 { import all; export all; };
}
protocol bgp rr_e {
    local 192.0.2.13 as 4200000001; neighbor 192.0.2.14 as 4200000001;
    direct; rr client; rr cluster id 192.0.2.1;
    ipv4 { import all; export all; gateway direct; };
}
protocol bgp rr_f {
    local 192.0.2.17 as 4200000001; neighbor 192.0.2.18 as 4200000001;
    direct; rr client; rr cluster id 192.0.2.1;
    ipv4 { import all; export all; gateway direct; };
}
CONF
cat > "$W/gobgp-b.toml" <<CONF
[global.config]
  as = 65002
  router-id = "192.0.2.2"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.1"
    peer-as = 4200000001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
CONF
cat > "$W/gobgp-e.toml" <<CONF
[global.config]
  as = 4200000001
  router-id = "192.0.2.14"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.13"
    peer-as = 4200000001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
CONF
cat > "$W/frr-c.conf" <<CONF
router bgp 65003
 bgp router-id 192.0.2.6
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.5 remote-as 4200000001
 neighbor fd00:13::1 remote-as 4200000001
 address-family ipv4 unicast
  network 10.244.3.0/24
  neighbor 192.0.2.5 activate
  no neighbor fd00:13::1 activate
 exit-address-family
 address-family ipv6 unicast
  network fd00:10:244:3::/64
  neighbor fd00:13::1 activate
 exit-address-family
CONF
chmod 755 "$W"; chmod 644 "$W"/*.conf

sleep 0.5
ip netns exec $NS_A bird -c "$W/bird-a.conf" -s "$W/bird-a.ctl" -P "$W/bird-a.pid"
ip netns exec $NS_D python3 "$(dirname "$0")/passive_peer.py" 192.0.2.10 65004 0 &
PIDS+=($!)
ip netns exec $NS_F python3 "$(dirname "$0")/passive_peer.py" 192.0.2.18 4200000001 1 &
PIDS+=($!)
ip netns exec $NS_E gobgpd -f "$W/gobgp-e.toml" --api-hosts 127.0.0.1:50051 -l warn > "$W/gobgpd-e.log" 2>&1 &
PIDS+=($!)
ip netns exec $NS_B gobgpd -f "$W/gobgp-b.toml" --api-hosts 127.0.0.1:50051 -l warn > "$W/gobgpd.log" 2>&1 &
PIDS+=($!)
mkdir -p "$W/frr"; chown frr:frr "$W/frr" 2>/dev/null
ip netns exec $NS_C /usr/lib/frr/bgpd -Z -S -n -f "$W/frr-c.conf" -i "$W/frr-c.pid" \
    -z "$W/frr/zserv.api" --vty_socket "$W/frr" --log "file:$W/frr.log" -d
birdc_a() { ip netns exec $NS_A birdc -s "$W/bird-a.ctl" "$@"; }
gobgp_b() { ip netns exec $NS_B gobgp -u 127.0.0.1 -p 50051 "$@"; }
gobgp_e() { ip netns exec $NS_E gobgp -u 127.0.0.1 -p 50051 "$@"; }

for i in $(seq 1 300); do
    n=$(birdc_a show protocols | grep -c Established)
    [ "$n" -ge 6 ] && break
    sleep 0.2
done
birdc_a show protocols
gobgp_b global rib add 10.244.5.0/24 community 65002:5 large-community 65002:1:1 med 10
gobgp_b global rib -a ipv6 add fd00:10:244:5::/64 nexthop fd00:12::2 community 65002:6
gobgp_b global rib add 10.244.7.0/24 aggregator 4200000002:192.0.2.2  # AGGREGATOR
gobgp_e global rib add 10.244.6.0/24 local-pref 200 community 65001:6  # reflected to F
sleep 3
birdc_a reload in gobgp            # ROUTE-REFRESH from BIRD
gobgp_b neighbor 192.0.2.1 softresetin   # ROUTE-REFRESH from GoBGP
sleep 2
gobgp_b global rib del 10.244.5.0/24
gobgp_b global rib -a ipv6 del fd00:10:244:5::/64
sleep 2
birdc_a disable s4                 # BIRD withdraws IPv4 (to GoBGP, FRR, the 2-octet peer)
birdc_a disable s6                 # BIRD withdraws IPv6 (MP_UNREACH)
sleep 2
gobgp_e neighbor 192.0.2.13 shutdown  # Cease from GoBGP
birdc_a disable gobgp              # Cease from BIRD
birdc_a disable frr4
birdc_a disable frr6
birdc_a disable old
sleep 2
echo "captures in $OUT"
ls -l "$OUT"
