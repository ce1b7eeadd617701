"""Reading settings from one mapping of variables, collecting every problem instead of
stopping at the first.

Each reader returns the variable's value, or its default when the variable is unset or
wrong, and records a wrong one as one line: the variable, the problem and what is
allowed (`DB_POOL_SIZE=0: must be a whole number from 1 to 100`). A secret's value (and
a URL's, which may carry a password) is never part of a line, only its name.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)

# Variables whose values are never shown: secrets, and URLs that may carry a password.
HIDDEN_VALUES = frozenset({"AUTH_SECRET", "PGPASSWORD", "REDIS_PASSWORD", "DATABASE_URL", "DATABASE_READ_URL",
                           "REDIS_URL"})
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
SHOWN_VALUE_CHARS = 80


class SettingsError(ValueError):
    """Settings the process refuses to run with; `problems` has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def _number_text(value: float) -> str:
    """`5`, `0.05`, `2592000`: a bound as an operator would write it."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class EnvReader:
    """Typed reads of a mapping of variables; wrong values become `problems`."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[str] = []

    def refuse(self, name: str, problem: str) -> None:
        """Record a problem of `name`, with its value unless it is a secret or a URL."""
        value = self.values.get(name)
        if name in HIDDEN_VALUES or value is None:
            self.problems.append(f"{name}: {problem}")
            return
        shown = value if value.isprintable() and len(value) <= SHOWN_VALUE_CHARS else repr(value[:SHOWN_VALUE_CHARS])
        self.problems.append(f"{name}={shown}: {problem}")

    def check(self) -> None:
        """Raise SettingsError with every problem recorded so far, if any."""
        if self.problems:
            raise SettingsError(self.problems)

    def text(self, name: str) -> str | None:
        """The value as it is (None when unset or empty)."""
        return self.values.get(name) or None

    def whole_number(self, name: str, low: int, high: int, default: int) -> int:
        """A whole number within [low, high]."""
        return self._bounded(name, int, low, high, default, f"must be a whole number from {low} to {high}")

    def seconds(self, name: str, low: float, high: float, default: float) -> float:
        """A number of seconds within [low, high]."""
        return self._bounded(name, float, low, high, default,
                             f"must be a number of seconds from {_number_text(low)} to {_number_text(high)}")

    def fraction(self, name: str, high: float, default: float) -> float:
        """A number from 0 to `high`."""
        return self._bounded(name, float, 0.0, high, default, f"must be a number from 0 to {_number_text(high)}")

    def _bounded(self, name: str, convert: Callable[[str], N], low: N, high: N, default: N, allowed: str) -> N:
        """`convert(value)` within [low, high]; else the problem `allowed` and the default."""
        text = self.text(name)
        if text is None:
            return default
        try:
            value: N | None = convert(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # NaN is refused too
            self.refuse(name, allowed)
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        """A boolean: 1/true/yes/on or 0/false/no/off, in any case."""
        text = self.text(name)
        if text is None:
            return default
        word = text.strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            self.refuse(name, f"must be one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
            return default
        return word in TRUE_WORDS

    def choice(self, name: str, allowed: Sequence[str], default: str) -> str:
        """One of `allowed` (compared as written)."""
        text = self.text(name)
        if text is None:
            return default
        if text not in allowed:
            self.refuse(name, f"must be one of {', '.join(allowed)}")
            return default
        return text

    def parsed(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """The value through `parse`, whose ValueError message is the problem."""
        text = self.text(name)
        if text is None:
            return default
        try:
            return parse(text)
        except ValueError as exc:
            self.refuse(name, str(exc))
            return default
