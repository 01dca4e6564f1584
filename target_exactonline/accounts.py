"""The account-code cache: ``AccountCode`` in a contact or document record -> the account's ID.

Every accounts lookup of the run (the accounts stream's own, and the ones made for AccountCode)
fills it, so a code costs at most one lookup per run, shared by every stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from exactonline_api.registry import endpoints
from target_exactonline.connector import ExactWriter
from target_exactonline.fields import key_part, same
from target_exactonline.records import Item

ACCOUNTS_PATH = "crm/Accounts"


class AccountCodes:
    """(division, normalised code) -> account ID, or "" when several accounts share the code."""

    def __init__(self, writer: ExactWriter) -> None:
        self.writer = writer
        self._ids: dict[tuple[int, str], str] = {}

    def note(self, division: int, rows: Iterable[dict]) -> None:
        seen: dict[str, set[str]] = {}
        for row in rows:
            if row.get("Code") and row.get("ID"):
                seen.setdefault(key_part("Edm.String", row["Code"]), set()).add(str(row["ID"]))
        for code, ids in seen.items():
            self._ids[(division, code)] = next(iter(ids)) if len(ids) == 1 else ""

    def get(self, division: int, code: str) -> str | None:
        """The ID; "" when ambiguous; None when not looked up in this run (or not found)."""
        return self._ids.get((division, key_part("Edm.String", code)))

    def resolve(self, division: int, items: list[Item], reject: Callable[[Item, str], None]) -> None:
        """``AccountCode`` -> ``Account``: one lookup for every code of the batch not known yet."""
        wanted = [i for i in items if i.account_code is not None]
        if not wanted:
            return
        accounts = endpoints()[ACCOUNTS_PATH]
        code_field = accounts.field("Code")
        assert code_field is not None
        missing = {key_part("Edm.String", i.account_code): i.account_code for i in wanted
                   if self.get(division, i.account_code) is None}  # type: ignore[arg-type]
        too_long: set[str] = set()
        if missing:
            rows = self.writer.find(accounts, division, [code_field], [(c,) for c in missing.values()],
                                    ["ID", "Code"], too_long=lambda key, _: too_long.add(str(key[0])))
            self.note(division, rows)
        for item in wanted:
            code = str(item.account_code)
            account = self.get(division, code)
            if code in too_long:
                reject(item, f"account code of {len(code)} characters is too long to look up in Exact")
            elif account is None:
                reject(item, f"account code {code!r} not found in division {division}")
            elif account == "":
                reject(item, f"account code {code!r} matches several accounts in division {division}")
            elif item.values.get("Account") and not same("Edm.Guid", item.values["Account"], account):
                reject(item, f"Account {item.values['Account']} and AccountCode {code!r} name different accounts")
            else:
                item.values["Account"] = account
