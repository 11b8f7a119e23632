"""Loading the real motor data through its manifest, with and without the cache.

``data_manifests/eegmmidb_motor.yaml`` (8 subjects x 6 runs of 64-channel EDF,
filtered 7-30 Hz, 720 epochs) is loaded uncached, which reads and filters every
file, then from the cache (one ``-epo.fif``); the hand-written loader
:func:`eegsal.data.load_eegbci` with the same settings is the reference.

Run: python benchmarks/bench_manifest_load.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from eegsal.data import load_eegbci, load_manifest

MANIFEST = Path(__file__).parents[1] / "data_manifests" / "eegmmidb_motor.yaml"


def _median(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    """Time the three loads; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        uncached, ep = _median(
            lambda: load_manifest(MANIFEST, cache=False, verbose=False), args.repeats
        )
        load_manifest(MANIFEST, cache_dir=cache, verbose=False)  # fills the cache
        cached, ep2 = _median(
            lambda: load_manifest(MANIFEST, cache_dir=cache, verbose=False),
            args.repeats,
        )
    root = MANIFEST.parent / "../../shared/data/eegmmidb"
    reference, ref = _median(
        lambda: load_eegbci(root, tmin=0.5, tmax=2.5, verbose=False), args.repeats
    )
    assert np.array_equal(ep.get_data(), ep2.get_data())
    print(f"{len(ep)} epochs x {len(ep.ch_names)} channels")
    print(f"manifest, uncached : {uncached:6.2f} s")
    print(f"manifest, cached   : {cached:6.2f} s ({uncached / cached:.0f}x faster)")
    print(f"load_eegbci        : {reference:6.2f} s (manifest uncached = "
          f"{uncached / reference:.2f}x of it)")  # fmt: skip
    # the same epochs: both in (subject, run, time) order
    mine = ep.metadata.assign(s=ep.metadata["subject"].astype(int),
                              r=ep.metadata["run"].astype(int))  # fmt: skip
    theirs = ref.metadata.assign(s=ref.metadata["subject"].str[1:].astype(int),
                                 r=ref.metadata["run"])  # fmt: skip
    a = np.lexsort((np.arange(len(mine)), mine["r"], mine["s"]))
    b = np.lexsort((np.arange(len(theirs)), theirs["r"], theirs["s"]))
    same = np.allclose(ep.get_data()[a], ref.get_data()[b], rtol=0, atol=1e-12)
    print("same data as load_eegbci:", same)


if __name__ == "__main__":
    main()
