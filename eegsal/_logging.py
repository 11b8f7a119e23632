"""Logging and progress for eegsal: one logger, an MNE-like ``verbose``."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm


class _StderrHandler(logging.Handler):
    """eegsal's own handler: messages on the current ``sys.stderr``, bars kept intact.

    It stays silent for a record that another handler will show: one the user
    (or ``eegsal``'s command line) attached to the ``eegsal`` logger, or one on
    an ancestor the record propagates to (``logging.basicConfig`` puts one on
    the root logger). So messages appear once, wherever logging is configured,
    and still appear in a plain Python session, where nothing is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    def _shown_elsewhere(self, record: logging.LogRecord) -> bool:
        """Whether a handler other than this one takes ``record``.

        Walk the logger chain as :meth:`logging.Logger.callHandlers` does.
        """
        log: logging.Logger | None = logging.getLogger(record.name)
        while log is not None:
            for handler in log.handlers:
                if handler is self or isinstance(handler, logging.NullHandler):
                    continue
                if record.levelno >= handler.level:
                    return True
            log = log.parent if log.propagate else None
        return False

    def emit(self, record: logging.LogRecord) -> None:
        if self._shown_elsewhere(record):
            return
        try:
            # the stream is looked up at each message, so redirected or captured
            # stderr (pytest, Jupyter) receives it; tqdm.write keeps bars whole
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


logger = logging.getLogger("eegsal")
logger.addHandler(_StderrHandler())

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _to_level(verbose: bool | str | int | None) -> int | None:
    """Translate an MNE-style ``verbose`` value into a logging level (None: keep)."""
    if verbose is None:
        return None
    if isinstance(verbose, bool):
        return logging.INFO if verbose else logging.WARNING
    if isinstance(verbose, str):
        try:
            return _LEVELS[verbose.lower()]
        except KeyError:
            raise ValueError(
                f"Invalid value for the 'verbose' parameter. Allowed values are "
                f"True, False, None, an int, or one of {sorted(_LEVELS)}, but got "
                f"{verbose!r} instead."
            ) from None
    return int(verbose)


def set_log_level(verbose: bool | str | int | None = None) -> None:
    """Set the level of the ``eegsal`` logger.

    Parameters
    ----------
    verbose : bool | str | int | None
        ``True`` is ``'info'``, ``False`` is ``'warning'``, ``None`` leaves the
        level as it is. Strings are logging level names.

    Notes
    -----
    Messages go to ``sys.stderr`` through eegsal's own handler, as MNE's go to
    stdout through its own. When logging is configured elsewhere (a handler on
    the ``eegsal`` logger or on the root logger, as :func:`logging.basicConfig`
    adds), that handler shows them instead, so each message appears once.

    Examples
    --------
    >>> import eegsal
    >>> eegsal.set_log_level("info")  # doctest: +SKIP
    """
    level = _to_level(verbose)
    if level is not None:
        logger.setLevel(level)


def verbose(func: F) -> F:
    """Scope the ``verbose`` argument of ``func`` to the duration of the call.

    Like :func:`mne.verbose`: the level of the ``eegsal`` logger (and of MNE's,
    for the MNE calls made inside) is set for the call and restored afterwards.
    """
    sig = inspect.signature(func)
    if "verbose" not in sig.parameters:  # pragma: no cover - programming error
        raise TypeError(f"{func.__name__} has no 'verbose' parameter")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind_partial(*args, **kwargs)
        level = _to_level(bound.arguments.get("verbose"))
        if level is None:
            return func(*args, **kwargs)
        import mne

        old = logger.level
        logger.setLevel(level)
        try:
            with mne.use_log_level(max(level, logging.WARNING)):
                return func(*args, **kwargs)
        finally:
            logger.setLevel(old)

    return wrapper  # type: ignore[return-value]


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    leave: bool = False,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar shown when the logger would show info.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    desc : str
        Short description shown left of the bar.
    total : int | None
        Number of items, when ``len(iterable)`` does not say it.
    leave : bool
        Keep the bar on screen once done.

    Returns
    -------
    it : iterator
        The items of ``iterable``.
    """
    disable = not logger.isEnabledFor(logging.INFO)
    return iter(tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable))
