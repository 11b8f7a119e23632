"""Deletion curves: eegsal against Quantus' PixelFlipping and bare forward passes.

The same EEGNet, epochs (simulated, 19 channels x 2 s at 100 Hz, each
channel centred so that Quantus' "mean" baseline equals eegsal's zeros) and
saliency maps go to ``eegsal.evaluation.faithfulness`` (cells ranked one by
one, ``n_steps`` steps, no random ordering) and to ``quantus.PixelFlipping``
(``features_in_step`` = cells / steps, softmax output): the curves must agree
step by step (they do at the first step; see the note printed for the rest).
Then ``faithfulness_correlation`` against ``quantus.FaithfulnessCorrelation`` on
the very subsets Quantus draws (recorded).
The reference time is the bare loop of the forward passes the
curves need (epochs x (steps + 1) in batches), measured in the same run.

Run: python benchmarks/bench_faithfulness.py [--n-epochs 128] [--n-steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from eegsal.attribution import attribute
from eegsal.evaluation import faithfulness
from eegsal.models import EEGNet
from eegsal.simulate import simulate_sleep_study


def _interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Median time and last output of each function, run in turns (fair under load)."""
    times = {k: [] for k in fns}
    outs = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, outs


def main() -> None:
    """Run the three, check the curves agree, print times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-epochs", type=int, default=128)
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import quantus

    torch.set_num_threads(2)
    epochs, _ = simulate_sleep_study(
        n_subjects=4, n_epochs=args.n_epochs // 4, epoch_length=2.0, seed=0
    )
    epochs._data -= epochs._data.mean(axis=-1, keepdims=True)
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
                                   perturb_baseline="mean", normalise=False,
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
    t_ours, t_theirs, t_bare = times["ours"], times["theirs"], times["bare"]
    fc, q = outs["ours"], outs["theirs"]
    curve = fc.curves.pivot_table("score", "epoch", "step").to_numpy()[:, 1:]
    diff = np.abs(curve - q).max(axis=0)
    per_step = c * t // n_steps
    print(f"{n} epochs x {c} ch x {t} samples, {n_steps} steps of {per_step} cells")
    print(f"vs Quantus PixelFlipping, max |difference| at step 1: {diff[0]:.1e}, "
          f"at the last step: {diff[-1]:.1e}")  # fmt: skip
    with torch.no_grad():  # all cells removed: the model's output on the reference
        ref = model(torch.zeros(1, c, t)).softmax(-1)[0, 1].item()
    print(f"  last step equals the model on the reference: eegsal "
          f"{np.abs(curve[:, -1] - ref).max():.1e}, Quantus "
          f"{np.abs(q[:, -1] - ref).max():.1e}")  # fmt: skip
    print(f"bare forward passes : {t_bare:6.2f} s")
    print(f"eegsal faithfulness : {t_ours:6.2f} s ({t_ours / t_bare:.2f}x bare)")
    print(f"quantus PixelFlipping: {t_theirs:6.2f} s ({t_theirs / t_bare:.2f}x bare, "
          f"{t_theirs / t_ours:.2f}x eegsal)")  # fmt: skip
    correlation(model, epochs, attr, x, repeats=args.repeats)


def correlation(model, epochs, attr, x, n_subsets=50, subset_size=190, repeats=3):
    """FaithfulnessCorrelation of Quantus against eegsal on the same random subsets."""
    import quantus

    from eegsal.evaluation import faithfulness_correlation

    n, c, t = x.shape

    class Flat(torch.nn.Module):
        def forward(self, z):
            return model(z.reshape(-1, c, t))

    metric = quantus.FaithfulnessCorrelation(
        nr_runs=n_subsets, subset_size=subset_size, perturb_baseline="mean",
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
    ratio = times["theirs"] / times["ours"]
    print(f"FaithfulnessCorrelation ({n_subsets} subsets of {subset_size} cells): "
          f"max |difference| {diff:.1e}; eegsal {times['ours']:.2f} s, Quantus "
          f"{times['theirs']:.2f} s ({ratio:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
