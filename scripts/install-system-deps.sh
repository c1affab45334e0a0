#!/usr/bin/env bash
# Debian packages the project needs, installing only what is missing (root or sudo the first time).
#   install-system-deps.sh build   a C/C++ toolchain and cmake: pip builds llama-cpp-python from source
#   install-system-deps.sh test    Debian's chromium (browser tests of the web page) and trans-de-en
#                                  (the Ding dictionary: German->English benchmark data)
set -euo pipefail
missing=""
case "${1:-test}" in
  build)
    command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
    command -v g++ >/dev/null 2>&1 || missing="$missing g++"
    command -v gcc >/dev/null 2>&1 || missing="$missing gcc" ;;
  test)
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    [ -f /usr/share/trans/de-en ] || missing="$missing trans-de-en" ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
if [ -z "$missing" ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Debian's$missing…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
