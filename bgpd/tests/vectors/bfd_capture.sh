#!/bin/bash
# Captures BIRD <-> BIRD BFD control packets (100 ms x 3) for bgpd/tests/bfd_codec.rs:
#   sudo bash bgpd/tests/vectors/bfd_capture.sh; tcpdump -r ${OUT:-/tmp/h5cap}/bfd.pcap -nn -x
# Uses two throwaway namespaces, removed on exit.
set -e
mkdir -p ${OUT:-/tmp/h5cap}
A=h5capa$$; B=h5capb$$
ip netns add $A; ip netns add $B
trap "ip netns pids $A | xargs -r kill; ip netns pids $B | xargs -r kill; sleep 0.5; ip netns del $A; ip netns del $B" EXIT
ip link add h5va$$ netns $A type veth peer name h5vb$$ netns $B
ip -n $A addr add 192.0.2.1/24 dev h5va$$; ip -n $A link set h5va$$ up; ip -n $A link set lo up
ip -n $B addr add 192.0.2.2/24 dev h5vb$$; ip -n $B link set h5vb$$ up; ip -n $B link set lo up
for x in a b; do
 if [ $x = a ]; then me=192.0.2.1; peer=192.0.2.2; else me=192.0.2.2; peer=192.0.2.1; fi
 cat > ${OUT:-/tmp/h5cap}/$x.conf <<EOC
router id $me;
protocol device {}
protocol bfd { interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; neighbor $peer; }
EOC
done
ip netns exec $B tcpdump -i h5vb$$ -w ${OUT:-/tmp/h5cap}/bfd.pcap -U udp port 3784 >/dev/null 2>&1 &
sleep 0.5
ip netns exec $A bird -f -c ${OUT:-/tmp/h5cap}/a.conf -s ${OUT:-/tmp/h5cap}/a.ctl -P ${OUT:-/tmp/h5cap}/a.pid &
sleep 2
ip netns exec $B bird -f -c ${OUT:-/tmp/h5cap}/b.conf -s ${OUT:-/tmp/h5cap}/b.ctl -P ${OUT:-/tmp/h5cap}/b.pid &
sleep 4
birdc -s ${OUT:-/tmp/h5cap}/a.ctl show bfd sessions
birdc -s ${OUT:-/tmp/h5cap}/a.ctl disable bfd1 || true
sleep 1
