"""Reading YAML settings files: dataset manifests and study configs alike.

Both readers (:func:`eegsal.data.read_manifest` and
:func:`eegsal.pipeline.read_config`) read their file with :func:`load_yaml`
(bounded ``yaml.safe_load``), check its sections with :func:`mapping` and
:func:`check_known`, and suggest the name that was meant with
:func:`did_you_mean`. Each passes its own error class (``ManifestError``,
``ConfigError``), so that a message names the file, the field and the fix in
the same words whichever file it is.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable
from pathlib import Path

import yaml

__all__ = [
    "MAX_YAML_BYTES",
    "MAX_YAML_NODES",
    "check_known",
    "did_you_mean",
    "load_yaml",
    "mapping",
    "safe_load_bounded",
]

#: Largest manifest or config file read (bytes), and largest number of values
#: it may expand to through YAML aliases (``*name``), which guards against
#: "billion laughs" documents that hold a few lines and expand to billions.
MAX_YAML_BYTES = 2**20
MAX_YAML_NODES = 100_000


def did_you_mean(value, options: Iterable) -> str:
    """Return `` Did you mean 'x'?`` for the option closest to ``value``, or ''.

    Parameters
    ----------
    value : object
        What was given (compared as text).
    options : iterable
        What is allowed (compared as text).

    Returns
    -------
    hint : str
        The sentence, with a leading space, or an empty string when no option
        is close.
    """
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_known(keys, allowed, where: str, origin: str, error: type[Exception]):
    """Refuse the first of ``keys`` that is not in ``allowed``.

    Parameters
    ----------
    keys : iterable of str
        The keys given (a mapping's keys).
    allowed : collection of str
        The keys allowed.
    where : str
        The field's path with a trailing dot (``'epochs.'``), or ``''`` at the
        top level.
    origin : str
        The file (or ``'<dict>'``), for the message.
    error : type
        The exception raised (``ManifestError``, ``ConfigError``).
    """
    for key in keys:
        if key not in allowed:
            raise error(
                f"{origin}: {where}{key}: unknown field; allowed: "
                f"{', '.join(sorted(allowed))}.{did_you_mean(key, sorted(allowed))}"
            )


def mapping(value, where: str, origin: str, error: type[Exception]) -> dict:
    """Return ``value`` if it is a mapping ({} for None), else raise ``error``.

    Parameters
    ----------
    value : object
        The value of field ``where``.
    where : str
        The field's path, for the message.
    origin : str
        The file (or ``'<dict>'``), for the message.
    error : type
        The exception raised (``ManifestError``, ``ConfigError``).

    Returns
    -------
    value : dict
        ``value`` itself (not a copy), or a new empty dict for None.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(
            f"{origin}: {where}: expected a mapping (key: value lines), got "
            f"{type(value).__name__} {value!r}."
        )
    return value


def load_yaml(
    source, what: str, error: type[Exception]
) -> tuple[dict, str, Path | None]:
    """Read a YAML mapping (bounded ``safe_load``) from a file, or copy a dict.

    Parameters
    ----------
    source : path-like | dict
        A YAML file of at most :data:`MAX_YAML_BYTES`, or its content.
    what : str
        What the file is (``'manifest'``, ``'study config'``), for messages.
    error : type
        The exception raised for a missing, oversized or invalid file, or one
        that does not hold a mapping.

    Returns
    -------
    raw : dict
        The mapping (a copy: the input is never edited).
    origin : str
        The file's path as text, or ``'<dict>'``, for messages.
    path : pathlib.Path | None
        The file's path; None for a dict.
    """
    if isinstance(source, dict):
        return (
            copy.deepcopy(mapping(source, "(top level)", "<dict>", error)),
            "<dict>",
            None,
        )
    path = Path(source)
    if not path.is_file():
        raise error(f"{path}: no such {what} file.")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise error(
            f"{path}: {path.stat().st_size} bytes; a {what} file is at most "
            f"{MAX_YAML_BYTES // 2**20} MiB (list recordings by glob: pattern)."
        )
    try:
        raw = safe_load_bounded(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    except ValueError as err:
        raise error(f"{path}: {err}") from None
    return (
        copy.deepcopy(mapping(raw, "(top level)", str(path), error)),
        str(path),
        path,
    )


def safe_load_bounded(text: str):
    """``yaml.safe_load``, refusing documents that expand past MAX_YAML_NODES.

    The document is composed into its node graph first (no Python objects),
    and the size it expands to, with every alias counted as a full copy of
    what it names, is computed before anything is constructed; the same graph
    is then constructed, so the text is parsed once.

    Parameters
    ----------
    text : str
        A YAML document.

    Returns
    -------
    value : object
        The document's value (None for an empty document).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(node) -> None:
    """Refuse a node graph that refers to itself or expands past MAX_YAML_NODES."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(n) -> int:
        key = id(n)
        if key in open_:
            raise ValueError(
                f"line {n.start_mark.line + 1}: an alias refers to a value that "
                "contains it (a recursive document); write the values out."
            )
        if key not in sizes:
            open_.add(key)
            total = 1
            if isinstance(n, yaml.SequenceNode):
                total += sum(size(c) for c in n.value)
            elif isinstance(n, yaml.MappingNode):
                total += sum(size(k) + size(v) for k, v in n.value)
            open_.discard(key)
            sizes[key] = total
        return sizes[key]

    total = size(node)
    if total > MAX_YAML_NODES:
        raise ValueError(
            f"the document expands to {total} values through aliases (*name); at "
            f"most {MAX_YAML_NODES} are read. Write the values out instead of "
            "nesting aliases."
        )
