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
# the console (console/package.json) is built with npm; its browser tests drive Debian's Chromium
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
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
