#!/usr/bin/env bash
# The monitoring guide's load-test entry point, a thin wrapper over `wsmon loadtest`:
#   ./test_websocket_load.sh light|medium|heavy|extreme [options]
#   ./test_websocket_load.sh custom --connections 300 --interval 0.3
# Options and exit status are those of `wsmon loadtest --help` (docs/loadtest.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/wsmon" ]; then
  make -C "$here" --no-print-directory venv >&2
fi
exec "$here/.venv/bin/wsmon" loadtest "$@"
