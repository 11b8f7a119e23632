"""Scale: statistics, loading and decoding in bounded memory; folds on 1 vs 2 workers.

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
2. Streamed loading and decoding. A cohort of K recordings (FIF, 19
   channels at 100 Hz, 10 min each, an event table with one 4-s window every
   4 s: 150 epochs per recording) is loaded through a manifest with
   ``load_manifest(..., preload=False)`` (each recording read, preprocessed
   and written on its own, the cache written in split parts), then
   ``decode`` (EEGNet, 2 folds, one training epoch) runs on the cached epochs
   read lazily, and, for reference, on the same epochs preloaded. Each step
   runs in a fresh process; peak memory above the imports is reported per K.
3. Workers. ``eegsal.decode`` with ``n_jobs=1`` and ``n_jobs=2`` (local
   processes, joblib's loky backend) on the same simulated study, in turns:
   the speed-up from 1 to 2 workers (on a 2-core machine each worker gets
   one core, so at most 2x).

Run: python benchmarks/bench_scale.py [--sizes 2000 8000 32000]
     [--recordings 8 32 128] [--skip-maps] [--skip-stream] [--skip-workers]
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
    from eegsal.attribution import read_attributions
    from eegsal.stats import fit_lmm

    attr = read_attributions(fname, preload=False)

    def fit():
        return {"n_coef": len(fit_lmm(attr, "content * stage", verbose=False).names)}

    print(json.dumps(_measure(fit)))


def write_cohort(folder: Path, k: int) -> dict:
    """Write K 10-min recordings and their event tables; return the manifest."""
    import mne
    import pandas as pd

    rng = np.random.default_rng(0)
    info = mne.create_info([f"EEG{c:02d}" for c in range(19)], 100.0, "eeg")
    onsets = np.arange(0.0, 600.0, 4.0)
    for i in range(k):
        data = rng.standard_normal((19, 60_000)) * 1e-5
        mne.io.RawArray(data, info, verbose=False).save(
            folder / f"sub-{i:03d}_raw.fif", overwrite=True, verbose=False
        )
        labels = rng.choice(["yes", "no"], len(onsets))
        pd.DataFrame({"onset": onsets, "label": labels}).to_csv(
            folder / f"sub-{i:03d}_events.csv", index=False
        )
    return dict(
        name="cohort",
        recordings=dict(
            glob="sub-*_raw.fif",
            match=r"sub-(?P<subject>\d+)_raw",
            events="sub-{subject}_events.csv",
        ),
        epochs=dict(
            mode="events", labels={"yes": "flying", "no": "other"}, tmin=0.0, tmax=3.99
        ),
    )


def _measure(fn) -> dict:
    """Run ``fn``; its peak resident memory above the current footprint, and time."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_mib("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    return {
        "peak_mib": _status_mib("VmHWM") - base,
        "seconds": time.perf_counter() - t0,
        **(out or {}),
    }


def child_load(folder: str, cache: str) -> None:
    """Load the cohort lazily, through its manifest."""
    import eegsal
    from eegsal.data import load_manifest

    eegsal.set_log_level("WARNING")
    spec = json.loads((Path(folder) / "manifest.json").read_text())

    def load():
        epochs = load_manifest(spec, root=folder, cache_dir=cache, preload=False)
        return {"n_epochs": len(epochs)}

    print(json.dumps(_measure(load)))


def child_decode(fname: str, preload: str) -> None:
    """Decode the cached cohort, read lazily or preloaded."""
    import eegsal
    from eegsal.data.cache import read_epochs
    from eegsal.decoding import EEGDecoder, decode

    eegsal.set_log_level("WARNING")
    # torch's own start-up memory is not the data's: train once on 8 epochs first
    X = np.random.default_rng(0).standard_normal((8, 19, 400))
    EEGDecoder(max_epochs=1, valid_size=0, device="cpu").fit(X, ["a", "b"] * 4)

    def run():
        epochs = read_epochs(fname, preload=preload == "1")
        res = decode(
            epochs,
            "content",
            cv=2,
            max_epochs=1,
            min_epochs=1,
            valid_size=0,
            device="cpu",
        )
        return {"balanced_accuracy": float(res.scores["balanced_accuracy"].mean())}

    print(json.dumps(_measure(run)))


def _child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def stream(counts: list[int]) -> None:
    """Load and decode growing cohorts in fresh processes; print memory and time."""
    print(
        f"{'recordings':>10} {'epochs':>7} {'float64 epochs (MiB)':>21} "
        f"{'load peak (MiB)':>16} {'load (s)':>9} {'decode lazy peak':>17} "
        f"{'(s)':>6} {'decode preloaded peak':>22} {'(s)':>6}"
    )
    for k in counts:
        with tempfile.TemporaryDirectory() as tmp:
            folder, cache = Path(tmp) / "data", Path(tmp) / "cache"
            folder.mkdir()
            spec = write_cohort(folder, k)
            (folder / "manifest.json").write_text(json.dumps(spec))
            load = _child("--child-load", str(folder), str(cache))
            (fname,) = cache.glob("*/*-epo.fif")
            lazy = _child("--child-decode", str(fname), "0")
            full = _child("--child-decode", str(fname), "1")
            size = load["n_epochs"] * 19 * 400 * 8 / 2**20
            print(
                f"{k:>10} {load['n_epochs']:>7} {size:>21.0f} "
                f"{load['peak_mib']:>16.0f} {load['seconds']:>9.1f} "
                f"{lazy['peak_mib']:>17.0f} {lazy['seconds']:>6.1f} "
                f"{full['peak_mib']:>22.0f} {full['seconds']:>6.1f}",
                flush=True,
            )


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
    """Run the three parts (each can be skipped)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--recordings", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--skip-maps", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    args = parser.parse_args()
    if not args.skip_maps:
        maps(args.sizes)
    if not args.skip_stream:
        stream(args.recordings)
    if not args.skip_workers:
        workers()


def maps(sizes: list[int]) -> None:
    """Fit the mixed model on growing maps, each in a fresh process."""
    print(
        f"{'epochs':>8} {'maps (MiB)':>11} {'float64 Y (MiB)':>16} "
        f"{'peak (MiB)':>11} {'time (s)':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            fname = Path(tmp) / f"maps{n}.h5"
            write_maps(fname, n)
            res = _child("--child", str(fname))
            size = n * 19 * 400 * 4 / 2**20
            print(
                f"{n:>8} {size:>11.0f} {2 * size:>16.0f} {res['peak_mib']:>11.0f} "
                f"{res['seconds']:>9.1f}",
                flush=True,
            )
            fname.unlink()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "--child-load":
        child_load(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "--child-decode":
        child_decode(sys.argv[2], sys.argv[3])
    else:
        main()
