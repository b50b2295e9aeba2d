#!/bin/sh
# install-deps.sh — installs the Debian packages fledge builds and tests with, only those missing.
# Run as root (or with sudo available). Idempotent; `make` calls it once.
set -e
need=""
have_pc() { pkg-config --exists "$1" 2>/dev/null; }
have_bin() { command -v "$1" >/dev/null 2>&1; }

have_bin pkg-config      || need="$need pkg-config"
have_bin cc              || need="$need gcc"
have_pc libuv            || need="$need libuv1-dev"
have_pc yaml-0.1         || need="$need libyaml-dev"
have_pc jansson          || need="$need libjansson-dev"
have_pc cmocka           || need="$need libcmocka-dev"
have_pc libmaxminddb     || need="$need libmaxminddb-dev"
have_pc sqlite3          || need="$need libsqlite3-dev"
have_pc libcurl          || need="$need libcurl4-openssl-dev"
have_pc openssl          || need="$need libssl-dev"
# tests only: certificates are made with the openssl command; testssl.sh checks the TLS listener
have_bin openssl         || need="$need openssl"
have_bin testssl         || need="$need testssl.sh"
have_pc hiredis          || need="$need libhiredis-dev"
have_bin python3         || need="$need python3"
have_bin curl            || need="$need curl"
# make asan / make fuzz: clang with its sanitizer and libFuzzer runtimes
have_bin clang           || need="$need clang"
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan-x86_64.a >/dev/null 2>&1 || need="$need libclang-rt-dev"
# tests only: writes the small GeoIP databases the country-rule tests use
perl -MMaxMind::DB::Writer::Tree -e1 2>/dev/null || need="$need libmaxmind-db-writer-perl"
# tests only: a real Prometheus scrapes fledge's /metrics; promtool lints the exposition
{ have_bin prometheus && have_bin promtool; } || need="$need prometheus"
# tests only: the official OpenAI SDK for Node (from npm, at make test) talks to fledge
have_bin npm             || need="$need npm"
# tests only: the dashboard is opened in a real headless Chromium (driven by playwright-core from npm)
have_bin chromium        || need="$need chromium"
# tests only: a real nginx as the front proxy that adds x-forwarded-for
have_bin nginx           || need="$need nginx-light"
# tests only: fledge top runs in a real terminal
have_bin tmux            || need="$need tmux"
# tests only: a real Redis shared by the cluster tests' replicas
have_bin redis-server    || need="$need redis-server"

[ -z "$need" ] && exit 0
echo "install-deps: installing$need"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Debian's prometheus, nginx and redis-server packages start their services when installed: daemons on 0.0.0.0
# left running, and where that start fails (no systemd, no permissions) the install fails. A policy-rc.d
# that answers 101 (action forbidden), as Docker images ship, stops that; only for this install.
case "$need" in *" prometheus"*|*" nginx-light"*|*" redis-server"*)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi ;;
esac
if ! $SUDO apt-get install -y -q --no-install-recommends $need; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends $need
fi
