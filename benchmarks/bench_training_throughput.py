"""Training throughput of eegsal's skorch path against a bare PyTorch loop.

Same model (EEGNet, standardizing first layer), same data, batch size,
optimizer (AdamW, constant learning rate), loss and number of epochs; no
validation split or callbacks, so both do exactly the same arithmetic. The
skorch path (``EEGDecoder.fit``) should cost at most 10% more.

Run: python benchmarks/bench_training_throughput.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from eegsal.decoding import EEGDecoder, get_device
from eegsal.decoding.networks import _build_module
from eegsal.simulate import simulate_sleep_study


def bare_loop(X, y, n_epochs, batch_size, lr, device, seed):
    """The reference: a plain DataLoader + AdamW loop on the same module."""
    torch.manual_seed(seed)
    classes, y_idx = np.unique(y, return_inverse=True)
    module = _build_module("eegnet", X.shape[1], X.shape[2], len(classes), {})
    module[0].mean.copy_(torch.from_numpy(X.mean(axis=(0, 2))[:, None]))
    module[0].scale.copy_(torch.from_numpy(X.std(axis=(0, 2))[:, None] + 1e-6))
    module.to(device).train()
    data = torch.utils.data.TensorDataset(
        torch.from_numpy(X), torch.from_numpy(y_idx.astype(np.int64))
    )
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(n_epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss_fn(module(xb), yb).backward()
            opt.step()
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per run")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = get_device(args.device)
    epochs, _ = simulate_sleep_study(n_subjects=8, n_epochs=64, seed=0)
    X = epochs.get_data(units="uV").astype(np.float32)
    y = epochs.metadata["content"].to_numpy()
    kw = dict(batch_size=64, lr=1e-3)
    t_skorch, t_bare = [], []
    for rep in range(args.repeats):
        # alternate the order so that neither path always runs on a warm cache
        runs = [("skorch", t_skorch), ("bare", t_bare)]
        for name, times in runs if rep % 2 == 0 else runs[::-1]:
            t0 = time.perf_counter()
            if name == "skorch":
                EEGDecoder(
                    max_epochs=args.epochs, valid_size=0, lr_schedule=None,
                    class_weight=None, device=str(device), seed=rep, **kw,
                ).fit(X, y)  # fmt: skip
            else:
                bare_loop(X, y, args.epochs, kw["batch_size"], kw["lr"], device, rep)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    n = len(X) * args.epochs
    med_s, med_b = statistics.median(t_skorch), statistics.median(t_bare)
    print(f"device {device}, torch threads {torch.get_num_threads()}, "
          f"{len(X)} epochs x {X.shape[1]} ch x {X.shape[2]} samples, "
          f"{args.epochs} training epochs, {args.repeats} repeats")  # fmt: skip
    print(
        f"skorch path (EEGDecoder.fit): {n / med_s:.0f} EEG epochs/s "
        f"(median {med_s:.2f} s)"
    )
    print(
        f"bare PyTorch loop:            {n / med_b:.0f} EEG epochs/s "
        f"(median {med_b:.2f} s)"
    )
    print(
        f"ratio: the skorch path takes {med_s / med_b:.3f}x the time of the bare loop"
    )


if __name__ == "__main__":
    main()
