#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs the whole suite.
# Debian packages: libcoap3-bin (coap-client-openssl) and openssl, only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v coap-client-openssl >/dev/null 2>&1 || need+=(libcoap3-bin)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# Scale-out tests (test/cluster*.test.ts) start their own redis-server on a loopback port.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Editor test (test/browser.test.ts): Debian's chromium, driven headless by playwright-core.
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi
# `npm install` rather than `npm ci`: npm ci rejects the lock file because a transitive optional dependency
# (node-aead-crypto) lists platform packages that are not published for every platform. The lock file still pins versions.
npm install --no-audit --no-fund
npm test
