"""``python -m exact_sandbox --port N [--seed S] [--divisions 101,102] [--volume name=N] [--knob name=value]``."""

from __future__ import annotations

import argparse
import sys

from .knobs import SPECS, VOLUME_ALIASES
from .server import Sandbox


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what} wants name=value, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m exact_sandbox", description="Exact Online sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--divisions", help="comma-separated division codes")
    parser.add_argument("--metadata", help="endpoints.json to serve (default: the package's)")
    parser.add_argument("--volume", action="append", default=[], metavar="ENTITY=N",
                        help=f"rows per division; ENTITY is a metadata path or one of {', '.join(VOLUME_ALIASES)}")
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="any knob: " + ", ".join(SPECS))
    parser.add_argument("--eager", action="store_true", help="generate every --volume entity before listening")
    args = parser.parse_args(argv)
    knobs: dict[str, object] = dict(_pairs(args.knob, "--knob"))
    if args.seed is not None:
        knobs["seed"] = str(args.seed)
    if args.divisions:
        knobs["divisions"] = args.divisions
    volumes = {name: int(value) for name, value in _pairs(args.volume, "--volume").items()}
    try:
        sandbox = Sandbox(host=args.host, port=args.port, volumes=volumes, metadata=args.metadata, **knobs)
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"python -m exact_sandbox: {exc}") from None
    sandbox.start()
    if args.eager:
        with sandbox.store.lock:
            for code in sandbox.knobs.division_codes:
                for key in sandbox.store.volumes:
                    sandbox.store.table(code, key)
    print(f"sandbox listening on {sandbox.url}", flush=True)
    try:
        sandbox.serve_forever_started()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
