#!/usr/bin/env bash
# Render a linrep report.html in headless Chromium and save a full-page screenshot.
#
#   scripts/check_report_render.sh [REPORT.html] [SCREENSHOT.png]
#
# Without REPORT.html, a small demo report (two figures, a table) is written to a temporary folder
# first. Needs Debian's chromium (apt-get install -y chromium); exits 3 if it is missing, 1 if the
# screenshot fails or is blank. Networking, sync and updates are disabled: the report is
# self-contained and must render offline.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROME" ]; then
  echo "chromium not found: apt-get install -y chromium" >&2
  exit 3
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
report=${1:-}
shot=${2:-report_screenshot.png}
if [ -z "$report" ]; then
  report="$tmp/demo/report.html"
  "$PY" -c "from linrep.report.render import write_demo_report; write_demo_report('$tmp/demo')"
fi
[ -f "$report" ] || { echo "no such file: $report" >&2; exit 1; }
"$PY" -c "
import sys
from linrep.report.render import screenshot, blank_fraction
png = screenshot(sys.argv[1], sys.argv[2])
frac = blank_fraction(png)
print(f'wrote {png} ({100 * (1 - frac):.1f} % non-white pixels)')
sys.exit(1 if frac > 0.995 else 0)
" "$report" "$shot"
