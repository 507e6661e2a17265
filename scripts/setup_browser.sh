#!/usr/bin/env bash
# The browser that tests/test_web_console.py drives: Debian's chromium package, driven by
# Playwright through its executable path (Playwright's own browser download cannot work on a
# machine without internet access). Run by `make test`, not by `make run` (the console does
# not need it). Idempotent: nothing to do when the browser is already there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: $CHROMIUM is missing and there is no apt-get here; install Chromium so that" >&2
    echo "               $CHROMIUM runs it (tests/test_web_console.py needs it)" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "setup_browser: installing chromium needs root: run 'apt-get install chromium' as root" >&2
        exit 1
    fi
fi
LOG=$(mktemp -t orin-setup-browser.XXXXXX.log)
echo "setup_browser: installing Debian's chromium for the web console's browser test (log: $LOG)"
if ! { "${SUDO[@]}" apt-get update -q && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends chromium; } >"$LOG" 2>&1; then
    echo "setup_browser: apt-get could not install chromium; the last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "setup_browser: chromium was installed but $CHROMIUM is not there" >&2
    exit 1
fi
rm -f "$LOG"
echo "setup_browser: done ($("$CHROMIUM" --version 2>/dev/null || echo chromium))"
