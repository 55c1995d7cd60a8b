#!/usr/bin/env bash
# Makes a real `kube-apiserver` available for the Kubernetes-mode tests, built from Debian's
# own `kubernetes` source package (there is no binary package of it): `deb-src` for the
# machine's Debian release, `apt-get source kubernetes`, Debian's reflect2 in place of the
# vendored one, `go build ./cmd/kube-apiserver` with Debian's Go, offline.
#
# The binary is cached outside the work tree, in $TWILL_KUBE_APISERVER_CACHE (default
# /var/cache/twill/kube-apiserver), as VERSION/kube-apiserver with a BUILD-INFO beside it;
# a cached binary that runs and reports VERSION is reused, anything else is rebuilt (about
# 5-20 minutes on 2 cores, ~1.8 GB of scratch space, removed afterwards).
#
# Prints the absolute path of the binary on stdout and nothing else (messages go to stderr),
# so callers can do `APISERVER=$(scripts/kube-apiserver.sh)`. Idempotent and safe to run
# concurrently: a lock serialises builds, and a caller arriving during a build waits for it
# (scripts/test.sh starts one in the background early). `TWILL_KUBE_APISERVER=/path` uses
# that binary instead (it must run).
set -euo pipefail

# The Kubernetes version inside bookworm's `kubernetes` source package
# (1.20.5+really1.20.2-1.1+deb12u1: upstream 1.20.2).
KUBE_VERSION=v1.20.2
SOURCE_PACKAGE=kubernetes
# With the vendored reflect2 1.0.1 and Go >= 1.18 the server panics on the first CRD create
# (reflect2 reads Go runtime internals that moved); Debian's 1.0.2 is fixed.
REFLECT2_PACKAGE=golang-github-modern-go-reflect2-dev
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

say() { echo "kube-apiserver.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

runs_as_version() { "$1" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION"; }

if [ -n "${TWILL_KUBE_APISERVER:-}" ]; then
  "$TWILL_KUBE_APISERVER" --version >/dev/null 2>&1 || die "TWILL_KUBE_APISERVER=$TWILL_KUBE_APISERVER does not run"
  echo "$TWILL_KUBE_APISERVER"
  exit 0
fi

CACHE="${TWILL_KUBE_APISERVER_CACHE:-/var/cache/twill/kube-apiserver}"
DEST="$CACHE/$KUBE_VERSION"
BIN="$DEST/kube-apiserver"

installed() { [ -x "$BIN" ] && [ -f "$DEST/BUILD-INFO" ] && runs_as_version "$BIN"; }

if installed; then
  echo "$BIN"
  exit 0
fi

[ "$(uname -s)" = Linux ] || die "only Linux is supported"
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
say "waiting for $CACHE/.build.lock (another build may be running)"
flock -w 3600 9 || die "timed out waiting for $CACHE/.build.lock"
# Another run may have built it while we waited for the lock.
if installed; then
  echo "$BIN"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building needs root (apt-get); or set TWILL_KUBE_APISERVER"
command -v apt-get >/dev/null 2>&1 || die "building needs a Debian machine (apt-get)"
export DEBIAN_FRONTEND=noninteractive

# `deb-src` lines for the machine's own release: the `deb` entries of its sources, as
# `deb-src` (both the deb822 and the one-line formats), unless some are there already.
has_source() { apt-cache showsrc "$SOURCE_PACKAGE" 2>/dev/null | grep -q '^Version:'; }
if ! has_source; then
  list=/etc/apt/sources.list.d/twill-deb-src.sources
  say "adding deb-src entries ($list) and running apt-get update"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && [ "$f" != "$list" ] && grep -q '^URIs:.*debian' "$f" || continue
    sed -e 's/^Types:.*$/Types: deb-src/' "$f"
    echo
  done >"$list.tmp"
  if [ ! -s "$list.tmp" ] && [ -f /etc/apt/sources.list ]; then
    rm -f "$list.tmp"
    list=/etc/apt/sources.list.d/twill-deb-src.list
    grep -E '^deb[[:space:]].*debian' /etc/apt/sources.list | sed -e 's/^deb[[:space:]]/deb-src /' >"$list.tmp" || true
  fi
  [ -s "$list.tmp" ] || die "found no Debian apt sources to derive deb-src entries from"
  mv -f "$list.tmp" "$list"
  apt-get update >&2 || die "apt-get update failed"
  has_source || die "apt has no source package $SOURCE_PACKAGE even with $list"
fi

need=()
# What Debian's build of it needs (its Build-Depends, less the docs).
for p in golang-go dpkg-dev make rsync jq "$REFLECT2_PACKAGE"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; } >&2 ||
    die "could not install ${need[*]}"
fi
[ -d "$REFLECT2_SRC" ] || die "$REFLECT2_PACKAGE did not install $REFLECT2_SRC"

WORK="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
start=$(date +%s)

say "apt-get source $SOURCE_PACKAGE (into $WORK)"
(cd "$WORK" && apt-get source "$SOURCE_PACKAGE" >"$WORK/source.log" 2>&1) || {
  tail -30 "$WORK/source.log" >&2
  die "apt-get source $SOURCE_PACKAGE failed"
}
SRC=""
for d in "$WORK"/"$SOURCE_PACKAGE"-*/; do [ -d "$d" ] && SRC="${d%/}"; done
[ -n "$SRC" ] && [ -d "$SRC/cmd/kube-apiserver" ] || die "no cmd/kube-apiserver in the unpacked source"
src_version="$(cd "$SRC" && dpkg-parsechangelog -S Version)"

say "replacing the vendored reflect2 with Debian's ($REFLECT2_PACKAGE)"
vendored="$SRC/vendor/github.com/modern-go/reflect2"
[ -d "$vendored" ] || die "no $vendored in the source"
# Keep the vendored LICENSE; take every source file of Debian's (not its tests).
find "$vendored" -maxdepth 1 -type f ! -name LICENSE -delete
find "$REFLECT2_SRC" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
  -exec cp {} "$vendored/" \;

go_version="$(go version)"
say "building cmd/kube-apiserver $KUBE_VERSION with $go_version (offline)"
# As Debian's own build does (debian/rules): GOPATH mode with the tree linked in as
# k8s.io/kubernetes (every import from its vendor/ and staging/), `make WHAT=...`, which first
# generates the code the tree does not ship (the OpenAPI definitions, ...) with its own
# generators. No module proxy, no git (the version comes from a KUBE_GIT_VERSION_FILE, as
# hack/lib/version.sh allows), no cgo.
cat >"$WORK/version" <<EOF
KUBE_GIT_COMMIT='debian-$src_version'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='$KUBE_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
EOF
mkdir -p "$SRC/.go/src/k8s.io" "$WORK/home"
ln -s ../../.. "$SRC/.go/src/k8s.io/kubernetes"
(
  cd "$SRC"
  export GOPATH="$SRC/.go" GOPROXY=off GOFLAGS= CGO_ENABLED=0 HOME="$WORK/home"
  export GOCACHE="$WORK/gocache" KUBE_GIT_VERSION_FILE="$WORK/version"
  export KUBE_BUILD_PLATFORMS=linux/amd64
  make WHAT=cmd/kube-apiserver
  built="$(find _output -type f -name kube-apiserver -perm -u+x | head -1)"
  [ -n "$built" ] && cp "$built" "$WORK/kube-apiserver"
) >"$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log" >&2
  die "make WHAT=cmd/kube-apiserver failed"
}
runs_as_version "$WORK/kube-apiserver" || die "the built binary does not report $KUBE_VERSION"

mkdir -p "$DEST"
cat >"$WORK/BUILD-INFO" <<EOF
source package: $SOURCE_PACKAGE $src_version
reflect2: $(dpkg-query -W -f='${Version}' "$REFLECT2_PACKAGE")
go: $go_version
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - start))s
EOF
# Binary first, BUILD-INFO last: `installed` needs both, so a reader never takes a
# half-written cache entry.
mv -f "$WORK/kube-apiserver" "$BIN"
mv -f "$WORK/BUILD-INFO" "$DEST/BUILD-INFO"
installed || die "installed $BIN but it does not run as $KUBE_VERSION"
say "built $BIN ($(cat "$DEST/BUILD-INFO" | tr '\n' ';'))"
echo "$BIN"
