#!/usr/bin/env bash
# The test command: lint, then the test suite (slow checks excluded; run them with `-m slow`).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_model.py -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
ruff check .
python -m pytest -m "not slow" "$@"
