#!/usr/bin/env bash
# The test command: lint and format check (ruff, pinned in setup.cfg), then the test suite
# (slow checks excluded; run them with `-m slow`).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_model.py -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
# The report tests open pages in headless Chromium (Debian's package); install it once as root.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "test: installing chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
ruff check .
ruff format --check .
python -m pytest -m "not slow" "$@"
