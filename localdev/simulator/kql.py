"""The subset of KQL (Kusto Query Language) the simulator's runHuntingQuery runs, and Graph's `Timespan`.

    Table | where Col == "v" and Timestamp > ago(7d) | project a, b | order by X [asc|desc] | take N

Operators: `where` (clauses joined by `and`), `project`, `order by`/`sort by` (descending unless `asc`, as in KQL),
`take`/`limit`, in any order and number. Clauses: on a string column `==` (case-sensitive), `=~`, `!=`, `!~`, `has`,
`!has`, `contains`, `!contains`, `startswith`, `in ("a", ...)`, `!in`, `in~`; on a long (`ReportId`) `==`, `!=`,
`<`, `<=`, `>`, `>=`, `in`, `!in`, `between (a .. b)`; on a datetime (`Timestamp`) the comparisons and `between`,
against `datetime(...)`, `ago(<timespan>)` or `now()`. Names and operators are case-sensitive, as in KQL.

Anything else is refused as Graph refuses a query: a `QuerySyntaxError` ("Query could not be parsed at '<token>' on
line [<line>,<column>]", both counted from 1) or a `QuerySemanticError` naming the unknown table or column or the
mismatched types. Times are ticks (100 ns since the Unix epoch): Graph's timestamps have seven fraction digits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


class ColumnType(StrEnum):
    """A column's type, by the name Graph's `schema` gives it."""

    STRING = "String"
    LONG = "Int64"
    DATETIME = "DateTime"


S, L, D = ColumnType.STRING, ColumnType.LONG, ColumnType.DATETIME
_HEAD = (("Timestamp", D), ("DeviceId", S), ("DeviceName", S), ("ActionType", S), ("FileName", S),
         ("FolderPath", S), ("SHA1", S), ("SHA256", S))
#: The tables the simulator knows, each with its columns in schema order (a part of Defender's columns).
TABLES: dict[str, tuple[tuple[str, ColumnType], ...]] = {
    "DeviceProcessEvents": (*_HEAD, ("ProcessCommandLine", S), ("InitiatingProcessFileName", S), ("ReportId", L)),
    "DeviceFileEvents": (*_HEAD, ("InitiatingProcessFileName", S), ("ReportId", L)),
    "DeviceEvents": (*_HEAD, ("InitiatingProcessFileName", S), ("ReportId", L)),
}

TICKS_PER_SECOND = 10_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"d": 86_400 * TICKS_PER_SECOND, "h": 3_600 * TICKS_PER_SECOND, "m": 60 * TICKS_PER_SECOND,
          "s": TICKS_PER_SECOND, "ms": TICKS_PER_SECOND // 1000, "microsecond": 10, "tick": 1}


class KqlError(ValueError):
    """A query Graph would not run; `str()` is Graph's message."""


class QuerySyntaxError(KqlError):
    def __init__(self, token: str, line: int, column: int) -> None:
        super().__init__(f"Query could not be parsed at '{token}' on line [{line},{column}]")


class QuerySemanticError(KqlError):
    """A query that parses but names what does not exist, or compares values of different types."""


# -- times ----------------------------------------------------------------------------------------
def ticks_of(moment: datetime) -> int:
    """`moment` (aware) as ticks since the epoch."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


def parse_datetime(text: str) -> int | None:
    """Ticks of `2026-12-06`, `2026-12-06T10:00[:00[.1234567]][Z]` or the same with a space for `T`; None if not."""
    value = text.strip().upper().replace(" ", "T", 1)
    value = value.removesuffix("Z")
    head, _, fraction = value.partition(".")
    if fraction and (not fraction.isdigit() or len(fraction) > 7):
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?", head):
        return None
    try:
        moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
    except ValueError:
        return None
    return ticks_of(moment) + int(fraction.ljust(7, "0") or 0)


def format_ticks(ticks: int) -> str:
    """Graph's form of a time: `2026-12-06T10:00:00.1234567Z`."""
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    moment = _EPOCH + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{fraction:07d}Z"


_DURATION = re.compile(r"P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def duration_ticks(text: str) -> int | None:
    """Ticks of an ISO 8601 duration (`P7D`, `PT12H`, `P1DT6H`, `P2W`; a year is 365 days, a month 30); None if
    not one."""
    match = _DURATION.fullmatch(text.strip().upper())
    if match is None:
        return None
    years, months, weeks, days, hours, minutes = (int(part or 0) for part in match.groups()[:6])
    seconds = float(match.group(7) or 0)
    total_days = years * 365 + months * 30 + weeks * 7 + days
    return ((total_days * 86_400 + hours * 3_600 + minutes * 60) * TICKS_PER_SECOND
            + round(seconds * TICKS_PER_SECOND))


def timespan_window(text: str, now: int) -> tuple[int, int]:
    """(start, end) ticks of Graph's `Timespan`: a duration back from `now`, or an interval `<start>/<end>`,
    `<start>/<duration>`, `<duration>/<end>`. ValueError when it is none of these."""
    first, slash, second = text.strip().partition("/")
    if not slash:
        length = duration_ticks(first)
        if length is None:
            raise ValueError(f"'{text}' is not an ISO 8601 duration or interval")
        return now - length, now
    start, end = parse_datetime(first), parse_datetime(second)
    if start is not None and end is not None:
        window = (start, end)
    elif start is not None and (length := duration_ticks(second)) is not None:
        window = (start, start + length)
    elif end is not None and (length := duration_ticks(first)) is not None:
        window = (end - length, end)
    else:
        raise ValueError(f"'{text}' is not an ISO 8601 duration or interval")
    if window[0] > window[1]:
        raise ValueError(f"'{text}' ends before it starts")
    return window


# -- tokens ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # name | string | number | timespan | datetime | op | end
    text: str
    line: int
    column: int
    value: Any = None


_OPERATORS = ("==", "=~", "!=", "!~", ">=", "<=", "..", ">", "<", "|", "(", ")", ",")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)(microsecond|tick|ms|d|h|m|s)?(?![A-Za-z0-9_])")
_NEGATED = re.compile(r"!(in|has|contains|startswith)(?![A-Za-z0-9_])")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index, line, line_start = 0, 1, 0
    while index < len(text):
        char = text[index]
        column = index - line_start + 1
        if char == "\n":
            index, line, line_start = index + 1, line + 1, index + 1
            continue
        if char.isspace():
            index += 1
            continue
        if text.startswith("//", index):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        if char in "\"'" or (char == "@" and text[index + 1:index + 2] in ("\"", "'")):
            verbatim = char == "@"
            quote = text[index + 1] if verbatim else char
            position, chars = index + (2 if verbatim else 1), []
            while position < len(text) and text[position] != quote and text[position] != "\n":
                if text[position] == "\\" and not verbatim and position + 1 < len(text):
                    escaped = text[position + 1]
                    chars.append({"n": "\n", "t": "\t", "r": "\r"}.get(escaped, escaped))
                    position += 2
                    continue
                chars.append(text[position])
                position += 1
            if position >= len(text) or text[position] != quote:
                raise QuerySyntaxError(text[index:position], line, column)
            tokens.append(Token("string", text[index:position + 1], line, column, "".join(chars)))
            index = position + 1
            continue
        if char.isdigit():
            number = _NUMBER.match(text, index)
            if number is None:
                bad = re.match(r"[A-Za-z0-9_.]+", text[index:])
                raise QuerySyntaxError(bad.group() if bad else char, line, column)
            amount, unit = number.group(1), number.group(2)
            if unit:
                tokens.append(Token("timespan", number.group(), line, column, round(float(amount) * _UNITS[unit])))
            elif "." in amount:
                raise QuerySyntaxError(amount, line, column)  # no real columns here
            else:
                tokens.append(Token("number", amount, line, column, int(amount)))
            index = number.end()
            continue
        name = _NAME.match(text, index)
        if name is not None:
            word = name.group()
            end = name.end()
            if word == "in" and text.startswith("~", end):
                word, end = "in~", end + 1
            if word == "datetime" and (opening := re.compile(r"\s*\(").match(text, end)):
                closing = text.find(")", opening.end())
                if closing < 0:
                    raise QuerySyntaxError(text[index:].split("\n")[0], line, column)
                raw = text[opening.end():closing]
                ticks = parse_datetime(raw.strip().strip("\"'"))
                if ticks is None:
                    raise QuerySyntaxError(text[index:closing + 1], line, column)
                tokens.append(Token("datetime", text[index:closing + 1], line, column, ticks))
                index = closing + 1
                continue
            tokens.append(Token("name", word, line, column))
            index = end
            continue
        negated = _NEGATED.match(text, index)
        if negated is not None:
            tokens.append(Token("name", negated.group(), line, column))
            index = negated.end()
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
        if operator is None:
            raise QuerySyntaxError(char, line, column)
        tokens.append(Token("op", operator, line, column))
        index += len(operator)
    tokens.append(Token("end", "<end of query>", line, index - line_start + 1))
    return tokens


# -- the plan ----------------------------------------------------------------------------------------
Row = dict[str, Any]
Predicate = Callable[[Row], bool]


@dataclass(frozen=True)
class Where:
    predicates: tuple[Predicate, ...]


@dataclass(frozen=True)
class Project:
    columns: tuple[str, ...]


@dataclass(frozen=True)
class OrderBy:
    #: (column, descending), most significant first.
    keys: tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class Take:
    count: int


Operator = Where | Project | OrderBy | Take


@dataclass(frozen=True)
class Query:
    table: str
    operators: tuple[Operator, ...]
    #: The answer's columns, in order, with their types.
    schema: tuple[tuple[str, ColumnType], ...]


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "==": lambda value, wanted: value == wanted,
    "!=": lambda value, wanted: value != wanted,
    "=~": lambda value, wanted: value.casefold() == wanted.casefold(),
    "!~": lambda value, wanted: value.casefold() != wanted.casefold(),
    "contains": lambda value, wanted: wanted.casefold() in value.casefold(),
    "!contains": lambda value, wanted: wanted.casefold() not in value.casefold(),
    "startswith": lambda value, wanted: value.casefold().startswith(wanted.casefold()),
    "has": lambda value, wanted: _has(value, wanted),
    "!has": lambda value, wanted: not _has(value, wanted),
}
_ORDER_TESTS: dict[str, Callable[[int, int], bool]] = {
    "==": lambda value, bound: value == bound, "!=": lambda value, bound: value != bound,
    "<": lambda value, bound: value < bound, "<=": lambda value, bound: value <= bound,
    ">": lambda value, bound: value > bound, ">=": lambda value, bound: value >= bound,
}


def _has(value: str, term: str) -> bool:
    """KQL's `has`: `term` stands in `value` as a whole term (alphanumeric boundaries), in any case."""
    if not term:
        return True
    return re.search(rf"(?<![0-9a-z]){re.escape(term.casefold())}(?![0-9a-z])", value.casefold()) is not None


class _Parser:
    def __init__(self, text: str, now: int) -> None:
        self.tokens = tokenize(text)
        self.position = 0
        self.now = now

    @property
    def token(self) -> Token:
        return self.tokens[self.position]

    def fail(self, token: Token | None = None) -> QuerySyntaxError:
        token = token or self.token
        return QuerySyntaxError(token.text, token.line, token.column)

    def take(self, kind: str, text: str | None = None) -> Token:
        token = self.token
        if token.kind != kind or (text is not None and token.text != text):
            raise self.fail()
        self.position += 1
        return token

    def accept(self, kind: str, text: str) -> bool:
        if self.token.kind == kind and self.token.text == text:
            self.position += 1
            return True
        return False

    def query(self) -> Query:
        table = self.take("name").text
        if table not in TABLES:
            raise QuerySemanticError(f"Failed to resolve table or column expression named '{table}'")
        schema = TABLES[table]
        operators: list[Operator] = []
        while self.accept("op", "|"):
            operator = self.take("name")
            types = dict(schema)
            if operator.text == "where":
                operators.append(self.where(types))
            elif operator.text == "project":
                columns = [self.column(types, "project")]
                while self.accept("op", ","):
                    columns.append(self.column(types, "project"))
                twice = next((name for index, name in enumerate(columns) if name in columns[:index]), None)
                if twice is not None:
                    raise QuerySemanticError(f"'project' operator: the column '{twice}' is projected twice")
                operators.append(Project(tuple(columns)))
                schema = tuple((name, types[name]) for name in columns)
            elif operator.text in ("order", "sort"):
                self.take("name", "by")
                keys = [self.order_key(types, operator.text)]
                while self.accept("op", ","):
                    keys.append(self.order_key(types, operator.text))
                operators.append(OrderBy(tuple(keys)))
            elif operator.text in ("take", "limit"):
                operators.append(Take(int(self.take("number").value)))
            else:
                raise self.fail(operator)
        if self.token.kind != "end":
            raise self.fail()
        return Query(table, tuple(operators), schema)

    def column(self, types: dict[str, ColumnType], operator: str) -> str:
        name = self.take("name").text
        if name not in types:
            raise QuerySemanticError(f"'{operator}' operator: Failed to resolve scalar expression named '{name}'")
        return name

    def order_key(self, types: dict[str, ColumnType], operator: str) -> tuple[str, bool]:
        name = self.column(types, f"{operator} by")
        if self.accept("name", "asc"):
            return name, False
        self.accept("name", "desc")
        return name, True

    def where(self, types: dict[str, ColumnType]) -> Where:
        predicates = [self.clause(types)]
        while self.accept("name", "and"):
            predicates.append(self.clause(types))
        return Where(tuple(predicates))

    def clause(self, types: dict[str, ColumnType]) -> Predicate:
        name = self.column(types, "where")
        kind = types[name]
        operator = self.token
        if operator.kind in ("op", "name") and (operator.text in _ORDER_TESTS or operator.text in _STRING_TESTS):
            self.position += 1
            literal = self.literal()
            return self.compare(name, kind, operator.text, literal)
        if operator.kind == "name" and operator.text in ("in", "!in", "in~"):
            self.position += 1
            self.take("op", "(")
            values = [self.literal()]
            while self.accept("op", ","):
                values.append(self.literal())
            self.take("op", ")")
            for value in values:
                self.check_types(name, kind, operator.text, value)
            if kind is ColumnType.STRING:
                fold = operator.text == "in~"
                wanted = {str(v.value).casefold() if fold else str(v.value) for v in values}
                inside: Predicate = (lambda row: str(row[name]).casefold() in wanted) if fold else (
                    lambda row: str(row[name]) in wanted)
            else:
                if operator.text == "in~":
                    raise QuerySemanticError(f"The operator 'in~' is not defined for values of type "
                                             f"{_kql_type(kind)}")
                numbers = {int(v.value) for v in values}
                inside = lambda row: _ordered(row[name], kind) in numbers  # noqa: E731
            return inside if operator.text != "!in" else (lambda row: not inside(row))
        if operator.kind == "name" and operator.text == "between":
            self.position += 1
            self.take("op", "(")
            low = self.literal()
            self.take("op", "..")
            high = self.literal()
            self.take("op", ")")
            for bound in (low, high):
                self.check_types(name, kind, "between", bound)
            if kind is ColumnType.STRING:
                raise QuerySemanticError("The operator 'between' is not defined for values of type string")
            lowest, highest = int(low.value), int(high.value)
            return lambda row: lowest <= _ordered(row[name], kind) <= highest
        raise self.fail()

    def literal(self) -> Token:
        token = self.token
        if token.kind in ("string", "number", "datetime"):
            self.position += 1
            return token
        if token.kind == "name" and token.text in ("ago", "now"):
            self.position += 1
            self.take("op", "(")
            span = 0
            if token.text == "ago":
                span_token = self.token
                if span_token.kind != "timespan":
                    raise self.fail()
                self.position += 1
                span = int(span_token.value)
            self.take("op", ")")
            return Token("datetime", token.text, token.line, token.column, self.now - span)
        raise self.fail()

    def check_types(self, name: str, kind: ColumnType, operator: str, literal: Token) -> None:
        wanted = {ColumnType.STRING: "string", ColumnType.LONG: "number", ColumnType.DATETIME: "datetime"}[kind]
        if literal.kind != wanted:
            given = {"string": "string", "number": "long", "datetime": "datetime"}[literal.kind]
            raise QuerySemanticError(f"Cannot compare values of types {_kql_type(kind)} and {given} ('{name}' "
                                     f"{operator} {literal.text}). Try adding explicit casts")

    def compare(self, name: str, kind: ColumnType, operator: str, literal: Token) -> Predicate:
        self.check_types(name, kind, operator, literal)
        if kind is ColumnType.STRING:
            if operator not in _STRING_TESTS:
                raise QuerySemanticError(f"The operator '{operator}' is not defined for values of type string")
            test, wanted = _STRING_TESTS[operator], str(literal.value)
            return lambda row: test(str(row[name]), wanted)
        if operator not in _ORDER_TESTS:
            raise QuerySemanticError(f"The operator '{operator}' is not defined for values of type "
                                     f"{_kql_type(kind)}")
        order_test, bound = _ORDER_TESTS[operator], int(literal.value)
        return lambda row: order_test(_ordered(row[name], kind), bound)


def _kql_type(kind: ColumnType) -> str:
    return {ColumnType.STRING: "string", ColumnType.LONG: "long", ColumnType.DATETIME: "datetime"}[kind]


def _ordered(value: Any, kind: ColumnType) -> int:
    """A long or datetime cell as an int (ticks for a datetime)."""
    if kind is ColumnType.DATETIME:
        ticks = parse_datetime(str(value))
        return ticks if ticks is not None else 0
    return int(value)


def parse(text: str, now: int) -> Query:
    """The plan of `text`, with `ago()` and `now()` taken at `now` (ticks); KqlError if Graph would refuse it."""
    return _Parser(text, now).query()


def _sort_key(kind: ColumnType, column: str) -> Callable[[Row], Any]:
    if kind is ColumnType.STRING:
        return lambda row: str(row[column])
    return lambda row: _ordered(row[column], kind)


def run(query: Query, rows: Iterable[Row]) -> list[Row]:
    """The answer of `query` over `rows` (each a row of `query.table`, every column present)."""
    result: Sequence[Row] = list(rows)
    types = dict(TABLES[query.table])
    for operator in query.operators:
        if isinstance(operator, Where):
            result = [row for row in result if all(test(row) for test in operator.predicates)]
        elif isinstance(operator, Project):
            result = [{name: row[name] for name in operator.columns} for row in result]
        elif isinstance(operator, OrderBy):
            ordered = list(result)
            for column, descending in reversed(operator.keys):  # least significant first: sorts are stable
                ordered.sort(key=_sort_key(types[column], column), reverse=descending)
            result = ordered
        else:
            result = list(result)[:operator.count]
    return [{name: row[name] for name, _ in query.schema} for row in result]
