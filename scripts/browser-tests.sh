#!/usr/bin/env bash
# Browser tests of the /viewer page (tests/browser): Debian's chromium, headless, driven by
# playwright-core from npm against a debug build of trailkeep. Installs what is missing
# (apt-get: chromium, nodejs, npm; npm ci in tests/browser) and never downloads a browser.
# Screenshots are written to $TRAILKEEP_BROWSER_ARTIFACTS (default
# ${TMPDIR:-/tmp}/trailkeep-browser-artifacts). Usage: scripts/browser-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "browser-tests.sh: installing ${missing[*]} with apt-get" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  "${sudo_cmd[@]}" apt-get install -y "${missing[@]}"
fi

# playwright-core only: it never downloads a browser; this one uses the system's chromium.
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)

cargo build --locked --bin trailkeep
target_dir="${CARGO_TARGET_DIR:-target}"
export TRAILKEEP_BIN="$(cd "$target_dir" && pwd)/debug/trailkeep"
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
export TRAILKEEP_BROWSER_ARTIFACTS="${TRAILKEEP_BROWSER_ARTIFACTS:-${TMPDIR:-/tmp}/trailkeep-browser-artifacts}"
echo "browser-tests.sh: screenshots in $TRAILKEEP_BROWSER_ARTIFACTS" >&2
cd tests/browser
node --test --test-concurrency=1 viewer.test.mjs
