#!/usr/bin/env bash
# The README's test command: installs what the tests need, checks formatting and lints,
# builds the real binaries, and runs every test (root-only network tests included).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests exec the real binaries from target/debug.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast
