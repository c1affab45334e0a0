#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium for the browser tests of the web page,
# and trans-de-en (the Ding dictionary) for the German->English benchmark data.
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -f /usr/share/trans/de-en ] || missing="$missing trans-de-en"
if [ -z "$missing" ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's$missing for the tests…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
