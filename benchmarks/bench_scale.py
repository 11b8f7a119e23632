"""Scale: the mixed model on maps larger than memory, and folds on 1 vs 2 workers.

1. Streamed statistics. Attribution maps of N epochs (19 channels x 4 s at
   100 Hz, float32, 30 KB each; 8 subjects, content x stage metadata) are
   written chunk by chunk to HDF5 (:class:`eegsal.attribution.io.AttributionsWriter`
   never holds more than a block), then ``fit_lmm(read_attributions(f,
   preload=False), "content * stage")`` runs in a fresh process. Its peak
   resident memory above the process's footprint (Linux VmHWM after a reset,
   minus VmRSS) and its time are reported per N, with the size of the maps:
   memory stays flat as N grows (bounded by a block of 256 epochs and the
   per-cell sums), time grows linearly. In memory, the same fit would first
   hold the maps as one float64 matrix (twice the float32 maps: a column).
2. Workers. ``eegsal.decode`` with ``n_jobs=1`` and ``n_jobs=2`` (local
   processes, joblib's loky backend) on the same simulated study, in turns:
   the speed-up from 1 to 2 workers (on a 2-core machine each worker gets
   one core, so at most 2x).

Run: python benchmarks/bench_scale.py [--sizes 2000 8000 32000] [--skip-workers]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def write_maps(fname: Path, n: int, block: int = 512) -> None:
    """Write N random maps with study metadata, one block at a time."""
    import mne
    import pandas as pd

    from eegsal.attribution.io import AttributionsWriter

    rng = np.random.default_rng(0)
    info = mne.create_info(19, 100.0, "eeg")
    times = np.arange(400) / 100.0
    meta = pd.DataFrame(
        {
            "subject": np.repeat(np.arange(8), -(-n // 8))[:n].astype(str),
            "content": rng.choice(["flying", "other"], n),
            "stage": rng.choice(["N2", "REM", "W"], n),
        }
    )
    with AttributionsWriter(fname, (n, 19, 400), overwrite=True) as writer:
        for start in range(0, n, block):
            idx = np.arange(start, min(start + block, n))
            writer.write(idx, rng.standard_normal((len(idx), 19, 400), np.float32))
        writer.finish(
            info=info,
            times=times,
            metadata=meta,
            method="saliency",
            target="logit",
            sign="signed",
            params={"label": "0"},
        )


def child(fname: str) -> None:
    """Fit the mixed model on lazily read maps; print peak memory and time."""
    import gc

    from eegsal.attribution import read_attributions
    from eegsal.stats import fit_lmm

    attr = read_attributions(fname, preload=False)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_mib("VmRSS")
    t0 = time.perf_counter()
    lmm = fit_lmm(attr, "content * stage", verbose=False)
    wall = time.perf_counter() - t0
    peak = _status_mib("VmHWM") - base
    print(json.dumps({"peak_mib": peak, "seconds": wall, "n_coef": len(lmm.names)}))


def workers(repeats: int = 3) -> None:
    """Time decode() with 1 and 2 local worker processes, in turns."""
    from eegsal.decoding import decode
    from eegsal.simulate import simulate_sleep_study

    epochs, _ = simulate_sleep_study(n_subjects=8, n_epochs=40, seed=0, verbose=False)
    kw = dict(
        cv=4, max_epochs=4, min_epochs=4, batch_size=32, device="cpu", verbose=False
    )
    times = {1: [], 2: []}
    for _ in range(repeats):
        for n_jobs in (1, 2):
            t0 = time.perf_counter()
            decode(epochs, "content", n_jobs=n_jobs, **kw)
            times[n_jobs].append(time.perf_counter() - t0)
    t1, t2 = np.median(times[1]), np.median(times[2])
    print(
        f"decode, 4 folds: 1 worker {t1:.1f} s, 2 workers {t2:.1f} s "
        f"(speed-up {t1 / t2:.2f}x; medians of {repeats})"
    )


def main() -> None:
    """Write growing studies, fit each in a fresh process, then time the workers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--skip-workers", action="store_true")
    args = parser.parse_args()
    print(
        f"{'epochs':>8} {'maps (MiB)':>11} {'float64 Y (MiB)':>16} "
        f"{'peak (MiB)':>11} {'time (s)':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            fname = Path(tmp) / f"maps{n}.h5"
            write_maps(fname, n)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(fname)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            res = json.loads(out.strip().splitlines()[-1])
            size = n * 19 * 400 * 4 / 2**20
            print(
                f"{n:>8} {size:>11.0f} {2 * size:>16.0f} {res['peak_mib']:>11.0f} "
                f"{res['seconds']:>9.1f}",
                flush=True,
            )
            fname.unlink()
    if not args.skip_workers:
        workers()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
