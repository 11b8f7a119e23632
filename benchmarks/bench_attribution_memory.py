"""Peak memory of attributing a study, in memory vs streamed to HDF5.

Studies of N epochs (19 channels x 4 s at 100 Hz) are written to ``-epo.fif``
and explained with saliency by an EEGNet, each run in a fresh process:

- *in memory*: epochs read with ``preload=True``, maps held in memory;
- *streamed*: epochs read with ``preload=False``, maps written batch by batch
  with ``attribute(..., out="maps.h5")``.

The peak resident memory above the process's footprint after imports is
reported per N (Linux: VmHWM after resetting it, minus VmRSS), next to the
size of the data and of the maps. In memory it
grows with N (data + maps); streamed it stays bounded by the batch size.

Run: python benchmarks/bench_attribution_memory.py [--sizes 1000 8000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, Linux."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(fname: str, mode: str, out_dir: str) -> None:
    """Run one attribution and print the peak memory above the baseline (MiB)."""
    import gc

    import mne
    import torch

    from eegsal.attribution import attribute
    from eegsal.models import EEGNet

    torch.set_num_threads(2)
    torch.manual_seed(0)
    header = mne.read_epochs(fname, preload=False, verbose=False)
    model = EEGNet(len(header.ch_names), len(header.times), 2).eval()
    del header
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    base = _status_mib("VmRSS")
    epochs = mne.read_epochs(fname, preload=(mode == "in memory"), verbose=False)
    out = Path(out_dir) / "maps.h5" if mode == "streamed" else None
    attr = attribute(model, epochs, method="saliency", label=1, batch_size=64, out=out)
    peak = _status_mib("VmHWM") - base
    print(json.dumps({"peak_above_base_mib": peak, "n": len(attr)}))


def main() -> None:
    """Write the studies, measure each mode in a fresh process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 8000])
    args = parser.parse_args()
    import mne
    import pandas as pd

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rng = np.random.default_rng(0)
            info = mne.create_info(19, 100.0, "eeg")
            data = 20e-6 * rng.standard_normal((n, 19, 400), dtype=np.float32)
            fname = Path(tmp) / f"study{n}-epo.fif"
            mne.EpochsArray(data, info, verbose=False).save(fname, verbose=False)
            del data
            for mode in ("in memory", "streamed"):
                res = subprocess.run(
                    [sys.executable, __file__, "--child", str(fname), mode, tmp],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                peak = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(
                    {
                        "epochs": n,
                        "mode": mode,
                        "data MiB (float64)": n * 19 * 400 * 8 / 2**20,
                        "maps MiB (float32)": n * 19 * 400 * 4 / 2**20,
                        "peak above base MiB": peak["peak_above_base_mib"],
                    }
                )
                print(rows[-1], flush=True)
                (Path(tmp) / "maps.h5").unlink(missing_ok=True)
            fname.unlink()
    print(pd.DataFrame(rows).round(1).to_string(index=False))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
