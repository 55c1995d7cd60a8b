#!/usr/bin/env bash
# The README's test command: installs what the tests need, checks formatting and lints,
# builds the real binaries, and runs every test (root-only network tests included).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# The Kubernetes-mode tests against a real API server need kube-apiserver, built from
# Debian's source package and cached outside the work tree (scripts/kube-apiserver.sh).
# When the cache is cold the build takes 5-20 minutes: start it now, beside the Rust build,
# and wait for it before the tests.
kube_log="$(mktemp)"
bash scripts/kube-apiserver.sh >"$kube_log.out" 2>"$kube_log" &
kube_pid=$!
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests exec the real binaries from target/debug.
cargo build --workspace --bins --locked
if ! wait "$kube_pid"; then
  cat "$kube_log" >&2
  echo "test.sh: scripts/kube-apiserver.sh could not provide kube-apiserver" >&2
  exit 1
fi
TWILL_KUBE_APISERVER="$(cat "$kube_log.out")"
export TWILL_KUBE_APISERVER
rm -f "$kube_log" "$kube_log.out"
cargo test --workspace --locked --no-fail-fast
