"""Time and memory of the simulator at study scale.

20 subjects x 200 epochs x 32 channels x 30 s at 100 Hz (the size of a serial-
awakening study scored in 30-s epochs), against two references measured in the
same run: allocating the output array (np.empty + fill) and MNE's own
``EpochsArray`` construction on that array, which any simulator must pay.

Run: python benchmarks/bench_simulate.py [--repeats 3] [--small]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import mne
import numpy as np

from eegsal.simulate import simulate_sleep_study

CH_32 = [
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6", "T7",
    "C3", "Cz", "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3", "Pz", "P4",
    "P8", "PO3", "PO4", "O1", "Oz", "O2", "FT9", "FT10",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="2 subjects (smoke run)")
    args = parser.parse_args()
    n_subjects = 2 if args.small else 20
    kw = dict(n_subjects=n_subjects, n_epochs=200, ch_names=CH_32, epoch_length=30.0)
    shape = (n_subjects * 200, 32, 3000)
    sim, ref_alloc, ref_mne = [], [], []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        epochs, _ = simulate_sleep_study(**kw, seed=rep)
        sim.append(time.perf_counter() - t0)
        del epochs
        t0 = time.perf_counter()
        x = np.empty(shape)
        x.fill(1e-6)
        ref_alloc.append(time.perf_counter() - t0)
        info = mne.create_info(CH_32, 100.0, "eeg")
        t0 = time.perf_counter()
        ep = mne.EpochsArray(x, info, verbose=False)
        ref_mne.append(time.perf_counter() - t0)
        del ep, x
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gib = np.prod(shape) * 8 / 2**30
    med = statistics.median
    print(f"study: {n_subjects} subjects x 200 epochs x 32 ch x 30 s at 100 Hz "
          f"= {gib:.2f} GiB of float64")  # fmt: skip
    print(f"simulate_sleep_study: median {med(sim):.1f} s over {args.repeats} runs "
          f"({n_subjects * 200 / med(sim):.0f} epochs/s)")  # fmt: skip
    print(f"  = {med(sim) / med(ref_alloc):.0f}x allocating+filling the output array "
          f"({med(ref_alloc):.2f} s)")  # fmt: skip
    print(f"  = {med(sim) / med(ref_mne):.0f}x mne.EpochsArray on it "
          f"({med(ref_mne):.2f} s)")  # fmt: skip
    print(f"peak RSS {peak_gib:.2f} GiB = {peak_gib / gib:.2f}x the output array")


if __name__ == "__main__":
    main()
