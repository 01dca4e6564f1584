#!/usr/bin/env bash
# Lint and type check, as CI runs them before the tests (.ci/run) and pre-commit runs them
# on commit (.pre-commit-config.yaml). Rules and per-module strictness: pyproject.toml.
#
#   bash scripts/lint.sh          # check
#   .venv/bin/ruff check --fix .  # let ruff fix what it can (import order, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ruff ] || python3 scripts/bootstrap.py --dev
echo "==> ruff"
.venv/bin/ruff check --no-cache --output-format concise exactonline_api tap_exactonline target_exactonline exact_sandbox tests scripts bench
echo "==> mypy"
.venv/bin/mypy
