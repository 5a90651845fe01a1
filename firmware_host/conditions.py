"""A small safe expression language over the live state (`power.soc >= 40 and modem.link == "up"`), never eval.

Grammar (keywords lower case; `component.field` names a value of the state model)::

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := operand [("==" | "!=" | "<" | "<=" | ">" | ">=") operand]
                | operand ["not"] "in" "[" literal ("," literal)* "]"
    operand    := component.field | literal | "(" expression ")"
    literal    := number | "string" | 'string' | true | false

Every expression is parsed and type-checked when the config is loaded (field names, operator and literal types,
known enumerations such as `modem.link`); a bad one is rejected with the column and the problem, it is never run.

Values are three-valued, because a sensor may be silent: a field of a stale component, or a value not read yet,
is *unknown*, and so is any comparison with it; `and`/`or`/`not` follow Kleene's logic (`false and unknown` is
false, `true or unknown` is true). A checklist step over an unknown value is neither done nor failed: the driver
confirms it by hand. A bare field is true only when it is the boolean `true`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .state import BOOL, FIELDS, NUMBER, TABLE, TEXT, StateModel

MAX_LENGTH = 500  # characters: a checklist condition is one line, not a program
MAX_DEPTH = 16  # nesting of not/parentheses: keeps the recursive parser far from Python's recursion limit
MAX_LIST = 32  # items in an `in [...]` list

ANY = "any"


@dataclass(frozen=True)
class FieldType:
    kind: str
    choices: tuple[str, ...] | None = None  # known values of a text field (typos are caught at load)


# The types of every declared state field, from the one field table (firmware_host/state.py FIELDS).
FIELD_TYPES: dict[str, dict[str, FieldType]] = {}
for _field in FIELDS:
    FIELD_TYPES.setdefault(_field.component, {})[_field.name] = FieldType(_field.kind, _field.choices)
# A condition over a component this bus does not have (state.OPTIONAL_COMPONENTS) "does not apply" (checklist/model.py).


class ConditionError(ValueError):
    """A condition that cannot be accepted: ``column 14: <problem>`` (1-based column in the expression)."""

    def __init__(self, text: str, column: int | None, problem: str):
        self.text, self.column, self.problem = text, column, problem
        super().__init__(f"column {column}: {problem}" if column is not None else problem)


# --- tokens ---------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?![\w.]))
  | (?P<string>"[^"\\\n]*"|'[^'\\\n]*')
  | (?P<path>[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    """,
    re.VERBOSE,
)
KEYWORDS = ("and", "or", "not", "in", "true", "false")


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, path, keyword, op, end
    value: Any
    column: int
    text: str


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; anything outside the language is an error naming its column."""
    if not isinstance(text, str):
        raise ConditionError(str(text), None, f"must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ConditionError(text, None, f"too long ({len(text)} characters, at most {MAX_LENGTH})")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            char = text[pos]
            hint = ""
            if char == "=":
                hint = " (use == to compare)"
            elif char in "&|!":
                hint = " (use and, or, not)"
            elif char in "\"'":
                hint = " (unterminated string; backslashes and line breaks are not allowed in strings)"
            raise ConditionError(text, pos + 1, f"unexpected character {char!r}{hint}")
        kind = m.lastgroup
        raw = m.group()
        assert kind is not None
        if kind == "number":
            value: Any = float(raw) if any(c in raw for c in ".") else int(raw)
            tokens.append(Token("number", value, pos + 1, raw))
        elif kind == "string":
            tokens.append(Token("string", raw[1:-1], pos + 1, raw))
        elif kind == "path":
            tokens.append(Token("path", tuple(raw.split(".")), pos + 1, raw))
        elif kind == "word":
            if raw in ("true", "false"):
                tokens.append(Token("bool", raw == "true", pos + 1, raw))
            elif raw in KEYWORDS:
                tokens.append(Token("keyword", raw, pos + 1, raw))
            else:
                hint = {
                    "True": " (write true)",
                    "False": " (write false)",
                    "AND": " (write and)",
                    "OR": " (write or)",
                    "NOT": " (write not)",
                    "null": " (there is no null: an unread value is unknown)",
                    "None": " (there is no None: an unread value is unknown)",
                }.get(raw, " (a state value is written component.field, e.g. power.soc)")
                raise ConditionError(text, pos + 1, f"unknown word {raw!r}{hint}")
        elif kind == "op":
            tokens.append(Token("op", raw, pos + 1, raw))
        pos = m.end()
    tokens.append(Token("end", None, len(text) + 1, "end of expression"))
    return tokens


# --- syntax tree ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    component: str
    field: str
    column: int


@dataclass(frozen=True)
class Literal:
    value: Any
    column: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Any
    right: Any
    column: int


@dataclass(frozen=True)
class InList:
    operand: Any
    values: tuple[Any, ...]
    negated: bool
    column: int


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Any, ...]


Node = Path | Literal | Compare | InList | Not | BoolOp
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")


class _Parser:
    def __init__(self, text: str, fields: dict[str, dict[str, FieldType] | None]):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0
        self.fields = fields

    def fail(self, token: Token, problem: str) -> ConditionError:
        return ConditionError(self.text, token.column, problem)

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, kind: str, value: Any = None) -> bool:
        t = self.token
        return t.kind == kind and (value is None or t.value == value)

    def parse(self) -> Node:
        if self.at("end"):
            raise self.fail(self.token, "empty condition")
        node = self.parse_or()
        if not self.at("end"):
            t = self.token
            raise self.fail(t, f"unexpected {t.text!r} (expected and, or, or the end of the condition)")
        self.check_boolean(node)
        return node

    def check_boolean(self, node: Node) -> None:
        """Where a true/false is expected, a number, a text or a constant is a mistake."""
        if isinstance(node, Not):
            self.check_boolean(node.operand)
        elif isinstance(node, BoolOp):
            for operand in node.operands:
                self.check_boolean(operand)
        elif isinstance(node, Literal):
            constant = _spell(node.value)
            problem = f"the constant {constant} stands where a condition is expected"
            raise ConditionError(self.text, node.column, problem)
        elif isinstance(node, Path):
            t = self.type_of(node)
            if t is not None and t.kind not in (BOOL, ANY):
                raise ConditionError(
                    self.text,
                    node.column,
                    f'{node.component}.{node.field} is a {t.kind}, not true/false: compare it (e.g. >= 40, == "up")',
                )

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.at("keyword", "or"):
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_not()]
        while self.at("keyword", "and"):
            self.take()
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def parse_not(self) -> Node:
        if self.at("keyword", "not"):
            token = self.take()
            with self.nested(token):
                return Not(self.parse_not())
        return self.parse_comparison()

    def nested(self, token: Token) -> _Depth:
        return _Depth(self, token)

    def parse_comparison(self) -> Node:
        left = self.parse_operand()
        t = self.token
        if t.kind == "op" and t.value in COMPARISONS:
            self.take()
            right = self.parse_operand()
            return self.check_compare(Compare(t.value, left, right, t.column), t)
        negated = False
        after = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        if self.at("keyword", "not") and after is not None and after.kind == "keyword" and after.value == "in":
            self.take()
            negated = True
        if self.at("keyword", "in"):
            token = self.take()
            return self.check_in(InList(left, self.parse_list(), negated, token.column), token)
        return left

    def parse_operand(self) -> Node:
        t = self.token
        if t.kind == "path":
            self.take()
            component, field_name = t.value
            self.check_path(component, field_name, t)
            return Path(component, field_name, t.column)
        if t.kind in ("number", "string", "bool"):
            self.take()
            return Literal(t.value, t.column)
        if t.kind == "op" and t.value == "(":
            self.take()
            with self.nested(t):
                node = self.parse_or()
            if not self.at("op", ")"):
                got = self.token.text
                raise self.fail(self.token, f"expected ')' to close the '(' at column {t.column}, got {got!r}")
            self.take()
            return node
        if t.kind == "end":
            raise self.fail(t, "the condition ends where a value was expected")
        raise self.fail(t, f'expected a value (component.field, a number, a "string", true, false), got {t.text!r}')

    def parse_list(self) -> tuple[Any, ...]:
        if not self.at("op", "["):
            raise self.fail(self.token, f"expected '[' after in, got {self.token.text!r}")
        self.take()
        values: list[Any] = []
        while True:
            t = self.token
            if t.kind not in ("number", "string", "bool"):
                raise self.fail(t, f'a list holds literals (numbers, "strings", true, false), got {t.text!r}')
            self.take()
            values.append(t.value)
            if len(values) > MAX_LIST:
                raise self.fail(t, f"too many items in the list (at most {MAX_LIST})")
            if self.at("op", ","):
                self.take()
                continue
            if self.at("op", "]"):
                self.take()
                return tuple(values)
            raise self.fail(self.token, f"expected ',' or ']' in the list, got {self.token.text!r}")

    # --- checks at load time ---

    def check_path(self, component: str, field_name: str, token: Token) -> None:
        if component not in self.fields:
            known = ", ".join(sorted(self.fields))
            raise self.fail(token, f"unknown component {component!r} (known: {known})")
        fields = self.fields[component]
        if fields is not None and field_name not in fields:
            known = ", ".join(sorted(fields))
            raise self.fail(token, f"{component} has no field {field_name!r} (known: {known})")

    def type_of(self, node: Node) -> FieldType | None:
        if isinstance(node, Path):
            fields = self.fields.get(node.component)
            return (fields or {}).get(node.field, FieldType(ANY)) if fields is not None else FieldType(ANY)
        if isinstance(node, Literal):
            return FieldType(_literal_kind(node.value))
        return None  # a boolean sub-expression

    def check_compare(self, node: Compare, token: Token) -> Compare:
        lt, rt = self.type_of(node.left), self.type_of(node.right)
        if lt is None or rt is None:
            raise self.fail(token, f"{node.op} compares values, not conditions (use parentheses around and/or)")
        if isinstance(node.left, Literal) and isinstance(node.right, Literal):
            raise self.fail(token, "compares two constants: the result would never change")
        for t, side in ((lt, node.left), (rt, node.right)):
            if t.kind == TABLE:
                assert isinstance(side, Path)
                raise self.fail(token, f"{side.component}.{side.field} is a table and cannot be compared")
        if node.op not in ("==", "!=") and BOOL in (lt.kind, rt.kind):
            raise self.fail(token, f"{node.op} needs numbers, not true/false")
        if node.op not in ("==", "!=") and TEXT in (lt.kind, rt.kind):
            raise self.fail(token, f"{node.op} needs numbers, not text (use == or !=)")
        if ANY not in (lt.kind, rt.kind) and lt.kind != rt.kind:
            raise self.fail(token, f"compares {_describe(node.left, lt)} with {_describe(node.right, rt)}")
        for path, other in ((node.left, node.right), (node.right, node.left)):
            self.check_choice(path, other, token)
        return node

    def check_in(self, node: InList, token: Token) -> InList:
        t = self.type_of(node.operand)
        if t is None or isinstance(node.operand, Literal):
            raise self.fail(token, "in needs a state value on its left (component.field)")
        if t.kind in (TABLE, BOOL):
            raise self.fail(token, f"in needs a number or text value, not {t.kind}")
        for value in node.values:
            kind = _literal_kind(value)
            if t.kind != ANY and kind != t.kind:
                raise self.fail(token, f"the list mixes {kind} into a {t.kind} comparison ({value!r})")
            self.check_choice(node.operand, Literal(value, token.column), token)
        return node

    def check_choice(self, path: Node, other: Node, token: Token) -> None:
        if not isinstance(path, Path) or not isinstance(other, Literal):
            return
        t = self.type_of(path)
        if t is not None and t.choices is not None and other.value not in t.choices:
            choices = ", ".join(repr(c) for c in t.choices)
            raise self.fail(
                token, f"{path.component}.{path.field} is one of {choices}, so {other.value!r} can never match"
            )


class _Depth:
    def __init__(self, parser: _Parser, token: Token):
        self.parser, self.token = parser, token

    def __enter__(self) -> None:
        self.parser.depth += 1
        if self.parser.depth > MAX_DEPTH:
            raise self.parser.fail(self.token, f"nested too deeply (at most {MAX_DEPTH} levels)")

    def __exit__(self, *exc: Any) -> None:
        self.parser.depth -= 1


def _literal_kind(value: Any) -> str:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    return TEXT


def _spell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _describe(node: Node, t: FieldType) -> str:
    if isinstance(node, Path):
        return f"{node.component}.{node.field} ({t.kind})"
    assert isinstance(node, Literal)
    return f"{t.kind} {node.value!r}"


def _paths(node: Node) -> Iterator[Path]:
    if isinstance(node, Path):
        yield node
    elif isinstance(node, Compare):
        yield from _paths(node.left)
        yield from _paths(node.right)
    elif isinstance(node, (InList, Not)):
        yield from _paths(node.operand)
    elif isinstance(node, BoolOp):
        for operand in node.operands:
            yield from _paths(operand)


# --- evaluation -----------------------------------------------------------------------------------------------

# A lookup returns the value of component.field, or None when it is unknown (stale, not read yet, no such field).
Lookup = Callable[[str, str], Any]


def _value(node: Node, lookup: Lookup) -> Any:
    if isinstance(node, Path):
        value = lookup(node.component, node.field)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    if isinstance(node, Literal):
        return node.value
    return _truth(node, lookup)


def _same_kind(a: Any, b: Any) -> bool:
    return _literal_kind(a) == _literal_kind(b) and not isinstance(a, (dict, list)) and not isinstance(b, (dict, list))


def _truth(node: Node, lookup: Lookup) -> bool | None:
    if isinstance(node, Path):
        value = _value(node, lookup)
        return None if value is None else value is True
    if isinstance(node, Literal):
        return node.value is True
    if isinstance(node, Not):
        inner = _truth(node.operand, lookup)
        return None if inner is None else not inner
    if isinstance(node, BoolOp):
        unknown = False
        for operand in node.operands:
            result = _truth(operand, lookup)
            if result is None:
                unknown = True
            elif result is (node.op == "or"):
                return result  # short-circuit: true decides an or, false decides an and
        return None if unknown else node.op == "and"
    if isinstance(node, Compare):
        left, right = _value(node.left, lookup), _value(node.right, lookup)
        if left is None or right is None:
            return None
        if not _same_kind(left, right):
            # A field of an open component holding something unexpected: say unknown rather than guess.
            return None
        if node.op == "==":
            return left == right
        if node.op == "!=":
            return left != right
        if _literal_kind(left) != NUMBER:
            return None
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[node.op]
    if isinstance(node, InList):
        value = _value(node.operand, lookup)
        if value is None or isinstance(value, (bool, dict, list)):
            return None
        found = any(_same_kind(value, v) and value == v for v in node.values)
        return found != node.negated
    raise TypeError(f"not a condition node: {node!r}")  # pragma: no cover - the parser builds only the above


@dataclass(frozen=True)
class Condition:
    """A parsed, checked expression; ``evaluate`` returns True, False or None (unknown)."""

    text: str
    tree: Node
    paths: frozenset[tuple[str, str]]

    @property
    def components(self) -> frozenset[str]:
        return frozenset(c for c, _f in self.paths)

    def evaluate(self, lookup: Lookup) -> bool | None:
        return _truth(self.tree, lookup)

    def __str__(self) -> str:
        return self.text


def state_lookup(state: StateModel, unknown_field: Callable[[str, str], None] | None = None) -> Lookup:
    """A condition's lookup over the state model: a stale component's values, and a missing one's, are unknown;
    so is a field the component does not have (``unknown_field(component, field)`` is told)."""

    def lookup(component: str, field_name: str) -> Any:
        comp = state.components.get(component)
        if comp is None or comp.stale:
            return None
        if field_name not in comp.fields:
            if unknown_field is not None:
                unknown_field(component, field_name)
            return None
        return comp.values.get(field_name)

    return lookup


def default_fields() -> dict[str, dict[str, FieldType] | None]:
    """The fields a checklist condition may name: the core components and those of optional features, typed."""
    return {name: dict(types) for name, types in FIELD_TYPES.items()}


def compile_condition(text: str, fields: dict[str, dict[str, FieldType] | None] | None = None) -> Condition:
    """Parse and check ``text``; raises ConditionError (column and problem). Nothing is ever executed."""
    parser = _Parser(text, fields if fields is not None else default_fields())
    tree = parser.parse()
    paths = frozenset((p.component, p.field) for p in _paths(tree))
    if not paths:
        raise ConditionError(text, 1, "names no state value: it would never change (write e.g. shore.connected)")
    return Condition(text, tree, paths)


def condition_problem(text: Any) -> str | None:
    """For the config schema's ``check=``: None if ``text`` is a valid condition, else the problem."""
    try:
        compile_condition(text)
    except ConditionError as exc:
        return f"bad condition {text!r}: {exc}" if isinstance(text, str) else str(exc)
    return None
