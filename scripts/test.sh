#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs the whole suite.
# Debian packages: libcoap3-bin (coap-client-openssl) and openssl, only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v coap-client-openssl >/dev/null 2>&1 || need+=(libcoap3-bin)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi
npm ci --no-audit --no-fund
npm test
