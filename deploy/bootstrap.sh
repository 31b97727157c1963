#!/usr/bin/env bash
# One-stop set-up for a fresh machine, behind the README's two commands:
#   bash deploy/bootstrap.sh demo   # install, start services, run the main job
#   bash deploy/bootstrap.sh test   # install, start services, run the whole test suite
# Installs Debian packages (mosquitto, postgresql, java, maven) when missing, makes .venv, installs
# the package, starts the local services. Services this script started are stopped at the end of
# `test` (a demo stops its own); services that were already running are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
job=${1:-}
shift || true
case "$job" in demo|test|setup) ;; *) echo "usage: bash deploy/bootstrap.sh demo|test|setup [args...]" >&2; exit 2 ;; esac

t_start=$(date +%s)
say() { printf '[bootstrap %4ss] %s\n' "$(( $(date +%s) - t_start ))" "$*"; }

# --- system packages (Debian) -----------------------------------------------------------------
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need+=(mosquitto)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
# TimescaleDB is built by the runner from source (deploy/timescaledb.py): compilers, cmake and the
# server's headers, for the PostgreSQL major version installed (Debian 12: 15).
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v git >/dev/null 2>&1 || need+=(git)
# the console (console/package.json) is built with npm; its browser tests drive Debian's Chromium
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=0
apt_install() {
  say "installing Debian packages: $*"
  [ "$apt_updated" = 1 ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
pg_major=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sed 's|/usr/lib/postgresql/\([0-9]*\)/.*|\1|' | sort -n | tail -1)
if [ -n "$pg_major" ] && [ ! -f "/usr/include/postgresql/$pg_major/server/postgres.h" ]; then
  apt_install "postgresql-server-dev-$pg_major"
fi

# --- Python environment -----------------------------------------------------------------------
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "Python >= 3.11 is required (found $("$PY" --version 2>&1))" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.vreserve-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing vreserve and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
VR=.venv/bin/vreserve

# --- console front-end libraries (pinned in console/package-lock.json; served by `vreserve serve`) ---
console_stamp=console/node_modules/.vreserve-installed
console_want=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [ ! -f "$console_stamp" ] || [ "$(cat "$console_stamp")" != "$console_want" ]; then
  say "installing the console's npm packages (npm ci)"
  npm ci --prefix console --no-audit --no-fund --loglevel=error >/dev/null
  echo "$console_want" > "$console_stamp"
fi

# --- services -----------------------------------------------------------------------------------
started_here=0
if ! $VR services status >/dev/null 2>&1; then started_here=1; fi
say "starting services"
t0=$(date +%s)
$VR services up
say "services ready in $(( $(date +%s) - t0 )) s"

stop_services() {
  if [ "$started_here" = 1 ] && [ -z "${VR_TEST_KEEP_SERVICES:-}" ]; then
    say "stopping the services this run started"
    $VR services down || true
  fi
}

case "$job" in
  setup)
    say "set-up done; services left running (vreserve services down stops them)"
    ;;
  test)
    trap stop_services EXIT
    say "running the test suite"
    set +e
    .venv/bin/python -m pytest "$@"
    rc=$?
    if [ $# -eq 0 ]; then
      # The suite ran on TimescaleDB (when the server loads it); users without the extension get
      # the plain-PostgreSQL migrations: their storage tests again, on a plain-variant database.
      say "storage tests on the plain-PostgreSQL variant"
      .venv/bin/python -m pytest -q --db-variant plain tests/stream/test_stream_storage.py \
        tests/vreserve/test_settings_and_migrations.py
      plain_rc=$?
      [ "$rc" -ne 0 ] || rc=$plain_rc
    fi
    set -e
    say "test suite finished with exit code $rc"
    exit $rc
    ;;
  demo)
    trap stop_services EXIT
    if $VR demo --help >/dev/null 2>&1; then
      $VR demo "$@"
    else
      # Until the end-to-end scenario lands: show the stack healthy with its topics and schema.
      $VR topics
      $VR db migrate
      $VR services status
    fi
    ;;
esac
