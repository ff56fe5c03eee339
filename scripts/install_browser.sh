#!/usr/bin/env bash
# Installs the browser used by the browser tests (tests/browser/): Debian's `chromium`
# package, through apt-get. We never download a browser build of our own (no
# `playwright install`): Playwright drives this system Chromium via executable_path.
# Safe to run many times; does nothing when /usr/bin/chromium is already there.
set -euo pipefail

CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

if [ -x "$CHROMIUM_BIN" ]; then
    echo "install_browser: $CHROMIUM_BIN already installed ($("$CHROMIUM_BIN" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: apt-get not found; install Debian's 'chromium' package by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_browser: needs root (or sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# fonts-liberation: readable text in screenshots (node titles, widget labels).
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-liberation

if [ ! -x "$CHROMIUM_BIN" ]; then
    echo "install_browser: apt-get finished but $CHROMIUM_BIN is missing" >&2
    exit 1
fi
echo "install_browser: installed $("$CHROMIUM_BIN" --version 2>/dev/null || echo chromium)"
