#!/usr/bin/env bash
# The test suite: installs what it needs (idempotent), then runs pytest on 3 workers.
#
#   bash scripts/test.sh              # everything: the README walk-through, the end-to-end tests
#   bash scripts/test.sh -m 'not e2e' # only the fast tests
#   bash scripts/test.sh tests/e2e -x # any pytest arguments
#
# The e2e tests use the PostgreSQL server on 127.0.0.1:5432 (user postgres, trust auth;
# override with E2E_PG_DSN) and fall back to the embedded PostgreSQL when none answers.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" scripts/bootstrap.py

# Three workers on this project's 2-core machines: a good part of the suite waits rather than
# computes (Dagster's steps, token lifetimes of seconds, the sandbox's latency and timeouts, the
# README's commands), and a third worker fills those waits (measured: 6 min 44 s on 2, 5 min 57 s
# on 3). PYTEST_WORKERS=0 runs in this process, without xdist.
workers="${PYTEST_WORKERS:-3}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# Two tests at a time per worker (tests/conftest.py orders them longest first): a worker never
# holds a queue of tests that another, idle worker could have run.
exec .venv/bin/python -m pytest -n "$workers" --dist load --maxschedchunk 2 "$@"
