#!/bin/sh
# Installs the Debian packages Cleave builds, tests and benchmarks with,
# when any is missing.  Safe to run again: it does nothing when all are there.
set -e
want="$*"
[ -n "$want" ] || want="build"
pkgs="cmake ninja-build pkg-config gcc make libsqlite3-dev liblmdb-dev
      libmicrohttpd-dev libcjson-dev libpq-dev libhiredis-dev libnats-dev
      libcmocka-dev libjemalloc-dev python3 curl"
for w in $want; do
  case "$w" in
    build) ;;
    test) pkgs="$pkgs postgresql redis-server nats-server valgrind chromium" ;;
    bench) pkgs="$pkgs postgresql postgresql-contrib redis-server wrk gnuplot-nox nodejs npm
                 g++ linux-perf valgrind" ;;
    fuzz) pkgs="$pkgs clang libclang-rt-14-dev" ;;
  esac
done
missing=""
for p in $pkgs; do
  # Node.js from another source (NodeSource ships npm inside its nodejs
  # package, which conflicts with Debian's npm): a working npm will do
  case "$p" in nodejs|npm) command -v npm >/dev/null 2>&1 && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q $missing >/dev/null; then
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q $missing >/dev/null
fi
