"""Deletion curves: eegsal against Quantus' PixelFlipping and bare forward passes.

The same EEGNet, epochs (simulated, 19 channels x 2 s at 100 Hz) and
saliency maps go to ``eegsal.evaluation.faithfulness`` (cells ranked one by
one, ``n_steps`` steps, no random ordering, zeros as the reference) and to
``quantus.PixelFlipping`` (``features_in_step`` = cells / steps, softmax
output, ``perturb_baseline=0.0``): the curves must agree step by step. (With
Quantus' ``"mean"`` baseline they part after the first step: Quantus takes
the mean of the input as perturbed so far, which drifts as cells are removed.)
Then ``faithfulness_correlation`` against ``quantus.FaithfulnessCorrelation`` on
the very subsets Quantus draws (recorded), and, on p x p patches, the full
deletion curve against ``Selectivity`` and ``RegionPerturbation`` and
``monotonicity_correlation`` against ``MonotonicityCorrelation``.
The reference time is the bare loop of the forward passes the
curves need (epochs x (steps + 1) in batches), measured in the same run.

Run: python benchmarks/bench_faithfulness.py [--n-epochs 128] [--n-steps 20]
     [--curves-only]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from eegsal.attribution import Attributions, attribute
from eegsal.evaluation import faithfulness
from eegsal.models import EEGNet
from eegsal.simulate import simulate_sleep_study


def _interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Times and last output of each function, run in turns (fair under load)."""
    times = {k: [] for k in fns}
    outs = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {k: np.array(v) for k, v in times.items()}, outs


def _ratio(times: dict, a: str, b: str) -> float:
    """Median over repeats of the paired ratio a/b (robust to load drifting)."""
    return float(np.median(times[a] / times[b]))


def _med(times: dict, name: str) -> float:
    return statistics.median(times[name])


def main() -> None:
    """Run the three, check the curves agree, print times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-epochs", type=int, default=128)
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--curves-only", action="store_true", help="only the deletion curves"
    )
    args = parser.parse_args()
    import quantus

    torch.set_num_threads(2)
    epochs, _ = simulate_sleep_study(
        n_subjects=4, n_epochs=args.n_epochs // 4, epoch_length=2.0, seed=0
    )
    torch.manual_seed(0)
    model = EEGNet(len(epochs.ch_names), len(epochs.times), 2).eval()
    attr = attribute(model, epochs, method="saliency", target="probability", label=1,
                     verbose=False)  # fmt: skip
    x = epochs.get_data(units="uV").astype(np.float32)
    n, c, t = x.shape
    n_steps, batch = args.n_steps, 64

    def ours():
        return faithfulness(model, epochs, attr, n_steps=n_steps, patch=(1, 1),
                            n_random=0, batch_size=batch, verbose=False)  # fmt: skip

    metric = quantus.PixelFlipping(features_in_step=c * t // n_steps,
                                   perturb_baseline=0.0, normalise=False,
                                   disable_warnings=True)  # fmt: skip

    class Flat(torch.nn.Module):  # Quantus flips "pixels" across its channel axis:
        def forward(self, z):  # give it one row of channels x samples cells
            return model(z.reshape(-1, c, t))

    flat, x_flat = Flat().eval(), x.reshape(n, 1, c * t)
    a_flat = attr.data.reshape(n, 1, c * t)

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.array(
                metric(model=flat, x_batch=x_flat, y_batch=np.ones(n, int),
                       a_batch=a_flat, softmax=True, device="cpu", batch_size=batch)
            )  # fmt: skip

    def bare():
        with torch.no_grad():
            for i in range(0, n, batch):
                xb = torch.from_numpy(x[i : i + batch])
                for _ in range(n_steps + 1):
                    model(xb).softmax(-1)

    times, outs = _interleaved(dict(ours=ours, theirs=theirs, bare=bare), args.repeats)
    fc, q = outs["ours"], outs["theirs"]
    curve = fc.curves.pivot_table("score", "epoch", "step").to_numpy()[:, 1:]
    per_step = c * t // n_steps
    print(f"{n} epochs x {c} ch x {t} samples, {n_steps} steps of {per_step} cells")
    print(f"vs Quantus PixelFlipping, max |difference| over all steps: "
          f"{np.abs(curve - q).max():.1e}")  # fmt: skip
    print("medians of", args.repeats, "interleaved runs; ratios are medians of pairs")
    print(f"bare forward passes : {_med(times, 'bare'):6.2f} s")
    print(f"eegsal faithfulness : {_med(times, 'ours'):6.2f} s "
          f"({_ratio(times, 'ours', 'bare'):.2f}x bare)")  # fmt: skip
    print(f"quantus PixelFlipping: {_med(times, 'theirs'):6.2f} s "
          f"({_ratio(times, 'theirs', 'bare'):.2f}x bare, "
          f"{_ratio(times, 'theirs', 'ours'):.2f}x eegsal)")  # fmt: skip
    if args.curves_only:
        return
    correlation(model, epochs, attr, x, repeats=args.repeats)
    patch_metrics(model, epochs, attr, repeats=max(1, args.repeats // 2))


def correlation(model, epochs, attr, x, n_subsets=50, subset_size=190, repeats=3):
    """FaithfulnessCorrelation of Quantus against eegsal on the same random subsets."""
    import quantus

    from eegsal.evaluation import faithfulness_correlation

    n, c, t = x.shape

    class Flat(torch.nn.Module):
        def forward(self, z):
            return model(z.reshape(-1, c, t))

    metric = quantus.FaithfulnessCorrelation(
        nr_runs=n_subsets, subset_size=subset_size, perturb_baseline=0.0,
        return_aggregate=False, disable_warnings=True,
    )  # fmt: skip

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.array(metric(model=Flat().eval(), x_batch=x.reshape(n, 1, -1),
                                   y_batch=np.ones(n, int),
                                   a_batch=attr.data.reshape(n, 1, -1), softmax=True,
                                   device="cpu", batch_size=n))  # fmt: skip

    # Quantus draws its subsets with NumPy's global generator, run by run and
    # epoch by epoch: record them once, and give eegsal the same subsets
    drawn, choice = [], np.random.choice

    def recording_choice(*args, **kwargs):
        drawn.append(choice(*args, **kwargs))
        return drawn[-1]

    np.random.choice = recording_choice
    try:
        theirs()
    finally:
        np.random.choice = choice
    subsets = np.asarray(drawn).reshape(n_subsets, n, subset_size).transpose(1, 0, 2)

    def ours():
        table = faithfulness_correlation(model, epochs, attr, subsets=subsets)
        return table["correlation"].to_numpy()

    times, outs = _interleaved(dict(ours=ours, theirs=theirs), repeats)
    np.random.choice = recording_choice  # compare on the recorded subsets
    drawn.clear()
    try:
        reference = theirs()
    finally:
        np.random.choice = choice
    subsets = np.asarray(drawn).reshape(n_subsets, n, subset_size).transpose(1, 0, 2)
    mine = faithfulness_correlation(model, epochs, attr, subsets=subsets, verbose=False)
    diff = np.nanmax(np.abs(mine["correlation"].to_numpy() - reference))
    ratio = _ratio(times, "theirs", "ours")
    print(f"FaithfulnessCorrelation ({n_subsets} subsets of {subset_size} cells): "
          f"max |difference| {diff:.1e}; eegsal {_med(times, 'ours'):.2f} s, Quantus "
          f"{_med(times, 'theirs'):.2f} s ({ratio:.2f}x)")  # fmt: skip


def patch_metrics(model, epochs, attr, n=32, p=2, repeats=2):
    """Selectivity, RegionPerturbation and MonotonicityCorrelation, both tools.

    18 channels (one dropped) and p x p patches tile the map exactly, so that
    Quantus pads nothing.
    """
    import quantus

    from eegsal.evaluation import monotonicity_correlation

    sel = epochs[:n].copy().drop_channels(epochs.ch_names[-1])
    c, t = len(sel.ch_names), len(sel.times)

    class Full(torch.nn.Module):  # the dropped channel fed as zeros
        def forward(self, z):
            z = z.reshape(-1, c, t)
            return model(torch.cat([z, z.new_zeros(len(z), 1, t)], dim=1))

    full = Full().eval()
    a = np.ascontiguousarray(attr[:n].data[:, :c])
    sub = Attributions(a, sel.info, sel.times, metadata=sel.metadata,
                       method=attr.method, target=attr.target, label="1")  # fmt: skip
    x = sel.get_data(units="uV").astype(np.float32)[:, None]  # (n, 1, C, T) image
    n_patches = (c // p) * (t // p)
    kw = dict(model=full, x_batch=x, y_batch=np.ones(n, int), a_batch=a[:, None],
              softmax=True, device="cpu", batch_size=n)  # fmt: skip
    quiet = dict(disable_warnings=True)
    metrics = {
        "Selectivity": quantus.Selectivity(patch_size=p, perturb_baseline=0.0,
                                           **quiet),  # fmt: skip
        "RegionPerturbation": quantus.RegionPerturbation(
            patch_size=p, regions_evaluation=n_patches, perturb_baseline=0.0,
            **quiet),  # fmt: skip
        "MonotonicityCorrelation": quantus.MonotonicityCorrelation(
            nr_samples=1, features_in_step=1, perturb_baseline=0.0, **quiet),
    }  # fmt: skip

    def run(name):
        def call():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.array(metrics[name](**kw))

        return call

    def curve():
        fc = faithfulness(full, sel, sub, n_steps=n_patches, patch=(p, p),
                          n_random=0, batch_size=n, verbose=False)  # fmt: skip
        return fc.curves.pivot_table("score", "epoch", "step").to_numpy()

    def mono():
        table = monotonicity_correlation(
            full, sel, sub, patch=(1, 1), perturbation="zeros", verbose=False
        )
        return table["correlation"].to_numpy()

    fns = dict(curve=curve, Selectivity=run("Selectivity"),
               RegionPerturbation=run("RegionPerturbation"), mono=mono,
               MonotonicityCorrelation=run("MonotonicityCorrelation"))  # fmt: skip
    times, outs = _interleaved(fns, repeats)
    ours = outs["curve"]
    pairs = {
        "Selectivity": ("curve", ours[:, 1:]),
        "RegionPerturbation": ("curve", ours[:, :1] - ours[:, 1:]),
        "MonotonicityCorrelation": ("mono", outs["mono"]),
    }
    print(f"{n} epochs x {c} ch x {t} samples, {p}x{p} patches ({n_patches}):")
    for name, (mine, value) in pairs.items():
        diff = np.nanmax(np.abs(value - outs[name]))
        print(f"  {name:24s} max |difference| {diff:.1e}; eegsal "
              f"{_med(times, mine):6.2f} s, Quantus {_med(times, name):6.2f} s "
              f"({_ratio(times, name, mine):.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
