"""Model formulas checked token by token before patsy sees them.

patsy evaluates every term of a formula as Python code, so a formula taken
from a config file or a user string could run anything
(``I(__import__('os').system(...))``). eegsal parses the formula first and
lets through only what a mixed model on EEG metadata needs:

- metadata column names (plain identifiers: letters, digits, ``_``);
- ``C(column)`` and ``C(column, Contrast)`` with one of patsy's contrasts
  (:data:`CONTRASTS`), optionally given one literal argument, e.g.
  ``C(stage, Treatment(reference='W'))`` or ``C(stage, Sum)``;
- the operators ``+ - * :``, ``~`` after one name (a left-hand side is
  ignored),
  parentheses for grouping, and the numbers ``0`` and ``1`` (intercept).

Anything else is refused with a :class:`ValueError` that names the token.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["CONTRASTS", "check_formula"]

#: The contrast codings a formula may name inside ``C(...)`` (patsy's).
CONTRASTS = ("Treatment", "Sum", "Helmert", "Diff", "Poly")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<number>[0-9]+)
      | (?P<string>'[^'\\]{0,100}'|"[^"\\]{0,100}")
      | (?P<op>[-+*:(),=])
    )""",
    re.VERBOSE,
)
_MAX_LENGTH = 500


def _tokens(formula: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    text = formula.rstrip()
    while pos < len(text):
        hit = _TOKEN.match(text, pos)
        if hit is None or hit.end() == pos:  # reported when the parse gets there
            bad = text[pos:].lstrip()
            out.append(("bad", bad, pos))
            break
        kind = hit.lastgroup
        out.append((kind, hit.group(kind), hit.start(kind)))
        pos = hit.end()
    return out


def _unknown_name(name: str, columns: list[str], formula: str, what: str):
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"{what} {formula!r}: {name!r} is not a metadata column (columns: "
        f"{columns}) nor C(...); functions and other Python code are not "
        f"allowed in formulas.{hint}"
    )


def check_formula(
    formula: str, columns: Iterable[str], *, what: str = "formula"
) -> list[str]:
    """Check that ``formula`` uses only safe syntax; return the columns it names.

    Parameters
    ----------
    formula : str
        A patsy (R-style) formula, e.g. ``'content * C(stage, Sum)'``.
    columns : iterable of str
        The metadata columns the formula may name.
    what : str
        How messages call the formula (e.g. ``'stats.formula'``).

    Returns
    -------
    names : list of str
        The metadata columns named, in order of first appearance.

    Raises
    ------
    ValueError
        If the formula holds anything but the allowed tokens; the message
        names the token.
    """
    if not isinstance(formula, str):
        raise ValueError(f"{what} must be a string, got {type(formula).__name__}.")
    if len(formula) > _MAX_LENGTH:
        raise ValueError(f"{what} is longer than {_MAX_LENGTH} characters.")
    columns = [str(c) for c in columns]
    lhs, _, rhs = formula.rpartition("~")
    if lhs.strip() and not re.fullmatch(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*", lhs):
        raise ValueError(
            f"{what} {formula!r}: the left-hand side {lhs.strip()!r} must be one "
            "name (it is ignored: the maps are the response) or left out."
        )
    toks = _tokens(rhs)
    names: list[str] = []
    depth, i = 0, 0

    def expect(j: int, kind: str, value: str | None = None) -> tuple[str, str, int]:
        if j >= len(toks) or toks[j][0] != kind or (value and toks[j][1] != value):
            got = repr(toks[j][1]) if j < len(toks) else "the end"
            raise ValueError(
                f"{what} {formula!r}: expected {value or kind} at {got} in C(...); "
                f"write C(column) or C(column, Contrast) with a contrast of "
                f"{list(CONTRASTS)}."
            )
        return toks[j]

    while i < len(toks):
        kind, value, _ = toks[i]
        if kind == "bad":
            raise ValueError(
                f"{what} {formula!r}: {value[:1]!r} (at {value[:20]!r}) is not "
                "allowed; a formula holds metadata columns, C(column[, Contrast]), "
                "the operators + - * : and parentheses, and 0 or 1."
            )
        if kind == "name" and i + 1 < len(toks) and toks[i + 1][1] == "(":
            if value != "C":
                raise ValueError(
                    f"{what} {formula!r}: {value!r}(...) is not allowed; the only "
                    "function a formula may call is C(column[, Contrast])."
                )
            col = expect(i + 2, "name")[1]
            if col not in columns:
                raise _unknown_name(col, columns, formula, what)
            names.append(col)
            i += 3
            if i < len(toks) and toks[i][1] == ",":
                contrast = expect(i + 1, "name")[1]
                if contrast not in CONTRASTS:
                    raise ValueError(
                        f"{what} {formula!r}: {contrast!r} is not a contrast; use "
                        f"one of {list(CONTRASTS)}."
                    )
                i += 2
                if i < len(toks) and toks[i][1] == "(":  # one literal argument
                    j = i + 1
                    if j + 1 < len(toks) and toks[j + 1][1] == "=":
                        if toks[j][1] not in ("reference", "omit"):
                            raise ValueError(
                                f"{what} {formula!r}: {contrast}() takes reference= "
                                f"or omit=, not {toks[j][1]!r}."
                            )
                        j += 2
                    if j >= len(toks) or toks[j][0] not in ("string", "number"):
                        raise ValueError(
                            f"{what} {formula!r}: {contrast}(...) takes one quoted "
                            "level or a number, e.g. Treatment(reference='W')."
                        )
                    expect(j + 1, "op", ")")
                    i = j + 2
            expect(i, "op", ")")
            i += 1
            continue
        if kind == "name":
            if value not in columns:
                raise _unknown_name(value, columns, formula, what)
            names.append(value)
        elif kind == "number":
            if value not in ("0", "1"):
                raise ValueError(
                    f"{what} {formula!r}: the number {value} is not allowed; only "
                    "0 or 1 (the intercept)."
                )
        elif kind == "string" or value in (",", "="):
            raise ValueError(
                f"{what} {formula!r}: {value!r} is only allowed inside C(...)."
            )
        elif value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{what} {formula!r}: unbalanced ')'.")
        i += 1
    if depth:
        raise ValueError(f"{what} {formula!r}: unbalanced '('.")
    return list(dict.fromkeys(names))
