#!/usr/bin/env python3
"""Print a profit-and-loss account and a balance sheet from the dbt marts (transform/).

    .venv-meltano/bin/python scripts/statements.py --url URL [--division 101] [--year 2024]

URL is the warehouse's SQLAlchemy or libpq URL (the demo prints it). Without --division the
lowest division is shown, without --year its latest financial year. Needs psycopg (the tools
venv has it); importing this module needs only the standard library (scripts/demo.py uses
``connection_env`` from it).
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import parse_qs, unquote, urlsplit

MARTS = "exactonline_analytics_marts"  # the dbt-postgres `schema` setting + "_marts" (--schema)
WIDTH = 64


def connection_env(url: str, prefix: str = "DEMO_WAREHOUSE_") -> dict[str, str]:
    """The parts of a PostgreSQL URL as the variables the demo environment gives dbt-postgres
    (target-postgres takes the URL whole; dbt's profile wants host, port, user and database)."""
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]  # a socket directory or a host name
    return {
        f"{prefix}HOST": unquote(host),
        f"{prefix}PORT": str(query.get("port", [parts.port or 5432])[0]),
        f"{prefix}USER": unquote(parts.username or "postgres"),
        f"{prefix}PASSWORD": unquote(parts.password or ""),
        f"{prefix}DATABASE": parts.path.lstrip("/"),
    }


def _money(value) -> str:
    return f"{value:>16,.2f}"


def _line(label: str, value) -> str:
    return f"  {label[:WIDTH - 20]:<{WIDTH - 20}}{_money(value)}"


def _choose(conn, marts: str, division: int | None, year: int | None) -> tuple[int, int, int, str]:
    row = conn.execute(
        f"""select division, financial_year, max(financial_period), max(division_currency)
            from {marts}.fct_balance_sheet
            where (%(division)s::int is null or division = %(division)s)
              and (%(year)s::int is null or financial_year = %(year)s)
            group by 1, 2 order by 1, 2 desc limit 1""",
        {"division": division, "year": year}).fetchone()
    if row is None:
        raise SystemExit(f"no statements for division {division or 'any'}, year {year or 'any'} in {marts} "
                         "(run `meltano run dbt-postgres:run` after the load)")
    return row[0], row[1], row[2], row[3] or ""


def format_statements(conn, division: int | None = None, year: int | None = None, marts: str = MARTS) -> str:
    """The year's profit and loss and the balance sheet at its last period, as text."""
    division, year, period, currency = _choose(conn, marts, division, year)
    out = [f"Profit and loss, division {division}, financial year {year} ({currency})"]
    pnl = conn.execute(
        f"""select section, classification_code, classification_description, sum(amount) from {marts}.fct_profit_and_loss
            where division = %s and financial_year = %s group by 1, 2, 3
            order by section desc, classification_code""", (division, year)).fetchall()
    result = 0
    for section in ("income", "expenses"):
        rows = [r for r in pnl if r[0] == section]
        out.append(f" {section.capitalize()}")
        out += [_line(f"  {code or ''} {description or ''}", amount) for _, code, description, amount in rows]
        result += sum(r[3] for r in rows)
    out.append(_line("Result for the year", result))

    out += ["", f"Balance sheet, division {division}, end of {year} (period {period}) ({currency})"]
    sheet = conn.execute(
        f"""select section, classification_code, classification_description, amount from {marts}.fct_balance_sheet
            where division = %s and financial_year = %s and financial_period = %s
            order by classification_code nulls last""", (division, year, period)).fetchall()
    totals = {}
    for section in ("assets", "liabilities", "equity", "result"):
        rows = [r for r in sheet if r[0] == section]
        totals[section] = sum(r[3] for r in rows)
        if section == "result":
            out.append(_line("Result for the year", totals[section]))
            continue
        out.append(f" {section.capitalize()}")
        out += [_line(f"  {code or ''} {description or ''}", amount) for _, code, description, amount in rows]
        if section == "assets":
            out.append(_line("Total assets", totals[section]))
    out.append(_line("Total liabilities, equity and result",
                     totals["liabilities"] + totals["equity"] + totals["result"]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the warehouse URL (postgresql[+psycopg]://...)")
    parser.add_argument("--division", type=int, help="division code (default: the lowest)")
    parser.add_argument("--year", type=int, help="financial year (default: the latest)")
    parser.add_argument("--schema", default=MARTS, help=f"schema of the marts (default {MARTS})")
    args = parser.parse_args(argv)
    import psycopg

    try:
        with psycopg.connect(args.url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            print(format_statements(conn, args.division, args.year, args.schema))
    except psycopg.errors.UndefinedTable:
        raise SystemExit(f"no marts in schema {args.schema}: run `meltano run dbt-postgres:run` after the load "
                         "(or pass --schema)") from None
    except psycopg.Error as err:
        raise SystemExit(f"cannot read the warehouse: {str(err).strip().splitlines()[0]}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
