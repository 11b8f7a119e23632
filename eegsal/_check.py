"""Input validation at the edge of the public API (MNE's helpers, re-exported)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from mne._fiff.pick import _picks_to_idx as picks_to_idx
from mne.utils import _check_option as check_option
from mne.utils import _soft_import as soft_import
from mne.utils import _time_mask as time_mask
from mne.utils import _validate_type as validate_type

__all__ = [
    "check_option",
    "check_random_state",
    "check_range",
    "picks_to_idx",
    "soft_import",
    "time_mask",
    "validate_type",
]


def check_range(
    value: float,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_closed: bool = True,
    high_closed: bool = True,
    integer: bool = False,
) -> float:
    """Check that a number lies in an interval; raise a ValueError naming it.

    Parameters
    ----------
    value : float
        The value given by the user.
    name : str
        The parameter's name, used in the message.
    low, high : float | None
        Bounds of the interval; ``None`` for unbounded.
    low_closed, high_closed : bool
        Whether each bound belongs to the interval.
    integer : bool
        Require an integer.

    Returns
    -------
    value : float
        The value, unchanged.
    """
    kind = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {value!r} instead.")
    ok = np.isfinite(value) or (high is None and value == np.inf)
    if low is not None:
        ok = ok and (value >= low if low_closed else value > low)
    if high is not None:
        ok = ok and (value <= high if high_closed else value < high)
    if not ok:
        lo = "(-inf" if low is None else ("[" if low_closed else "(") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + ("]" if high_closed else ")")
        raise ValueError(
            f"The '{name}' parameter must be in the range {lo}, {hi}. "
            f"Got {value!r} instead."
        )
    return value


def check_random_state(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Turn ``seed`` into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    seed : int | numpy.random.Generator | None
        A seed, a generator (returned as is), or None for fresh entropy.

    Returns
    -------
    rng : numpy.random.Generator
        The generator.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise TypeError(
        f"seed must be an int, a numpy.random.Generator or None, got {seed!r} instead."
    )
