"""The checks of a study config's values, and the error they raise.

:class:`ConfigError`, and the checks :mod:`eegsal._config` builds its
schema from: each is a :data:`Check`, ``check(value, field, origin)``, that
raises a :class:`ConfigError` naming the file, the field, the value and
what is allowed. Factories give the checks of a range or a set of choices
(:func:`_integer`, :func:`_number`, :func:`_choice`, :func:`_pair`,
:func:`_text`; :func:`_names_in` lists choices that a module defines, read
on first use); :func:`_names`, :func:`_flag`, :func:`_cv` and :func:`_label`
check one kind of field each. The schema, and the checks against the
signatures of the functions a config's settings are passed to, stay in
:mod:`eegsal._config`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

from eegsal._config_io import did_you_mean

__all__ = ["Check", "ConfigError"]


class ConfigError(ValueError):
    """A study config that cannot be run; the message names file and field."""


#: A check: (value, field, origin) -> None, raising ConfigError.
Check = Callable[[Any, str, str], None]


def _fail(origin: str, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{origin}: {where}: {problem}")


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _integer(low: int | None = None, *, none: bool = False) -> Check:
    """Check for an int >= ``low`` (or None when ``none``)."""
    allowed = "an integer" + (f" >= {low}" if low is not None else "")
    allowed += " or null" if none else ""

    def check(value, where, origin):
        if value is None and none:
            return
        if not _is_int(value) or (low is not None and value < low):
            raise _fail(origin, where, f"{value!r} is not allowed; expected {allowed}.")

    return check


def _number(
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
    none: bool = False,
    example: str = "",
) -> Check:
    """Check for a finite number in an interval (or None when ``none``)."""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    allowed = (
        f"a number in {'(' if open_low or low is None else '['}{lo}, {hi}"
        f"{')' if open_high or high is None else ']'}"
        + (" or null" if none else "")
        + (f", e.g. {example}" if example else "")
    )

    def check(value, where, origin):
        if value is None and none:
            return
        ok = _is_number(value) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if open_low else value >= low
        if ok and high is not None:
            ok = value < high if open_high else value <= high
        if not ok:
            raise _fail(origin, where, f"{value!r} is not allowed; expected {allowed}.")

    return check


def _text(*, none: bool = False) -> Check:
    def check(value, where, origin):
        if not (isinstance(value, str) and value) and not (value is None and none):
            expected = "a text" + (" or null" if none else "")
            raise _fail(origin, where, f"expected {expected}, got {value!r}.")

    return check


def _names(value, where, origin) -> None:
    """Check for a column name, a list of distinct ones, or null."""
    if value is None or (isinstance(value, str) and value):
        return
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and v for v in value)
        and len(set(value)) == len(value)
    ):
        return
    raise _fail(
        origin,
        where,
        f"expected a metadata column name, a list of distinct ones, or null; got "
        f"{value!r}.",
    )


def _flag(value, where, origin) -> None:
    if not isinstance(value, bool):
        raise _fail(origin, where, f"expected true or false, got {value!r}.")


def _choice(options: Sequence | Callable[[], Sequence]) -> Check:
    """One of ``options`` (a sequence, or a function giving it on first use)."""

    def check(value, where, origin):
        allowed = list(options() if callable(options) else options)
        if value not in allowed or isinstance(value, bool):
            names = ", ".join("null" if o is None else repr(o) for o in allowed)
            raise _fail(
                origin,
                where,
                f"{value!r} is not allowed; expected one of {names}."
                + did_you_mean(value, [o for o in allowed if o is not None]),
            )

    return check


def _pair(low: int) -> Check:
    def check(value, where, origin):
        if not (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(_is_int(v) and v >= low for v in value)
        ):
            raise _fail(
                origin,
                where,
                f"{value!r} is not allowed; expected two integers >= {low}, "
                "e.g. [1, 10].",
            )

    return check


def _names_in(module: str, name: str) -> Callable[[], list[str]]:
    """Return a function listing the keys of ``module.name``, imported on use."""
    return lambda: list(getattr(importlib.import_module(module), name))


def _cv(value, where, origin) -> None:
    if value != "loso" and not (_is_int(value) and value >= 2):
        raise _fail(
            origin,
            where,
            f"{value!r} is not allowed; expected a number of folds >= 2, or "
            "'loso' (leave one subject out).",
        )


def _label(value, where, origin) -> None:
    if value in ("true", "predicted") or (_is_int(value) and value >= 0):
        return
    hint = did_you_mean(value, ["true", "predicted"]) if isinstance(value, str) else ""
    raise _fail(
        origin,
        where,
        f"{value!r} is not allowed; expected 'true' (each epoch's class), "
        f"'predicted', or a class index >= 0.{hint}",
    )
