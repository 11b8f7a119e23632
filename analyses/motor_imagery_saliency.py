"""Motor EEG: where do a decoder's maps peak, and in which bands?
==============================================================

PhysioNet EEG Motor Movement/Imagery (Schalk et al., 2004), subjects 1-8,
runs of executed (3, 7, 11) and imagined (4, 8, 12) fist movements, loaded
through ``data_manifests/eegmmidb_motor.yaml`` (left vs right fist) or
``eegmmidb_movement.yaml`` (movement vs rest): band-pass 7-30 Hz, 0.5-2.5 s
after the cue, resampled to 80 Hz; ``--picks sensorimotor`` keeps the 21
sensorimotor channels, ``--runs executed`` the executed runs.
ShallowConvNet (Schirrmeister et al., 2017) decodes the contrast across
subjects (4-fold GroupKFold), then:

- decoding within each context (executed, imagined), with the
  context-restricted permutation test: does the effect hold in both?
- integrated gradients (log-odds of the first class, "left" or "movement",
  for every epoch): topographies of their magnitude over time per context,
  and each channel's rank by it (``ig_channel_ranks.csv``);
- spectral maps (:func:`eegsal.attribution.attribute_spectrum`): band
  occlusion per channel x band, and amplitude gradients; the share of the
  maps in the alpha (8-12 Hz) and beta (12-30 Hz; sigma and beta of
  ``BANDS``) bands, and the rank of C3 and C4 among the channels.
  Alpha/beta desynchronization over the sensorimotor cortex (Pfurtscheller &
  Lopes da Silva, 1999) predicts mass on C3/C4 in those bands: bilateral for
  movement vs rest, with opposite signs for left vs right.

Across 8 subjects, left vs right is decoded near chance (0.50-0.53 balanced
accuracy; CSP+LDA reaches 0.56-0.58): the maps of such a decoder explain
nothing, and the script says so instead of drawing them.

``--transfer`` trains the decoder that transfers best across subjects in
``benchmarks/bench_motor_decoding.py`` (``eegsal.decoding.TRANSFER_DECODER``,
with ``--n-seeds``): ShallowConvNet with a 0.31 s
temporal filter and one pooling window over the whole epoch, Euclidean
alignment (each subject whitened with its own unlabeled epochs; the maps
stay per electrode, since the alignment is a fixed layer in front of the
network), training augmentation and an ensemble of ``--n-seeds`` seeds
(maps: the members' mean). The band table then holds each context's share of the band
occlusion in each band, and the ranks of C3, Cz and C4.

Run: python analyses/motor_imagery_saliency.py [--out motor] [--max-epochs 30]
     [--contrast movement_rest] [--runs executed] [--picks sensorimotor]
     [--transfer [--n-seeds 3]] [--epochs CACHE-epo.fif]

``--epochs`` reads the 21 sensorimotor channels of all six runs as
``bench_motor_decoding.py --save-epochs`` writes them (movement vs rest,
0.5-4.0 s after the cue: the benchmark's window, which the README's maps
use), for a machine without the recordings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
import yaml

import eegsal
from eegsal.attribution import BANDS, attribute_spectrum
from eegsal.data import SENSORIMOTOR, load_manifest
from eegsal.decoding import TRANSFER_DECODER
from eegsal.stats import within_context_scores

MANIFESTS = Path(__file__).parents[1] / "data_manifests"
CONTRASTS = {
    "left_right": "eegmmidb_motor.yaml",
    "movement_rest": "eegmmidb_movement.yaml",
}
RUNS = {
    "executed": ["03", "07", "11"],
    "imagined": ["04", "08", "12"],
    "all": ["03", "04", "07", "08", "11", "12"],
}
CENTRAL = ("C3", "Cz", "C4")


def load(args) -> mne.BaseEpochs:
    """The epochs of the contrast and runs, from the manifest or ``--epochs``."""
    if args.epochs:
        if args.contrast != "movement_rest" or args.picks != "sensorimotor":
            raise SystemExit("--epochs holds movement vs rest on 21 channels.")
        epochs = mne.read_epochs(args.epochs, verbose=False)
        runs = [int(r) for r in RUNS[args.runs]]
        return epochs[epochs.metadata["run"].isin(runs).to_numpy()]
    path = MANIFESTS / CONTRASTS[args.contrast]
    manifest = yaml.safe_load(path.read_text())
    manifest["preprocessing"]["sfreq"] = 80.0
    if args.picks == "sensorimotor":
        manifest["preprocessing"]["picks"] = list(SENSORIMOTOR)
    manifest["recordings"]["include"]["run"] = RUNS[args.runs]
    manifest["root"] = str((path.parent / manifest["root"]).resolve())
    return load_manifest(manifest)


def band_table(occl, grad, amp, epochs) -> pd.DataFrame:
    """Per context and band: share of the maps, top channels, ranks of C3/Cz/C4.

    ``amp`` is the epochs' amplitude spectrum (epochs x channels x frequencies).
    """
    ch = occl.ch_names
    rows = []
    for context in sorted(epochs.metadata["context"].unique()):
        sel = (epochs.metadata["context"] == context).to_numpy()
        mag = np.abs(occl.data[sel]).mean(0)  # channels x bands
        gxa = np.abs(grad.data[sel] * amp[sel]).mean(0)  # channels x frequencies
        for j, band in enumerate(BANDS):
            lo, hi = BANDS[band]
            order = list(np.argsort(-mag[:, j]))
            in_band = (grad.freqs >= lo) & (grad.freqs < hi)
            ranks = {
                f"rank_{c}": order.index(ch.index(c)) + 1 for c in CENTRAL if c in ch
            }
            signed = {
                f"signed_{c}": occl.data[sel, ch.index(c), j].mean()
                for c in ("C3", "C4")
                if c in ch
            }
            rows.append(
                dict(
                    context=context,
                    band=band,
                    occlusion_share=mag[:, j].sum() / mag.sum(),
                    amplitude_gradient_share=gxa[:, in_band].sum() / gxa.sum(),
                    top_channels=" ".join(ch[i] for i in order[:4]),
                    **ranks,
                    **signed,
                )
            )
    return pd.DataFrame(rows)


def main() -> None:
    """Decode, explain in time and frequency, and summarize where the maps peak."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="motor")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--contrast", choices=list(CONTRASTS), default="left_right")
    parser.add_argument("--runs", choices=list(RUNS), default="all")
    parser.add_argument("--picks", choices=["all", "sensorimotor"], default="all")
    parser.add_argument("--transfer", action="store_true")
    parser.add_argument("--n-seeds", type=int, default=3)
    for key in ("patience", "min_epochs"):  # of --transfer
        parser.add_argument(f"--{key.replace('_', '-')}", type=int,
                            default=TRANSFER_DECODER[key])  # fmt: skip
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--epochs", help="epochs of bench_motor_decoding.py")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = load(args)
    print(epochs, flush=True)
    # without --transfer: ShallowConvNet's defaults, trained for --max-epochs
    params = dict(model="shallow", max_epochs=args.max_epochs, patience=args.max_epochs)
    if args.transfer:  # the benchmark's decoder (eegsal.decoding.TRANSFER_DECODER)
        params = TRANSFER_DECODER | dict(
            max_epochs=args.max_epochs, patience=args.patience,
            min_epochs=args.min_epochs, n_seeds=args.n_seeds,
        )  # fmt: skip
        if args.contrast == "left_right":  # as the benchmark: swap the hemispheres
            symmetry = {"p": 0.5, "labels": {"left": "right"}}  # and the labels
            params["augment"] = params["augment"] | {"channel_symmetry": symmetry}
    result = eegsal.decode(
        epochs, "content", cv=4, device=args.device, seed=0, n_jobs=args.n_jobs,
        **params,
    )  # fmt: skip
    print(result)
    by_context = within_context_scores(result, "context", n_permutations=1000)
    print(by_context.round(3).to_string(index=False))
    by_context.to_csv(out / "within_context.csv", index=False)
    if by_context.iloc[-1]["p"] >= 0.05:
        print(
            "The decoder is at chance once the context is held fixed: its maps "
            "would explain noise, so none are drawn."
        )
        return
    first = str(result.classes[0])

    kw = dict(target="contrast", label=0, device=args.device)  # log-odds of `first`
    ig = eegsal.attribute(
        result, epochs, method="integrated_gradients", n_steps=20, **kw
    )
    extrapolate = "local" if args.picks == "sensorimotor" else "auto"
    fig = ig.plot_topomap(
        [0.75, 1.5, 2.25],
        by="context",
        absolute=True,
        title=f"|Integrated gradients|, log-odds of '{first}'",
        extrapolate=extrapolate,
    )
    fig.savefig(out / "ig_topomap.png", dpi=120)
    # an oscillation's gradient changes sign with its phase: rank by magnitude
    contexts = epochs.metadata["context"].to_numpy()
    mag = np.abs(ig.data).mean(-1)  # epochs x channels
    ig_rank = pd.DataFrame(
        {c: mag[contexts == c].mean(0) for c in np.unique(contexts)}, index=ig.ch_names
    ).rank(ascending=False)
    ig_rank.to_csv(out / "ig_channel_ranks.csv")
    print("rank of |IG| among the channels:")
    print(ig_rank.loc[[c for c in CENTRAL if c in ig.ch_names]].to_string())

    occl = attribute_spectrum(result, epochs, method="band_occlusion", **kw)
    grad = attribute_spectrum(result, epochs, method="amplitude_gradient", **kw)
    amp = np.abs(np.fft.rfft(epochs.get_data(units="uV")))
    table = band_table(occl, grad, amp, epochs)
    table.to_csv(out / "bands.csv", index=False)
    with pd.option_context("display.width", 200):
        print(table.round(3).to_string(index=False))
    mu_beta = table[table["band"].isin(["alpha", "sigma", "beta"])]
    print(mu_beta.groupby("context")["occlusion_share"].sum().round(3).to_string())
    gxa = np.abs(grad.data * amp).mean(0)  # channels x frequencies
    ch = occl.ch_names
    bands = [b for b in ("alpha", "sigma", "beta") if b in BANDS]
    fig = occl.plot_topomap(
        [float(np.mean(BANDS[b])) for b in bands],
        by="context",
        absolute=False,
        window=0.0,
        extrapolate=extrapolate,
        title=f"Band occlusion: change of the log-odds of '{first}'\n"
        "when the band is removed from a channel",
    )
    fig.savefig(out / "band_topomap.png", dpi=120)
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name in ("C3", "C4", "Cz", "Oz"):
        if name in ch:
            ax.plot(grad.freqs, gxa[ch.index(name)], label=name)
    ax.set(
        xlim=(0, 40),
        xlabel="frequency (Hz)",
        ylabel="|amplitude gradient x amplitude| (a.u.)",
        title="Which frequencies the decoder reads, per channel",
    )
    ax.legend(frameon=False)
    fig.savefig(out / "spectrum.png", dpi=120)
    print(
        f"wrote {out}/within_context.csv, bands.csv, ig_channel_ranks.csv, "
        "ig_topomap.png, "
        "band_topomap.png, spectrum.png"
    )


if __name__ == "__main__":
    main()
