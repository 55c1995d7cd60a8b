#!/usr/bin/env bash
# The README's main job: Twill on one machine. Installs what the lab needs (apt), builds
# the binaries in release mode, then runs `twillctl lab up` (3 nodes running twill-felix,
# a BIRD top-of-rack router, etcd, 2 pods per node) and leaves the lab running.
# Extra arguments go to `twillctl lab up` (e.g. `--nodes 4 --tor frr`).
# Afterwards: `target/release/twillctl lab status`, `... lab down`.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (the lab creates network namespaces)" >&2; exit 1; }
bash scripts/setup.sh
cargo build --release --locked --workspace --bins
exec target/release/twillctl lab up "$@"
