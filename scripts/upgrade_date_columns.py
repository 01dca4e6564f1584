"""Print the SQL that turns a warehouse's calendar-date columns from timestamps into dates.

    python scripts/upgrade_date_columns.py --schema exactonline | psql "$WAREHOUSE_URL"

Before tap-exactonline sent calendar dates as ``YYYY-MM-DD``, it sent the UTC instant of their
local midnight, and target-postgres stored ``2023-01-01`` as ``2022-12-31 23:00:00`` in a
``timestamp`` column. target-postgres (0.8.1) never narrows a column to ``date`` by itself: it keeps
the timestamp column, and only the rows it writes again get the right day. This SQL converts each
such column in place, every existing row to the day Exact shows (the UTC instant read in
Amsterdam time), without reading anything from Exact again. Columns already of type ``date``,
and tables or columns that do not exist, are left alone; running it twice changes nothing.
The columns are the calendar dates of ``exactonline_api/data/datetime_kinds.tsv``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "exactonline_api" / "data" / "datetime_kinds.tsv"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def calendar_columns(path: Path = TABLE) -> list[tuple[str, str]]:
    with path.open(newline="") as handle:
        return [(row["stream"], row["field"]) for row in csv.DictReader(handle, delimiter="\t")
                if row["kind"] == "date"]


def upgrade_sql(schema: str, columns: list[tuple[str, str]]) -> str:
    pairs = ",\n      ".join(f"({_literal(t)}, {_literal(c)})" for t, c in columns)
    return f"""-- tap-exactonline: calendar-date columns from timestamp to date (the day Exact shows)
DO $$
DECLARE c record;
BEGIN
  FOR c IN
    SELECT table_name, column_name, data_type FROM information_schema.columns
    WHERE table_schema = {_literal(schema)} AND data_type LIKE 'timestamp%'
      AND (table_name::text, column_name::text) IN (VALUES
      {pairs})
  LOOP
    EXECUTE format(
      'ALTER TABLE %I.%I ALTER COLUMN %I TYPE date USING (%s AT TIME ZONE ''Europe/Amsterdam'')::date',
      {_literal(schema)}, c.table_name, c.column_name,
      CASE WHEN c.data_type = 'timestamp with time zone' THEN quote_ident(c.column_name)
           -- target-postgres writes UTC into "timestamp without time zone"
           ELSE format('(%I AT TIME ZONE ''UTC'')', c.column_name) END);
    RAISE NOTICE 'converted %.% to date', c.table_name, c.column_name;
  END LOOP;
END $$;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="exactonline", help="the warehouse schema (default_target_schema)")
    args = parser.parse_args()
    print(upgrade_sql(args.schema, calendar_columns()), end="")


if __name__ == "__main__":
    main()
