"""Kernel and pooling sizes given in seconds, turned into samples at a rate."""

from __future__ import annotations

__all__ = ["check_sfreq", "to_samples"]


def to_samples(seconds: float, sfreq: float, name: str) -> int:
    """Return the number of samples closest to ``seconds`` at ``sfreq``, at least 1.

    Parameters
    ----------
    seconds : float
        A duration (s).
    sfreq : float
        Sampling rate (Hz).
    name : str
        The parameter, for the error message.

    Returns
    -------
    n : int
        ``round(seconds * sfreq)``, and at least 1.
    """
    if not seconds > 0:
        raise ValueError(
            f"{name} must be a positive duration in seconds, got {seconds}."
        )
    # half a sample rounds up (0.5 s at 125 Hz: 63), not to the even neighbour
    # as round() would; the 1e-9 absorbs float error (0.06 s * 250 Hz = 15.000..2)
    return max(1, int(seconds * sfreq + 0.5 + 1e-9))


def check_sfreq(sfreq: float | None, published: float) -> float:
    """Return ``sfreq`` (Hz), or the published rate when None; refuse non-positive."""
    if sfreq is None:
        return float(published)
    if not float(sfreq) > 0:
        raise ValueError(f"sfreq must be a positive sampling rate in Hz, got {sfreq}.")
    return float(sfreq)
