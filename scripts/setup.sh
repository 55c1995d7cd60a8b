#!/usr/bin/env bash
# Installs, on a fresh Debian machine (as root), everything Twill's build, tests and lab need.
# Idempotent: a second run only checks.
set -euo pipefail

PKGS=(
  protobuf-compiler libprotobuf-dev  # protoc and its well-known types (etcd-client, our .proto files)
  etcd-server etcd-client    # the datastore (tests start their own etcd)
  bird2 frr gobgpd exabgp    # real BGP peers for interop tests, benchmarks and the lab's ToR
  nftables iptables ipset    # the policy dataplanes
  iproute2 iputils-ping netcat-openbsd tcpdump
  containernetworking-plugins  # reference CNI plugins (portmap, bandwidth, ptp, host-local)
  procps psmisc hyperfine
  openssl                    # certificates for the test kube-apiserver (harness kube_real)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The Debian packages start daemons of their own on install where they can; Twill's tests
# start their own instances in namespaces, so stop any system-wide ones quietly.
for svc in bird frr etcd gobgpd; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done

command -v cargo >/dev/null || { echo "setup: cargo (rustup) is required" >&2; exit 1; }
