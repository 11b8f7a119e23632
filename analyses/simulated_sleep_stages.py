"""What the simulated sleep stages look like: traces and spectra per stage.
========================================================================

Writes ``simulated_sleep_stages.png`` (30 s of EEG per stage on six channels, and
the Welch spectrum of each stage at Fz, C3 and O1) into the output folder, so a
sleep researcher can check the stages by eye.

Run: python analyses/simulated_sleep_stages.py [OUT_DIR]
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy import signal

from eegsal.simulate import STAGES, simulate_sleep_study


def main() -> None:
    """Run the analysis; write its outputs into OUT_DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out",
        nargs="?",
        default="analyses-output",
        metavar="OUT_DIR",
        help="output folder (default: %(default)s)",
    )
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    epochs, truth = simulate_sleep_study(
        n_subjects=2, n_epochs=40, epoch_length=30.0, scenario="null", seed=0
    )
    show = ["Fp1", "F8", "Fz", "C3", "Cz", "O1"]
    colors = dict(
        zip(STAGES, plt.cm.viridis(np.linspace(0, 0.9, len(STAGES))), strict=True)
    )
    fig = plt.figure(figsize=(13, 11), layout="constrained")
    grid = fig.add_gridspec(len(STAGES) + 1, 3, height_ratios=[1] * len(STAGES) + [1.3])
    for row, stage in enumerate(STAGES):
        ax = fig.add_subplot(grid[row, :])
        first = np.flatnonzero(epochs.metadata["stage"].to_numpy() == stage)[0]
        x = epochs[first].get_data(picks=show, units="uV")[0]
        for k in range(len(show)):
            ax.plot(epochs.times, x[k] - 120 * k, lw=0.5, color="k")
        ax.set_yticks(-120 * np.arange(len(show)), show)
        ax.set_xlim(0, 30)
        ax.set_title(
            f"{stage}  (one 30-s epoch; 120 µV between traces)", loc="left", fontsize=9
        )
        if row < len(STAGES) - 1:
            ax.set_xticklabels([])
    ax.set_xlabel("time (s)")
    for col, ch in enumerate(["Fz", "C3", "O1"]):
        ax = fig.add_subplot(grid[-1, col])
        x = epochs.get_data(picks=[ch], units="uV")[:, 0]
        freqs, psd = signal.welch(x, fs=epochs.info["sfreq"], nperseg=400)
        for stage in STAGES:
            sel = epochs.metadata["stage"].to_numpy() == stage
            ax.semilogy(freqs, psd[sel].mean(0), color=colors[stage], label=stage)
        ax.set_xlim(0.3, 35)
        ax.set_title(f"Welch PSD at {ch}", fontsize=9)
        ax.set_xlabel("frequency (Hz)")
        if col == 0:
            ax.set_ylabel("µV²/Hz")
            ax.legend(fontsize=8, ncols=2)
    fig.savefig(out / "simulated_sleep_stages.png", dpi=90)
    print(f"wrote {out / 'simulated_sleep_stages.png'}")


if __name__ == "__main__":
    main()
