"""One worker process of the multi-process token tests (kept free of pytest: 8 start at once).

``python -m tests.tokens_worker --base-url ... --store ...`` makes API calls against the sandbox with a
TokenManager on a shared store and prints one JSON line with what happened.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time


def main(argv: list[str]) -> int:
    """Make API calls against the sandbox for ``--seconds`` with a shared token store.

    Prints one JSON line at the end: {"calls": n, "unauthorized": n, "errors": [...], "refreshes": n}.
    Appends every token value it handles to ``--secrets-file`` so the test can grep all output for them.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--seed", default=None)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--division", type=int, required=True)
    parser.add_argument("--secrets-file", default=None)
    parser.add_argument("--calls", type=int, default=0, help="stop after this many calls (0: run for --seconds)")
    parser.add_argument("--margin-fraction", type=float, default=0.05)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between calls")
    args = parser.parse_args(argv)

    import requests

    from exactonline_api import redact
    from exactonline_api.errors import ExactError
    from exactonline_api.oauth import OAuthClient, TokenManager
    from exactonline_api.tokens import open_token_store

    redact.install()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    store = open_token_store(args.store, client_id=args.client_id)
    manager = TokenManager(store, OAuthClient(args.base_url, args.client_id, args.client_secret),
                           seed_refresh_token=args.seed, max_margin_fraction=args.margin_fraction)
    seen: set[str] = set()
    session = requests.Session()
    calls = unauthorized = 0
    errors: list[str] = []
    deadline = time.monotonic() + args.seconds
    url = f"{args.base_url}/api/v1/{args.division}/system/Divisions"
    try:
        while (calls < args.calls) if args.calls else (time.monotonic() < deadline):
            token = manager.access_token()
            response = session.get(url, params={"$select": "Code", "$top": "1"},
                                   headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            calls += 1
            if response.status_code == 401:
                unauthorized += 1
                token = manager.access_token_after_401(token)
                response = session.get(url, params={"$select": "Code", "$top": "1"},
                                       headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
                calls += 1
                if response.status_code == 401:
                    errors.append("401 after a fresh token")
            elif response.status_code != 200:
                errors.append(f"HTTP {response.status_code}")
            seen.add(token)
            current = store.read()
            if current is not None:
                seen.update({current.access_token, current.refresh_token})
            time.sleep(args.pause)
    except ExactError as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if args.secrets_file:
            with open(args.secrets_file, "a", encoding="utf-8") as handle:
                handle.write("".join(f"{value}\n" for value in seen if value))
    print(json.dumps({"calls": calls, "unauthorized": unauthorized, "errors": errors,
                      "refreshes": manager.refresh_count}), flush=True)
    return 1 if errors else 0


def worker_command(**options) -> list[str]:
    cmd = [sys.executable, "-m", "tests.tokens_worker"]
    for key, value in options.items():
        if value is not None:
            # One "--opt=value" word: tokens may start with "-", which argparse would take for an option.
            cmd.append(f"--{key.replace('_', '-')}={value}")
    return cmd


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
