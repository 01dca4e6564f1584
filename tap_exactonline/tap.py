"""tap-exactonline: every Exact Online entity as an incremental Singer stream."""

from __future__ import annotations

import dataclasses
import logging
import sys
import typing as t
from datetime import datetime, timezone
from functools import cached_property

from singer_sdk import Tap
from singer_sdk import typing as th

from exactonline_api import odata
from exactonline_api.access import EmptyReadCheck, missing_rights, read_grants
from exactonline_api.budget import ErrorBudget
from exactonline_api.cli import run_plugin
from exactonline_api.datekinds import calendar_fields
from exactonline_api.errors import ConfigError, DailyBudgetExhausted, ExactError
from exactonline_api.http import ExactSession
from exactonline_api.limits import RateLimiter
from exactonline_api.registry import BULK, STANDARD, SYNC, Endpoint, Entity, endpoints, raw_metadata
from exactonline_api.settings import connection_properties, logging_properties
from exactonline_api.settings_check import checked
from exactonline_api.timeutil import EXACT_TZ, filter_datetime, parse_iso_utc
from tap_exactonline.client import ExactStream, query_string
from tap_exactonline.config import tap_problems
from tap_exactonline.deletes import Deletions
from tap_exactonline.output import ExactMessageWriter
from tap_exactonline.resync import Resyncs, move_dates, read_move_dates
from tap_exactonline.streams import build_streams

LOG = logging.getLogger("tap_exactonline")
# --test asks users/UserHasRights once per selected stream: at most a minute's worth of calls.
MAX_RIGHTS_CHECKS = 50


def _countries() -> dict[str, str]:
    return raw_metadata()["base_urls"]


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
        self._stopped: dict[int, str] = {}
        self._failed: list[str] = []
        self._unfinished: dict[int, list[str]] = {}
        self._failed_streams: set[tuple[int, str]] = set()
        self._move_dates: dict[int, str | None] | None = None
        self._full_resyncs: list[str] = []
        self._division_list: list[int] | None = None
        self._refused_divisions: dict[int, str] = {}
        with checked(self, tap_problems):
            super().__init__(*args, **kwargs)

    @property
    def base_url(self) -> str:
        return (self.config.get("base_url") or _countries()[self.config.get("country", "nl")]).rstrip("/")

    @property
    def routes_deletes(self) -> bool:
        return bool(self.config.get("route_deletes", True))

    def start_moment(self) -> datetime | None:
        if self.config.get("start_date"):
            return parse_iso_utc(self.config["start_date"])
        if self.config.get("start_year"):
            return datetime(int(self.config["start_year"]), 1, 1, tzinfo=EXACT_TZ).astimezone(timezone.utc)
        return None

    @property
    def trims_text(self) -> bool:
        return bool(self.config.get("trim_text", True))

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

    # -- streams ----------------------------------------------------------------

    def discover_streams(self) -> list[ExactStream]:
        return build_streams(self)

    def exact_streams(self) -> list[ExactStream]:
        return t.cast(list[ExactStream], list(self.streams.values()))

    # -- the shared client --------------------------------------------------------

    @cached_property
    def token_manager(self):
        from exactonline_api.connect import token_manager_from_config

        return token_manager_from_config(self.config, self.base_url)

    @cached_property
    def session(self) -> ExactSession:
        limiter = RateLimiter(daily_reserve=int(self.config.get("daily_call_reserve", 200)),
                              max_wait_seconds=float(self.config.get("max_rate_limit_wait", 90)))
        timeout = float(self.config.get("request_timeout", 120))
        return ExactSession(self.token_manager, limiter=limiter, timeout=(10.0, timeout),
                            error_budget=ErrorBudget.from_config(self.config))

    @cached_property
    def empty_reads(self) -> EmptyReadCheck:
        return EmptyReadCheck(self.session, self.base_url)

    @cached_property
    def deletions(self) -> Deletions:
        return Deletions(self)

    @cached_property
    def resyncs(self) -> Resyncs:
        return Resyncs(self)

    def api_url(self, division: int | None, path: str) -> str:
        ep = endpoints().get(path)
        below = ep.url_path(division) if ep else (f"{division}/{path}" if division is not None else path)
        return f"{self.base_url}/api/v1/{below}"

    def read_all(self, division: int, path: str, params: dict[str, str]) -> t.Iterator[dict]:
        """Every row of a collection, following ``__next`` (used outside streams)."""
        url: str | None = f"{self.api_url(division, path)}?{query_string(params)}"
        while url:
            payload = self.session.get_json(url)
            yield from odata.results(payload)
            url = odata.next_link(payload)

    def divisions(self) -> list[int]:
        """The divisions of this run, read once: configured ones that were not granted are left out."""
        if self._division_list is None:
            grants = read_grants(self.session, self.base_url, "Code,Description,DivisionMoveDate")
            self._move_dates = move_dates(grants.rows)
            configured = [int(d) for d in self.config.get("divisions") or []]
            self._refused_divisions = grants.refused(configured)
            self._division_list = [d for d in configured if d not in self._refused_divisions] or \
                ([] if configured else grants.codes)
            if self._refused_divisions:
                listed = ", ".join(map(str, self._refused_divisions))
                if not self._division_list:
                    raise ConfigError(f"none of the configured divisions ({listed}) is granted to this app: run "
                                      "`tap-exactonline auth` again and tick them on Exact's consent screen")
                LOG.error("not reading division(s) %s: not granted to this app; run `tap-exactonline auth` "
                          "again and tick them on Exact's consent screen", listed)
        return self._division_list

    def division_move_dates(self) -> dict[int, str | None]:
        """``DivisionMoveDate`` per division of this run: read with the division list, or one call."""
        divisions = self.divisions()
        if self._move_dates is None:
            self._move_dates = (read_move_dates(self, divisions[0]) if divisions else None) or {}
        return {d: self._move_dates[d] for d in divisions if d in self._move_dates}

    def sync_timestamp_at(self, division: int, endpoint: Endpoint | str, moment: datetime) -> int:
        """Translate a date to a sync Timestamp (``read/sync/Sync/SyncTimestamp``)."""
        path = endpoint.path if isinstance(endpoint, Endpoint) else endpoint
        params = {"modified": filter_datetime(moment), "endPoint": odata.string_literal(path.rsplit("/", 1)[-1])}
        rows = odata.results(self.session.get_json(
            f"{self.api_url(division, 'read/sync/Sync/SyncTimestamp')}?{query_string(params)}"))
        value = rows[0].get("TimeStampAsBigInt") if rows else None
        return int(value) if value not in (None, "") else 1

    # -- budget stops and the run summary ---------------------------------------

    def stop_division(self, division: int, stream: str, reason: Exception) -> None:
        if division not in self._stopped:
            self._stopped[division] = str(reason)
            LOG.warning("stopping division %s at stream %s: %s", division, stream, reason)
        self.note_unfinished(division, stream)

    def note_unfinished(self, division: int, stream: str) -> None:
        self._unfinished.setdefault(division, []).append(stream)

    def fail_stream(self, division: int, stream: str, reason: Exception) -> None:
        """A stream failed for one division (e.g. a module the license lacks); the others go on."""
        self._failed.append(f"{stream} in division {division}: {reason}")
        self._failed_streams.add((division, stream))
        LOG.error("%s division %s failed, continuing with the other streams: %s", stream, division, reason)

    def division_stopped(self, division: int) -> bool:
        return division in self._stopped

    def unfinished_divisions(self, stream: str) -> list[int]:
        """Divisions this run did not read to the end for ``stream`` (budget stop or failure)."""
        stopped = {d for d, names in self._unfinished.items() if stream in names}
        return sorted(stopped | {d for d, s in self._failed_streams if s == stream})

    def note_full_resync(self, stream: ExactStream, division: int) -> None:
        self._full_resyncs.append(f"{stream.name}/{division}")

    def sync_all(self) -> None:
        # Full resyncs are planned on every partition's state before the first
        # stream reads, and activated after the last (tap_exactonline.resync).
        self.resyncs.plan()
        super().sync_all()
        self.resyncs.finish()
        self._log_summary()
        refused = (f"division(s) {', '.join(map(str, self._refused_divisions))} not read: not granted to this app "
                   "(run `tap-exactonline auth` again and tick them); " if self._refused_divisions else "")
        if self._failed:
            raise ExactError(f"{refused}{len(self._failed)} stream(s) failed (state kept for the others): "
                             + " | ".join(self._failed))
        if refused:
            raise ExactError(f"{refused}the other divisions were read and their state saved")
        if self._stopped:
            raise DailyBudgetExhausted(
                "stopped before the end to keep the daily call reserve; unfinished: "
                + "; ".join(f"division {d}: {', '.join(s)}" for d, s in sorted(self._unfinished.items()))
                + ". State is saved: the next run resumes there.")

    def _log_summary(self) -> None:
        records: dict[tuple[int, str], int] = {}
        for stream in self.exact_streams():
            for division, count in getattr(stream, "records_by_division", {}).items():
                records[(division, stream.name)] = count
        if "session" not in self.__dict__:
            return  # no call was made (nothing selected, or discovery)
        for budget in self.session.limiter.budgets.values():
            line = budget.summary()
            line["records"] = {s: n for (d, s), n in records.items() if d == budget.division}
            LOG.info("run summary: %s", line)

    def run_connection_test(self) -> bool:
        from tap_exactonline.auth import connection_report

        print(connection_report(self.session, self.base_url))
        selected = {s.endpoint.path: s.name for s in self.exact_streams() if s.selected}
        division = next(iter(self.divisions()), None)
        if len(selected) > MAX_RIGHTS_CHECKS:
            print(f"Rights not checked: {len(selected)} streams are selected (one call each); select at most "
                  f"{MAX_RIGHTS_CHECKS} to check them.")
        elif division is not None and selected:
            missing = missing_rights(self.session, self.base_url, division, selected)
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
