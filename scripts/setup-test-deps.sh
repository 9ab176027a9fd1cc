#!/usr/bin/env bash
# Installs everything the tests need that cargo does not: promtool and the Prometheus server
# (Debian's prometheus package), chromium (headless rendering of the monitor's report),
# openssl (the TLS test makes a self-signed certificate), PostgreSQL's server binaries
# (Debian's postgresql package, for the store contract suite and the PostgreSQL end-to-end
# test), a Python virtualenv with the openai SDK and pytest (integration/requirements.txt), and
# one with moto's S3 server (integration/s3-requirements.txt).
# Idempotent and quiet: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
# Debian's prometheus package: promtool (rule checks and unit tests) and the server (the test in
# which a real Prometheus scrapes a drifting job and the monitor's alert fires).
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || missing+=(prometheus)
# Renders the monitor's report headless (integration/test_monitor_report.py).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The Store contract suite and integration/test_postgres.py start their own throwaway server
# from these binaries (initdb + pg_ctl, as an unprivileged user).
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ] || ! cmp -s integration/requirements.txt .venv/.requirements; then
  echo "== creating .venv from integration/requirements.txt"
  # --clear: a changed requirements file gives exactly the pinned set, nothing left over.
  python3 -m venv --clear .venv
  .venv/bin/pip install -q --disable-pip-version-check -r integration/requirements.txt
  cp integration/requirements.txt .venv/.requirements
fi
# moto's S3 server, the S3-wire server the blob-store tests and the multi-machine end-to-end
# test run against: its own venv, its pins would clash with the SDK's.
if [ ! -x .s3venv/bin/moto_server ] || ! cmp -s integration/s3-requirements.txt .s3venv/.requirements; then
  echo "== creating .s3venv from integration/s3-requirements.txt"
  python3 -m venv --clear .s3venv
  .s3venv/bin/pip install -q --disable-pip-version-check -r integration/s3-requirements.txt
  cp integration/s3-requirements.txt .s3venv/.requirements
fi
