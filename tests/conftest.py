"""Shared fixtures: a small simulated study and a tiny trained decoder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory):
    """Cached epochs go to a temporary folder, never the user's cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("EEGSAL_CACHE", str(tmp_path_factory.mktemp("eegsal-cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(autouse=True)
def _check_log_level():
    """Fail a test that leaves the eegsal logger at another level (as MNE does)."""
    logger = logging.getLogger("eegsal")
    level = logger.level
    yield
    assert logger.level == level, "the test changed the level of the 'eegsal' logger"


@pytest.fixture(scope="session")
def _study_session():
    from eegsal.simulate import simulate_sleep_study

    return simulate_sleep_study(
        n_subjects=4, n_epochs=30, epoch_length=2.0, effect_size=0.9, seed=0
    )


@pytest.fixture
def study(_study_session):
    """(epochs, truth) of 4 subjects x 30 epochs x 19 channels x 2 s; a fresh copy."""
    epochs, truth = _study_session
    return epochs.copy(), truth


@pytest.fixture(scope="session")
def tiny_result(_study_session):
    """A DecodingResult of EEGNet on the small study (2 folds, 3 training epochs)."""
    from eegsal.decoding import decode

    epochs, _ = _study_session
    return decode(epochs, "content", cv=2, max_epochs=3, batch_size=32, seed=0)


def shared_data_or_skip(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared test data lives beside the repo)")
    return path


def damage_edf(src: Path, dst: Path, how: str, channel: int = 1) -> Path:
    """Copy an EDF/BDF file to ``dst``, damaged as files are found in the wild.

    ``how``: ``"truncated"`` (cut to half its data, as a recording stopped
    without closing its file), ``"physical"`` or ``"digital"`` (the header's
    physical or digital min = max of ``channel``, a header written wrong).
    """
    data = bytearray(src.read_bytes())
    n_signals = int(data[252:256])  # the annotation signal of EDF+ included
    header = int(data[184:192])
    if how == "truncated":
        data = data[: header + (len(data) - header) // 2]
    else:
        # per signal: label 16, transducer 80, dimension 8, then 8 bytes each of
        # physical min, physical max, digital min, digital max
        start = 256 + n_signals * (16 + 80 + 8)
        start += {"physical": 0, "digital": 16 * n_signals}[how]
        low, high = start + 8 * channel, start + 8 * (n_signals + channel)
        data[high : high + 8] = data[low : low + 8]
    dst.write_bytes(bytes(data))
    return dst
