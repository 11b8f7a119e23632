"""The whole chain on a GPU, with the CPU figures of the same script beside it.

On a simulated cohort (default: 100 subjects x 200 epochs, 32 channels, 4 s at
100 Hz), each stage a user waits on, timed on ``--device`` (CUDA when
present) and, on a subset, on the CPU of the same machine:

- training EEGNet and ShallowConvNet through ``EEGDecoder.fit`` (no
  validation split, a fixed number of training epochs), with bfloat16
  autocast (eegsal's default on CUDA) and in float32: EEG epochs per second;
- integrated gradients (32 steps) and SmoothGrad (16 samples): maps per
  second;
- the mixed model ``content * C(stage, Sum) + (1 | subject)`` on the maps
  averaged in 0.1 s bins (on the CPU: NumPy/SciPy), and its 1,000-permutation
  cluster test: on CUDA its permuted z-maps run on the GPU
  (``cluster_test(..., device="cuda")``; the clusters are labelled on the
  CPU), beside the NumPy path on the CPU, with the largest difference of the
  two nulls.

Runs anywhere; on a machine without a GPU the "device" figures are CPU
figures. ``--quick`` shrinks every size for a smoke test.

Run: python benchmarks/bench_gpu.py [--device cuda] [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time

import mne
import numpy as np
import torch

from eegsal import attribute
from eegsal._study import _bin_times
from eegsal.decoding import EEGDecoder, get_device
from eegsal.decoding.estimator import _Net
from eegsal.simulate import simulate_sleep_study
from eegsal.stats import fit_lmm

#: 32 electrodes of the 10-10 system, spread over the scalp.
CHANNELS = [
    "Fp1", "Fp2", "AF3", "AF4", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2",
    "FC6", "T7", "C3", "Cz", "C4", "T8", "CP5", "CP1", "CP2", "CP6", "P7", "P3",
    "Pz", "P4", "P8", "PO3", "PO4", "O1", "Oz", "O2",
]  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def float32_training():
    """Train without eegsal's bfloat16 autocast (skorch's plain forward)."""
    infer = _Net.infer
    _Net.infer = _Net.__mro__[1].infer
    try:
        yield
    finally:
        _Net.infer = infer


def time_training(model, X, y, device, n_epochs, fp32=False, batch_size=256):
    """EEG epochs per second of ``EEGDecoder.fit`` (median of per-epoch times)."""
    dec = EEGDecoder(
        model=model, max_epochs=n_epochs, valid_size=0, lr_schedule=None,
        batch_size=batch_size, device=str(device), seed=0,
    )  # fmt: skip
    ctx = float32_training() if fp32 else contextlib.nullcontext()
    with ctx:
        dec.fit(X, y)
    _sync(device)
    durations = [row["dur"] for row in dec.net_.history]
    # the first epoch holds the warm-up (cuDNN autotuning, allocator)
    steady = np.median(durations[1:]) if len(durations) > 1 else durations[0]
    return len(X) / steady, dec.module_


def time_maps(module, epochs, method, device, batch_size=256, **kw):
    """Maps per second (one map per epoch) of ``eegsal.attribute``."""
    t0 = time.perf_counter()
    attr = attribute(module, epochs, method=method, label=0, device=str(device),
                     batch_size=batch_size, **kw)  # fmt: skip
    _sync(device)
    return len(epochs) / (time.perf_counter() - t0), attr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-subjects", type=int, default=100)
    parser.add_argument("--n-epochs", type=int, default=200, help="per subject")
    parser.add_argument("--train-epochs", type=int, default=4)
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads of the cluster test")  # fmt: skip
    parser.add_argument("--cpu-subset", type=int, default=1000,
                        help="epochs trained on the CPU for comparison")
    parser.add_argument("--cpu-maps", type=int, default=100,
                        help="epochs explained on the CPU for comparison")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=256,
                        help="of training and of the maps on --device")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.n_subjects, args.n_epochs, args.train_epochs = 6, 40, 2
        args.n_permutations, args.cpu_subset, args.cpu_maps = 50, 120, 20
    device = get_device(args.device)
    cpu = torch.device("cpu")
    fig: dict = dict(
        device=str(device),
        gpu=torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        torch=torch.__version__, mne=mne.__version__,
        cpu=platform.processor() or platform.machine(), cpu_cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
    )  # fmt: skip
    stage_s: dict[str, float] = {}

    def done(stage: str, t_start: float) -> None:
        """Record a stage's seconds, and say so at once (a long run shows progress)."""
        stage_s[stage] = time.perf_counter() - t_start
        print(f"[{stage}: {stage_s[stage]:.1f} s]", flush=True)

    t0 = time.perf_counter()
    epochs, _ = simulate_sleep_study(
        n_subjects=args.n_subjects, n_epochs=args.n_epochs, ch_names=CHANNELS, seed=0
    )
    done("simulate", t0)
    X = epochs.get_data(units="uV").astype(np.float32)
    y = epochs.metadata["content"].to_numpy()
    fig["cohort"] = dict(zip(("epochs", "channels", "samples"), X.shape, strict=True))
    sub = np.random.default_rng(0).permutation(len(X))[: args.cpu_subset]
    sub.sort()

    train, modules = {}, {}
    for model in ("eegnet", "shallow"):
        t0 = time.perf_counter()
        rate, modules[model] = time_training(
            model, X, y, device, args.train_epochs, batch_size=args.batch_size
        )
        train[f"{model} {device.type} autocast"] = rate
        if device.type == "cuda":
            rate32, _ = time_training(
                model, X, y, device, args.train_epochs, True, args.batch_size
            )
            train[f"{model} cuda float32"] = rate32
        done(f"train {model} ({device.type})", t0)
        if device.type != "cpu":
            rate_cpu, _ = time_training(model, X[sub], y[sub], cpu, 2)
            train[f"{model} cpu float32"] = rate_cpu
    fig["training_epochs_per_s"] = train

    maps, attr = {}, None
    settings = dict(integrated_gradients=dict(n_steps=32),
                    smoothgrad=dict(n_samples=16))  # fmt: skip
    for method, kw in settings.items():
        t0 = time.perf_counter()
        rate, a = time_maps(
            modules["eegnet"], epochs, method, device, args.batch_size, **kw
        )
        maps[f"{method} {device.type}"] = rate
        done(f"{method} ({device.type})", t0)
        if method == "integrated_gradients":
            attr = a
        if device.type != "cpu":
            module_cpu = modules["eegnet"].to(cpu)
            maps[f"{method} cpu"], _ = time_maps(
                module_cpu, epochs[sub[: args.cpu_maps]], method, cpu, **kw
            )
            modules["eegnet"].to(device)
    fig["maps_per_s"] = maps

    binned = _bin_times(attr, 0.1)
    t0 = time.perf_counter()
    lmm = fit_lmm(binned, "content * C(stage, Sum)", groups="subject")
    done("mixed model (cpu)", t0)
    name = next(n for n in lmm.names if n.startswith("content["))
    perm_kw = dict(n_permutations=args.n_permutations, seed=0, n_jobs=args.n_jobs)
    runs: dict = {"cpu": None}  # device=None: the NumPy path
    if device.type == "cuda":
        runs = {"cuda": str(device), **runs}
    tests = {}
    for where, perm_device in runs.items():
        t0 = time.perf_counter()
        tests[where] = lmm.cluster_test(name, device=perm_device, **perm_kw)
        _sync(device)
        done(f"cluster test, {args.n_permutations} permutations ({where})", t0)
    test = next(iter(tests.values()))
    if len(tests) > 1:  # the GPU's null against the NumPy path's
        fig["cluster_null_max_rel_diff"] = float(
            np.max(np.abs(tests["cuda"].null - tests["cpu"].null)
                   / np.maximum(np.abs(tests["cpu"].null), 1e-300))
        )  # fmt: skip
    fig["lmm_cells"] = int(binned.data.shape[1] * binned.data.shape[2])
    table = test.clusters
    fig["cluster_min_p"] = float(table["p"].min()) if len(table) else None
    fig["stage_seconds"] = stage_s

    print(
        f"device {fig['device']} ({fig['gpu'] or fig['cpu']}), torch {fig['torch']}, "
        f"{fig['cpu_cores']} CPU cores; cohort {X.shape[0]} epochs x {X.shape[1]} "
        f"ch x {X.shape[2]} samples; CPU figures on {len(sub)} epochs (training) "
        f"and {min(len(sub), args.cpu_maps)} (maps)"
    )
    print("training, EEG epochs/s:")
    for key, value in train.items():
        print(f"  {key:32s} {value:10.0f}")
    print("maps/s:")
    for key, value in maps.items():
        print(f"  {key:32s} {value:10.0f}")
    print("seconds per stage:")
    for key, value in stage_s.items():
        print(f"  {key:48s} {value:8.2f}")
    if "cluster_null_max_rel_diff" in fig:
        print(f"cluster null, GPU vs CPU: largest relative difference "
              f"{fig['cluster_null_max_rel_diff']:.1e}")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(fig, f, indent=2)


if __name__ == "__main__":
    main()
