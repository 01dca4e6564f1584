"""tap-exactonline: every Exact Online entity as an incremental Singer stream.

The tap object only wires things together: it reads the config, builds the
Exact facade (exactonline_api), the run's collaborators (report, deletions,
resyncs, progress) and the streams, and runs them. None of those call back
into it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import typing as t
from datetime import datetime, timezone
from functools import cached_property

from singer_sdk import Tap
from singer_sdk import typing as th

from exactonline_api.access import EmptyReadCheck, missing_rights
from exactonline_api.api import ExactAPI
from exactonline_api.budget import ErrorBudget
from exactonline_api.cli import run_plugin
from exactonline_api.compat import override
from exactonline_api.connect import base_url_of, token_manager_from_config
from exactonline_api.datekinds import calendar_fields
from exactonline_api.errors import ConfigError
from exactonline_api.http import ExactSession
from exactonline_api.limits import RateLimiter
from exactonline_api.registry import BULK, STANDARD, SYNC, Endpoint, Entity, entities
from exactonline_api.settings import connection_properties, logging_properties
from exactonline_api.settings_check import checked
from exactonline_api.timeutil import EXACT_TZ, parse_iso_utc
from tap_exactonline import shards
from tap_exactonline.catalog import selected_only
from tap_exactonline.client import ExactStream, Reading
from tap_exactonline.config import tap_problems
from tap_exactonline.deletes import Deletions
from tap_exactonline.output import ExactMessageWriter
from tap_exactonline.parallel import DEFAULT_PARALLEL_DIVISIONS, MAX_PARALLEL_DIVISIONS
from tap_exactonline.progress import Progress
from tap_exactonline.report import RunReport
from tap_exactonline.resync import Resyncs
from tap_exactonline.streams import stream_class

LOG = logging.getLogger("tap_exactonline")
# --test asks users/UserHasRights once per selected stream: at most a minute's worth of calls.
MAX_RIGHTS_CHECKS = 50


class TapExactOnline(Tap):
    """Every Exact Online entity as a typed, incremental stream, through the cheapest API Exact offers."""

    name = "tap-exactonline"
    # msgspec writes Singer messages several times faster than the default
    # writer; this one also holds the records of the hot path (output.py).
    message_writer_class = ExactMessageWriter

    config_jsonschema = th.PropertiesList(
        *connection_properties(
            "Default: .tokens/ in the working directory; a URL lets several machines share one token chain."),
        *logging_properties(),
        th.Property("redirect_uri", th.StringType,
                    description="Redirect URI registered for your app; read only by `tap-exactonline auth`"),
        th.Property("divisions", th.ArrayType(th.IntegerType),
                    description="Division codes to sync; all divisions the user granted when omitted"),
        shards.PROPERTY,
        th.Property("parallel_divisions", th.IntegerType, default=DEFAULT_PARALLEL_DIVISIONS,
                    description=f"Divisions read at the same time (1-{MAX_PARALLEL_DIVISIONS}); Exact's limits "
                                "are per division, so each one read in parallel adds its own 60 calls a minute"),
        th.Property("start_date", th.DateTimeType,
                    description="First sync starts at this moment (ISO 8601, UTC when no offset)"),
        th.Property("start_year", th.IntegerType,
                    description="First sync starts on 1 January of this year (Exact's local time)"),
        th.Property("daily_call_reserve", th.IntegerType, default=200,
                    description="Daily calls per division left untouched for other apps; the run stops "
                                "cleanly (exit 75) when only these remain"),
        th.Property("route_deletes", th.BooleanType, default=True,
                    description="Turn sync/Deleted into tombstones (_sdc_deleted_at) on the entity streams; "
                                "false keeps only the raw deleted stream"),
        th.Property("resync_activate_version", th.BooleanType, default=True,
                    description="When a stream must be re-read in full (a division move, or a deletion check "
                                "older than Exact's 2-month deletion log), re-read it for every division and "
                                "end with ACTIVATE_VERSION, so the target removes rows deleted in Exact meanwhile. "
                                "Set false when several jobs load the SAME tables (e.g. one job per division): "
                                "ACTIVATE_VERSION applies to the whole table and would remove the other jobs' rows"),
        th.Property("api_overrides", th.ObjectType(additional_properties=th.StringType),
                    description="Per stream, force 'sync', 'bulk' or 'standard' instead of the cheapest API"),
        th.Property("date_fields", th.ObjectType(additional_properties=th.ObjectType(
                        additional_properties=th.StringType)),
                    description="Per stream and Edm.DateTime property, override its class: 'date' (a calendar "
                                "date, emitted as YYYY-MM-DD) or 'moment' (UTC date-time), e.g. "
                                '{"sales_invoices": {"DueDate": "moment"}}; the default classes are in '
                                "exactonline_api/data/datetime_kinds.tsv"),
        th.Property("trim_text", th.BooleanType, default=True,
                    description="Remove the blanks Exact pads fixed-width text with (codes, countries, VAT "
                                "codes), as Exact's screens show it; false keeps the raw values"),
        th.Property("max_rate_limit_wait", th.IntegerType, default=90,
                    description="Longest single wait (seconds) for a minutely window after a 429 or when "
                                "the minutely budget is nearly spent"),
        th.Property("request_timeout", th.IntegerType, default=120,
                    description="Seconds to wait for an answer before retrying (GET) or checking (writes)"),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.report = RunReport()
        self._division_list: list[int] | None = None
        if "catalog" in kwargs:
            kwargs["catalog"] = selected_only(kwargs["catalog"])
        with checked(self, tap_problems):
            super().__init__(*args, **kwargs)

    @property
    def base_url(self) -> str:
        return base_url_of(self.config)

    def start_moment(self) -> datetime | None:
        if self.config.get("start_date"):
            return parse_iso_utc(self.config["start_date"])
        if self.config.get("start_year"):
            return datetime(int(self.config["start_year"]), 1, 1, tzinfo=EXACT_TZ).astimezone(timezone.utc)
        return None

    def apply_date_fields(self, entity: Entity) -> Entity:
        """The user's ``date_fields`` overrides applied to one stream's calendar dates."""
        # Read from the config, not from _check_config: the SDK may build streams before it ran.
        overrides = self.config.get("date_fields")
        if not overrides or not isinstance(overrides, dict):
            return entity
        fields = ((f.name, f.edm) for f in entity.fields)
        return dataclasses.replace(entity, calendar_dates=calendar_fields(entity.stream_name, fields, overrides))

    def apply_api_override(self, entity: Entity) -> Entity:
        wanted = (self.config.get("api_overrides") or {}).get(entity.stream_name)
        if not wanted or wanted == entity.api:
            return entity
        source: Endpoint | None = getattr(entity, wanted) if wanted in (SYNC, BULK, STANDARD) else None
        if source is None:
            return entity  # the settings check (tap_exactonline/config.py) reports it in one line
        key = entity.key if wanted != SYNC else ((source.entity_id_field or "ID"), "Division")
        return dataclasses.replace(entity, api=wanted, source=source, key=key,
                                   replication_key="Timestamp" if wanted == SYNC else
                                   ("Modified" if source.has("Modified") else None))

    # -- the Exact client, built on first use (discovery needs no token) ------------

    @cached_property
    def api(self) -> ExactAPI:
        cfg = self.config
        limiter = RateLimiter(daily_reserve=int(cfg.get("daily_call_reserve", 200)),
                              max_wait_seconds=float(cfg.get("max_rate_limit_wait", 90)))
        session = ExactSession(token_manager_from_config(cfg, self.base_url), limiter=limiter,
                               timeout=(10.0, float(cfg.get("request_timeout", 120))),
                               error_budget=ErrorBudget.from_config(cfg), pool_size=self.parallel_divisions + 2)
        return ExactAPI(session, self.base_url)

    @property
    def parallel_divisions(self) -> int:
        return int(self.config.get("parallel_divisions", DEFAULT_PARALLEL_DIVISIONS))

    def divisions(self) -> list[int]:
        """The divisions of this run, read once: configured ones that were not granted are left out."""
        if self._division_list is None:
            grants = self.api.grants()
            configured = [int(d) for d in self.config.get("divisions") or []]
            refused = self.report.refused_divisions = grants.refused(configured)
            self._division_list = [d for d in configured if d not in refused] or \
                ([] if configured else grants.codes)
            if refused:
                listed = ", ".join(map(str, refused))
                if not self._division_list:
                    raise ConfigError(f"none of the configured divisions ({listed}) is granted to this app: run "
                                      "`tap-exactonline auth` again and tick them on Exact's consent screen")
                LOG.error("not reading division(s) %s: not granted to this app; run `tap-exactonline auth` "
                          "again and tick them on Exact's consent screen", listed)
            self._division_list = shards.pick(self._division_list, self.config.get("division_shard"))
        return self._division_list

    def division_move_dates(self) -> dict[int, str | None]:
        """``DivisionMoveDate`` per division of this run, from the rows the division list was read with."""
        divisions = self.divisions()
        found = self.api.move_dates()
        return {d: found[d] for d in divisions if d in found}

    # -- the run's collaborators ------------------------------------------------

    def _budget(self, division: int):
        return self.api.session.limiter.budgets.get(division) if "api" in self.__dict__ else None

    @cached_property
    def reading(self) -> Reading:
        return Reading(
            api=lambda: self.api, divisions=self.divisions, report=self.report,
            deletions=Deletions(lambda: self.api, self._routed_streams),
            progress=Progress(self._budget), start_moment=self.start_moment,
            empty_reads=lambda: self.empty_reads,
            routes_deletes=bool(self.config.get("route_deletes", True)),
            parallel_divisions=self.parallel_divisions, trims_text=bool(self.config.get("trim_text", True)))

    @cached_property
    def empty_reads(self) -> EmptyReadCheck:
        return EmptyReadCheck(self.api.session, self.base_url)

    def exact_streams(self) -> list[ExactStream]:
        return t.cast(list[ExactStream], list(self.streams.values()))

    def _routed_streams(self) -> list[ExactStream]:
        return [s for s in self.exact_streams() if s.routes_deletes and s.selected]

    @override
    def discover_streams(self) -> list[ExactStream]:
        chosen = (self.apply_date_fields(self.apply_api_override(e)) for e in entities().values())
        return [stream_class(entity)(self, entity, self.reading) for entity in chosen]

    @cached_property
    def resyncs(self) -> Resyncs:
        return Resyncs(self.exact_streams, self.divisions, self.division_move_dates, self.report,
                       lambda: self.state_writer.write_state(self.state),
                       use_versions=shards.activate_version_allowed(self.config))

    # singer-sdk marks these @final but offers no hook before the first or after the last stream.
    @override  # type: ignore[misc]
    def sync_all(self) -> None:
        # Full resyncs are planned on every partition's state before the first
        # stream reads (which also creates every partition's state here, on the
        # main thread, so reader threads only read it), and activated after the last.
        if not any(s.selected or s.has_selected_descendents for s in self.exact_streams()):
            super().sync_all()  # nothing to read: no call to Exact, not even the grants check
            return
        if not self.divisions():
            return  # a shard that holds none of the divisions (shards.pick said so)
        self.resyncs.plan()
        super().sync_all()
        self.resyncs.finish()
        if self.resyncs.full_resyncs:
            LOG.info("read in full this run (stream/division): %s", ", ".join(self.resyncs.full_resyncs))
        if "api" in self.__dict__:  # no call was made (nothing selected, or discovery): no summary
            self.report.log_summary(list(self.api.session.limiter.budgets.values()))
        self.report.raise_for_outcome()

    @override  # type: ignore[misc]
    def run_connection_test(self) -> bool:
        from tap_exactonline.auth import connection_report

        print(connection_report(self.api.session, self.base_url))
        selected = {s.endpoint.path: s.name for s in self.exact_streams() if s.selected}
        division = next(iter(self.divisions()), None)
        if len(selected) > MAX_RIGHTS_CHECKS:
            print(f"Rights not checked: {len(selected)} streams are selected (one call each); select at most "
                  f"{MAX_RIGHTS_CHECKS} to check them.")
        elif division is not None and selected:
            missing = missing_rights(self.api.session, self.base_url, division, selected)
            print(f"Selected streams without rights in division {division}: "
                  + (", ".join(f"{selected[p]} ({p})" for p in missing) if missing else "none") + ".")
        return True


AUTH_HELP = ("First log in once: `tap-exactonline auth --config FILE` (in Meltano: `meltano invoke "
             "tap-exactonline:auth`); `tap-exactonline auth --help` shows its options.")


def cli() -> None:
    """Console entry: ``auth`` subcommand, else the Singer CLI with one-line errors."""
    if sys.argv[1:2] == ["auth"]:
        from tap_exactonline.auth import main_auth

        sys.exit(main_auth(sys.argv[2:]))
    run_plugin("tap-exactonline", TapExactOnline, epilog=AUTH_HELP)
