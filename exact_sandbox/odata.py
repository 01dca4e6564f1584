"""OData v2 query syntax as Exact accepts it: literals, $filter, $select, $orderby, keys.

``$filter`` compiles to a closure over a stored row (a list), so evaluating it on
100,000 rows stays cheap. Stored values are in wire form (dates as
``/Date(ms)/``), and date literals are read as Exact local time, so a date
comparison is an integer comparison. Error texts follow WCF Data Services, the
framework Exact runs on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from .metadata import INTEGER_TYPES, NUMERIC_TYPES, Endpoint
from .timeutil import ms_date, ms_of, naive_to_ms


class ODataError(Exception):
    """A malformed query; the API answers 400 with this message."""


CLR = {
    "Edm.String": "System.String", "Edm.Guid": "System.Guid", "Edm.Int32": "System.Int32",
    "Edm.Int64": "System.Int64", "Edm.Int16": "System.Int16", "Edm.Byte": "System.Byte",
    "Edm.Double": "System.Double", "Edm.Decimal": "System.Decimal", "Edm.Single": "System.Single",
    "Edm.Boolean": "System.Boolean", "Edm.DateTime": "System.DateTime", "Edm.Binary": "System.Byte[]",
    "null": "<null>",
}

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<prefixed>(?i:guid|datetime|datetimeoffset|time|binary|x)'(?:[^']|'')*')
      |(?P<string>'(?:[^']|'')*')
      |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[LlMmDdFf]?)
      |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
      |(?P<punct>[(),])""",
    re.VERBOSE,
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
COMPARE = ("eq", "ne", "gt", "ge", "lt", "le")
KEYWORDS = {"and", "or", "not", *COMPARE, "add", "sub", "mul", "div", "mod"}


def category(edm: str) -> str:
    if edm in NUMERIC_TYPES:
        return "num"
    return {"Edm.String": "str", "Edm.Guid": "guid", "Edm.DateTime": "dt", "Edm.Boolean": "bool",
            "null": "null"}.get(edm, edm)


def parse_literal(text: str) -> tuple[str, Any]:
    """One OData literal -> (Edm type, value in stored form; dates as local ms)."""
    lower = text.lower()
    if lower == "null":
        return "null", None
    if lower in ("true", "false"):
        return "Edm.Boolean", lower == "true"
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise ODataError(f"Unterminated string literal in '{text}'.")
        return "Edm.String", text[1:-1].replace("''", "'")
    quote = text.find("'")
    if quote > 0 and text.endswith("'"):
        prefix, body = lower[:quote], text[quote + 1:-1]
        if prefix == "guid":
            if not _GUID.match(body):
                raise ODataError(f"Unrecognized 'Edm.Guid' literal '{text}'.")
            return "Edm.Guid", body.lower()
        if prefix == "datetime":
            try:
                return "Edm.DateTime", naive_to_ms(body)
            except (ValueError, OverflowError):
                raise ODataError(f"Unrecognized 'Edm.DateTime' literal '{text}'.") from None
        raise ODataError(f"Literals of the form '{prefix}' are not supported: '{text}'.")
    match = re.fullmatch(r"(-?\d+)([Ll]?)", text)
    if match:
        value = int(match.group(1))
        wide = match.group(2) or not -(2**31) <= value < 2**31
        return ("Edm.Int64" if wide else "Edm.Int32"), value
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)([MmDdFf]?)", text)
    if match:
        return ("Edm.Decimal" if match.group(2) in ("M", "m") else "Edm.Double"), float(match.group(1))
    raise ODataError(f"Unrecognized literal '{text}'.")


def format_literal(value: Any, edm: str) -> str:
    """A stored value as an OData literal (for keys in URLs and skip tokens)."""
    if value is None:
        return "null"
    if edm == "Edm.Guid":
        return f"guid'{value}'"
    if edm == "Edm.Int64":
        return f"{value}L"
    if edm == "Edm.String":
        return "'" + str(value).replace("'", "''") + "'"
    if edm == "Edm.Boolean":
        return "true" if value else "false"
    if edm == "Edm.DateTime":
        ms = ms_of(value) if isinstance(value, str) else value
        return "datetime'" + (datetime(1970, 1, 1) + timedelta(milliseconds=ms)).isoformat() + "'"
    return repr(value) if isinstance(value, float) else str(value)


def coerce_literal(edm_field: str, edm_literal: str, value: Any) -> Any:
    """A literal's value made comparable with a field's stored value, or ODataError."""
    if edm_literal == "null":
        return None
    field_cat, literal_cat = category(edm_field), category(edm_literal)
    if field_cat == literal_cat:
        if edm_field in INTEGER_TYPES and isinstance(value, float):
            if value != int(value):
                raise ODataError(f"'{value}' is not a valid {edm_field} value.")
            value = int(value)
        return value
    if field_cat == "bool" and literal_cat == "num" and value in (0, 1):
        return bool(value)
    raise ODataError(f"Operand types '{CLR.get(edm_field, edm_field)}' and '{CLR.get(edm_literal, edm_literal)}' "
                     "are incompatible.")


# ---------------------------------------------------------------- $filter


@dataclass
class Node:
    kind: str  # field | const | cmp | and | or | not | call
    edm: str
    ev: Callable[[list], Any]
    name: str = ""
    value: Any = None
    op: str = ""
    children: list["Node"] = field(default_factory=list)


@dataclass
class Filter:
    text: str
    root: Node
    fields: set[str]

    def __call__(self, row: list) -> bool:
        return self.root.ev(row) is True

    def lower_bound(self, name: str) -> int | None:
        """From top-level ``name gt N`` / ``name ge N`` conjuncts: rows need name > result."""
        best = None
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.kind == "and":
                stack.extend(node.children)
            elif node.kind == "cmp" and node.op in ("gt", "ge"):
                left, right = node.children
                if left.kind == "field" and left.name == name and right.kind == "const" \
                        and isinstance(right.value, (int, float)) and right.value is not None:
                    bound = int(right.value) if node.op == "gt" else int(right.value) - 1
                    best = bound if best is None else max(best, bound)
        return best


class _Parser:
    def __init__(self, text: str, types: dict[str, str], index: dict[str, int], type_name: str, ci: bool):
        self.text, self.types, self.index, self.type_name, self.ci = text, types, index, type_name, ci
        self.tokens: list[tuple[str, str, int]] = []
        self.pos = 0
        self.fields: set[str] = set()
        self._tokenize()

    def _tokenize(self) -> None:
        text, at = self.text, 0
        while at < len(text):
            match = _TOKEN.match(text, at)
            if not match:
                if text[at] == "'" or "'" in text[at:at + 16]:
                    raise ODataError(f"There is an unterminated string literal at position {at} in '{text}'.")
                raise ODataError(f"Syntax error: character '{text[at]}' is not valid at position {at} in '{text}'.")
            kind = match.lastgroup
            if kind != "ws":
                self.tokens.append((kind, match.group(), at))
            at = match.end()
        self.tokens.append(("end", "", len(text)))

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        kind, text, at = self.take()
        if text != value:
            raise ODataError(f"'{value}' expected at position {at} in '{self.text}'.")

    def keyword(self, *words: str) -> str | None:
        kind, text, _ = self.peek()
        if kind == "name" and text in words:
            self.pos += 1
            return text
        return None

    def parse(self) -> Filter:
        root = self.or_()
        kind, text, at = self.peek()
        if kind != "end":
            raise ODataError(f"Syntax error at position {at} in '{self.text}'.")
        if root.edm != "Edm.Boolean":
            raise ODataError(f"Expression of type '{CLR.get(root.edm, root.edm)}' expected to be "
                             f"'System.Boolean' in '{self.text}'.")
        return Filter(self.text, root, self.fields)

    def or_(self) -> Node:
        node = self.and_()
        while self.keyword("or"):
            node = self._logical("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.compare()
        while self.keyword("and"):
            node = self._logical("and", node, self.compare())
        return node

    def _logical(self, op: str, left: Node, right: Node) -> Node:
        for side in (left, right):
            if side.edm != "Edm.Boolean":
                raise ODataError(f"Operator '{op}' incompatible with operand type '{CLR.get(side.edm)}' "
                                 f"in '{self.text}'.")
        lf, rf = left.ev, right.ev
        if op == "and":
            ev = lambda row: lf(row) is True and rf(row) is True  # noqa: E731
        else:
            ev = lambda row: lf(row) is True or rf(row) is True  # noqa: E731
        return Node(op, "Edm.Boolean", ev, op=op, children=[left, right])

    def compare(self) -> Node:
        left = self.unary()
        op = self.keyword(*COMPARE)
        if op is None:
            kind, text, at = self.peek()
            if kind == "name" and text in ("add", "sub", "mul", "div", "mod"):
                raise ODataError(f"Operator '{text}' is not supported at position {at} in '{self.text}'.")
            return left
        at = self.peek()[2]
        right = self.unary()
        return self._compare(op, left, right, at)

    def _compare(self, op: str, left: Node, right: Node, at: int) -> Node:
        if left.kind == "const" and right.kind == "field":  # keep "field op const" for the fast path
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        lcat, rcat = category(left.edm), category(right.edm)
        if "null" not in (lcat, rcat) and lcat != rcat and not {lcat, rcat} == {"bool", "num"}:
            raise ODataError(f"Operator '{op}' incompatible with operand types '{CLR.get(left.edm, left.edm)}' "
                             f"and '{CLR.get(right.edm, right.edm)}' at position {at}.")
        fold = self.ci and "str" in (lcat, rcat)
        lf = left.ev
        if right.kind == "const":
            value = right.value
            if lcat == "bool" and rcat == "num":
                value = bool(value)
            if fold and isinstance(value, str):
                value = value.lower()
            ev = _compare_const(op, lf, value, fold)
        else:
            ev = _compare_nodes(op, lf, right.ev, fold)
        return Node("cmp", "Edm.Boolean", ev, op=op, children=[left, right])

    def unary(self) -> Node:
        if self.keyword("not"):
            inner = self.unary()
            if inner.edm != "Edm.Boolean":
                raise ODataError(f"Operator 'not' incompatible with operand type '{CLR.get(inner.edm)}'.")
            f = inner.ev
            return Node("not", "Edm.Boolean", lambda row: not (f(row) is True), children=[inner])
        return self.primary()

    def primary(self) -> Node:
        kind, text, at = self.take()
        if text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if kind in ("string", "prefixed", "number"):
            edm, value = parse_literal(text)
            return Node("const", edm, lambda row, v=value: v, value=value)
        if kind == "name":
            lower = text.lower()
            if lower in ("true", "false", "null"):
                edm, value = parse_literal(lower)
                return Node("const", edm, lambda row, v=value: v, value=value)
            if self.peek()[1] == "(":
                return self.call(text, at)
            if text in KEYWORDS:
                raise ODataError(f"Expression expected at position {at} in '{self.text}'.")
            return self.member(text, at)
        if kind == "end":
            raise ODataError(f"Expression expected at position {at} in '{self.text}'.")
        raise ODataError(f"Syntax error at position {at} in '{self.text}'.")

    def member(self, name: str, at: int) -> Node:
        if "/" in name:
            raise ODataError(f"Filtering on navigation properties is not supported ('{name}').")
        edm = self.types.get(name)
        if edm is None or not edm.startswith("Edm."):
            raise ODataError(f"No property '{name}' exists in type '{self.type_name}' at position {at}.")
        if edm == "Edm.Binary":
            raise ODataError(f"Property '{name}' of type 'System.Byte[]' cannot be used in $filter.")
        self.fields.add(name)
        slot = self.index[name]
        if edm == "Edm.DateTime":
            ev = lambda row: ms_of(row[slot])  # noqa: E731
        else:
            ev = lambda row: row[slot]  # noqa: E731
        return Node("field", edm, ev, name=name)

    def call(self, name: str, at: int) -> Node:
        self.expect("(")
        args: list[Node] = []
        if self.peek()[1] != ")":
            args.append(self.or_())
            while self.peek()[1] == ",":
                self.take()
                args.append(self.or_())
        self.expect(")")
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise ODataError(f"Unknown function '{name}' at position {at}.")
        arg_types, result, impl = spec
        if len(args) not in ((len(arg_types),) if name != "substring" else (2, 3)):
            raise ODataError(f"No function signature for the function with name '{name}' matches the "
                             f"specified arguments at position {at}.")
        for node, want in zip(args, arg_types):
            if category(node.edm) not in (want, "null"):
                raise ODataError(f"No function signature for the function with name '{name}' matches the "
                                 f"specified arguments at position {at}.")
        fns = [a.ev for a in args]
        ci = self.ci

        def ev(row):
            values = [f(row) for f in fns]
            if any(v is None for v in values):
                return None
            return impl(values, ci)

        return Node("call", result, ev, name=name, children=args)


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def _compare_const(op: str, lf, value, fold: bool):
    """``field op constant``: the hot path of sync and lookup filters."""
    if fold:
        base = lf
        lf = lambda row: _lower(base(row))  # noqa: E731
    if value is None:
        if op == "eq":
            return lambda row: lf(row) is None
        if op == "ne":
            return lambda row: lf(row) is not None
        return lambda row: False
    if op == "eq":
        return lambda row: lf(row) == value
    if op == "ne":
        return lambda row: lf(row) != value
    if op == "gt":
        return lambda row: (v := lf(row)) is not None and v > value
    if op == "ge":
        return lambda row: (v := lf(row)) is not None and v >= value
    if op == "lt":
        return lambda row: (v := lf(row)) is not None and v < value
    return lambda row: (v := lf(row)) is not None and v <= value


def _compare_nodes(op: str, lf, rf, fold: bool):
    import operator

    fn = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
          "lt": operator.lt, "le": operator.le}[op]

    def ev(row):
        a, b = lf(row), rf(row)
        if fold:
            a, b = _lower(a), _lower(b)
        if a is None or b is None:
            return (a is b) if op == "eq" else (a is not b) if op == "ne" else False
        return fn(a, b)

    return ev


def _ci_in(needle: str, hay: str, ci: bool) -> bool:
    return needle.lower() in hay.lower() if ci else needle in hay


def _date_part(part: str):
    def impl(values, ci):
        moment = datetime(1970, 1, 1) + timedelta(milliseconds=values[0])
        return getattr(moment, part)
    return (("dt",), "Edm.Int32", impl)


_FUNCTIONS: dict[str, tuple[tuple[str, ...], str, Callable]] = {
    "substringof": (("str", "str"), "Edm.Boolean", lambda v, ci: _ci_in(v[0], v[1], ci)),
    "startswith": (("str", "str"), "Edm.Boolean",
                   lambda v, ci: (v[0].lower().startswith(v[1].lower()) if ci else v[0].startswith(v[1]))),
    "endswith": (("str", "str"), "Edm.Boolean",
                 lambda v, ci: (v[0].lower().endswith(v[1].lower()) if ci else v[0].endswith(v[1]))),
    "indexof": (("str", "str"), "Edm.Int32",
                lambda v, ci: (v[0].lower().find(v[1].lower()) if ci else v[0].find(v[1]))),
    "length": (("str",), "Edm.Int32", lambda v, ci: len(v[0])),
    "trim": (("str",), "Edm.String", lambda v, ci: v[0].strip()),
    "tolower": (("str",), "Edm.String", lambda v, ci: v[0].lower()),
    "toupper": (("str",), "Edm.String", lambda v, ci: v[0].upper()),
    "concat": (("str", "str"), "Edm.String", lambda v, ci: v[0] + v[1]),
    "substring": (("str", "num", "num"), "Edm.String",
                  lambda v, ci: v[0][int(v[1]):] if len(v) == 2 else v[0][int(v[1]):int(v[1]) + int(v[2])]),
    "round": (("num",), "Edm.Double", lambda v, ci: float(round(v[0]))),
    "floor": (("num",), "Edm.Double", lambda v, ci: float(int(v[0] // 1))),
    "ceiling": (("num",), "Edm.Double", lambda v, ci: float(-int(-v[0] // 1))),
    "year": _date_part("year"), "month": _date_part("month"), "day": _date_part("day"),
    "hour": _date_part("hour"), "minute": _date_part("minute"), "second": _date_part("second"),
}


def compile_filter(text: str, endpoint: Endpoint, index: dict[str, int], *, ci: bool = True,
                   extra_types: dict[str, str] | None = None) -> Filter:
    types = {f.name: f.type for f in endpoint.fields}
    if extra_types:
        types.update(extra_types)
    return _Parser(text, types, index, endpoint.type_name, ci).parse()


# ---------------------------------------------------------------- $select, $expand, $orderby


@dataclass
class Selection:
    fields: list[str]  # data and navigation properties of the entity, in endpoint order
    nav_fields: dict[str, list[str] | None]  # expanded navigation -> selected sub-properties (None: all)


def parse_select(select: str | None, expand: str | None, endpoint: Endpoint,
                 child_fields: Callable[[str], dict[str, str] | None]) -> Selection:
    """Validate ``$select``/``$expand`` against the endpoint's properties."""
    expanded: dict[str, list[str] | None] = {}
    if expand:
        for part in _split_list(expand, "$expand"):
            if part not in endpoint.nav_fields:
                raise ODataError(f"No property '{part}' exists in type '{endpoint.type_name}' at position 0.")
            expanded[part] = None
    if select is None or select.strip() == "*":
        return Selection([f.name for f in endpoint.fields], expanded)
    chosen: set[str] = set()
    for part in _split_list(select, "$select"):
        if part == "*":
            chosen.update(f.name for f in endpoint.fields)
            continue
        head, _, sub = part.partition("/")
        if head not in endpoint.field_map:
            raise ODataError(f"No property '{head}' exists in type '{endpoint.type_name}' at position 0.")
        chosen.add(head)
        if sub:
            if head not in expanded:
                raise ODataError("Only properties specified in $expand can be traversed in $select query options.")
            known = child_fields(head) or {}
            if sub != "*" and sub not in known:
                raise ODataError(f"No property '{sub}' exists in type '{head}' at position 0.")
            if sub != "*":
                current = expanded[head]
                expanded[head] = (current or []) + [sub]
    return Selection([f.name for f in endpoint.fields if f.name in chosen], expanded)


def parse_orderby(text: str, endpoint: Endpoint) -> list[tuple[str, bool]]:
    """``Code desc, Name`` -> [(name, descending)]."""
    order = []
    for part in _split_list(text, "$orderby"):
        words = part.split()
        name = words[0]
        descending = len(words) > 1 and words[1].lower() == "desc"
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError(f"Syntax error in $orderby '{text}'.")
        edm = endpoint.field_map.get(name)
        if edm is None or edm.is_nav:
            raise ODataError(f"No property '{name}' exists in type '{endpoint.type_name}' at position 0.")
        order.append((name, descending))
    return order


def _split_list(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ODataError(f"Syntax error in {option} '{text}'.")
    return parts


# ---------------------------------------------------------------- keys and skip tokens


def last_value(pairs: list[tuple[str, str]], name: str, default: Any = None) -> Any:
    """A query option given twice counts once, the last one (as ASP.NET reads it)."""
    value = default
    for key, val in pairs:
        if key == name:
            value = val
    return value


def split_top_level(text: str) -> list[str]:
    """Split on commas outside quotes (key predicates and skip tokens)."""
    parts, current, quoted = [], [], False
    for char in text:
        if char == "'":
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_key(text: str, names: tuple[str, ...], types: tuple[str, ...]) -> Any:
    """``guid'..'``, ``123``, ``'abc'`` or ``A=1,B=2`` -> the stored key (tuple when composite)."""
    parts = split_top_level(text)
    values: dict[str, Any] = {}
    for position, part in enumerate(parts):
        name, eq, literal = part.partition("=")
        if not eq or name.startswith("'"):
            if len(parts) != 1 or len(names) != 1:
                raise ODataError(f"Bad key predicate '({text})'.")
            name, literal = names[0], part
        name = name.strip()
        if name not in names:
            raise ODataError(f"Bad key predicate '({text})'.")
        edm = types[names.index(name)]
        lit_edm, value = parse_literal(literal.strip())
        try:
            values[name] = coerce_literal(edm, lit_edm, value)
        except ODataError:
            raise ODataError(f"Bad key predicate '({text})': expected a {edm} value.") from None
        if edm == "Edm.DateTime" and values[name] is not None:
            values[name] = ms_date(values[name])
    if set(values) != set(names):
        raise ODataError(f"Bad key predicate '({text})'.")
    if len(names) == 1:
        return values[names[0]]
    return tuple(values[name] for name in names)
