"""Runs the main Meltano job as shards of divisions under Dagster (README, "Scaling out").

``orchestrate.definitions`` holds the Dagster objects (import it only where Dagster is
installed); ``orchestrate.meltano`` and ``orchestrate.tables`` use the standard library.
"""
