#!/usr/bin/env bash
# The test suite: installs what it needs (idempotent), then runs pytest on 2 workers.
#
#   bash scripts/test.sh              # everything, end-to-end tests through Meltano included
#   bash scripts/test.sh -m 'not e2e' # only the fast tests
#   bash scripts/test.sh tests/e2e -x # any pytest arguments
#
# The e2e tests use the PostgreSQL server on 127.0.0.1:5432 (user postgres, trust auth;
# override with E2E_PG_DSN) and fall back to the embedded PostgreSQL when none answers.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" scripts/bootstrap.py

workers="${PYTEST_WORKERS:-2}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# Two tests at a time per worker (tests/conftest.py orders them longest first): a worker never
# holds a queue of tests that another, idle worker could have run.
exec .venv/bin/python -m pytest -n "$workers" --dist load --maxschedchunk 2 "$@"
