#!/usr/bin/env bash
# Prepares the dashboard's browser test, once: Debian's chromium (apt) and playwright-core
# (npm) in a cache directory outside the repo. Prints that directory (its node_modules holds
# playwright-core); the test gets it as ISTS_DASHBOARD_E2E.
set -euo pipefail
dir="${ISTS_PLAYWRIGHT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ists/playwright}"
if [ ! -x /usr/bin/chromium ]; then
  echo "setup-dashboard-e2e: installing chromium (apt)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >&2
fi
if [ ! -f "$dir/node_modules/playwright-core/package.json" ]; then
  echo "setup-dashboard-e2e: installing playwright-core@1.64.1 into $dir (once)" >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --silent playwright-core@1.64.1 >&2
fi
echo "$dir"
