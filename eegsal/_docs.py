"""Shared parameter documentation, filled into docstrings with ``fill_doc``.

Like MNE's ``docdict``: an entry is written once, unindented, and
``%(name)s`` in a docstring is replaced by it, indented as the placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=Callable)

docdict: dict[str, str] = {}

docdict["model_shape"] = """\
n_chans : int
    Number of EEG channels.
n_times : int
    Number of time samples per epoch.
n_classes : int
    Number of classes."""

docdict["drop_prob"] = """\
drop_prob : float
    Dropout probability."""

docdict["ref_schirrmeister"] = """\
.. [1] Schirrmeister RT et al. (2017). Deep learning with convolutional neural
   networks for EEG decoding and visualization. Hum Brain Mapp 38, 5391-5420."""

docdict["X_uv"] = """\
X : ndarray, shape (n_epochs, n_chans, n_times) | mne.Epochs | EpochsReader
    EEG in µV; epochs read with ``preload=False`` (or an
    :class:`eegsal.data.reader.EpochsReader`) are read batch by batch."""

docdict["seed"] = """\
seed : int | numpy.random.Generator | None
    Random seed; the same seed gives the same data."""

docdict["device"] = """\
device : str
    ``'auto'`` (CUDA when present), ``'cpu'`` or ``'cuda'``."""

docdict["n_jobs"] = """\
n_jobs : int | None
    Parallel tasks, through joblib (None: 1, unless inside a
    ``joblib.parallel_config`` context; -1: all cores). Under
    ``joblib.parallel_config(backend="dask")`` the tasks run on a
    ``dask.distributed`` cluster; the results do not depend on ``n_jobs``."""

docdict["verbose"] = """\
verbose : bool | str | int | None
    Control verbosity of the logging output (``True`` is ``'info'``)."""

docdict["montage_ch_names_sfreq"] = """\
montage : str | DigMontage
    Electrode positions (an MNE built-in montage name or a montage).
ch_names : list of str | None
    Channels to simulate (default: the 19 of the 10-20 system).
sfreq : float
    Sampling frequency (Hz), above 60 Hz."""

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<key>\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(obj: T) -> T:
    """Replace ``%(key)s`` lines of ``obj.__doc__`` by indented ``docdict`` entries.

    Parameters
    ----------
    obj : callable or class
        The function or class whose docstring to fill.

    Returns
    -------
    obj : callable or class
        The same object, its docstring filled.
    """

    def repl(match: re.Match) -> str:
        key, indent = match["key"], match["indent"]
        if key not in docdict:
            raise KeyError(f"docdict has no entry {key!r} (used by {obj.__qualname__})")
        return "\n".join(
            indent + line if line else line for line in docdict[key].split("\n")
        )

    if obj.__doc__:
        obj.__doc__ = _PLACEHOLDER.sub(repl, obj.__doc__)
    return obj
