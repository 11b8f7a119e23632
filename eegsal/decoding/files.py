"""A :class:`~eegsal.decoding.DecodingResult` on disk: writing and reading its folder.

The folder holds a JSON config, CSV tables (predictions, scores) and the
models' state dicts (tensors only, read with ``weights_only=True``): no
pickled code. :meth:`DecodingResult.save <eegsal.decoding.DecodingResult.save>`
and :meth:`DecodingResult.load <eegsal.decoding.DecodingResult.load>` call
these functions.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from eegsal._io import atomic_path
from eegsal._logging import logger
from eegsal.decoding.networks import Ensemble, _build_module
from eegsal.models import model_name


def _to_json(value):
    """Arrays (e.g. guidance masks) in a result's config, as nested lists."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_result(result, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write ``result`` to the folder ``path`` (:meth:`DecodingResult.save`).

    Parameters
    ----------
    result : DecodingResult
        The result.
    path : path-like
        Folder to create.
    overwrite : bool
        Replace files of an existing result in ``path``.
    """
    path = Path(path)
    if (path / "config.json").exists() and not overwrite:
        raise FileExistsError(f"{path} holds a result already; pass overwrite=True.")
    path.mkdir(parents=True, exist_ok=True)
    named = [(f"fold-{k}.pt", m) for k, m in enumerate(result.models)]
    if result.refit_model is not None:
        named.append(("refit.pt", result.refit_model))
    if result.alignment is not None:  # one (matrix, offset) per subject
        subjects = sorted(result.alignment)
        named.append(("alignment.pt", {
            "matrix": torch.from_numpy(
                np.stack([result.alignment[s][0] for s in subjects])),
            "offset": torch.from_numpy(
                np.stack([result.alignment[s][1] for s in subjects])),
        }))  # fmt: skip
    for fname, model in named:  # state dicts: tensors only, no pickled code
        state = model if isinstance(model, dict) else model.state_dict()
        with atomic_path(path / fname) as tmp:
            torch.save(state, tmp)
    with atomic_path(path / "predictions.csv") as tmp:
        result.predictions.to_csv(tmp, index=False)
    with atomic_path(path / "scores.csv") as tmp:
        result.scores.to_csv(tmp, index=False)
    config = dict(
        result.config,
        classes=[str(c) for c in result.classes],
        refit=result.refit_model is not None,
        alignment_subjects=None
        if result.alignment is None
        else sorted(result.alignment),
    )
    with atomic_path(path / "config.json") as tmp:  # written last: marks it whole
        Path(tmp).write_text(json.dumps(config, indent=2, default=_to_json))


def read_result(
    cls,
    path: str | os.PathLike,
    *,
    model: type[nn.Module] | Callable[..., nn.Module] | None = None,
):
    """Read a result written by :func:`write_result` (:meth:`DecodingResult.load`).

    Parameters
    ----------
    cls : type
        :class:`~eegsal.decoding.DecodingResult` (or a subclass) to build.
    path : path-like
        The folder.
    model : type | callable | None
        The class or factory of a model given as one; None for registered
        models.

    Returns
    -------
    result : DecodingResult
        The result, with its models rebuilt on the CPU.
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path} holds no saved DecodingResult (no config.json)."
        )
    try:
        config = json.loads((path / "config.json").read_text())
    except ValueError as err:
        raise ValueError(
            f"{path / 'config.json'}: damaged ({err}); decode again."
        ) from None
    classes = np.array(config.pop("classes"))
    custom = bool(config.get("custom_model", False))
    if custom and model is None:
        raise ValueError(
            f"{path} holds the weights of {config['model']}, a model given as a "
            "class or factory; its code is not saved: pass it, "
            f"DecodingResult.load({str(path)!r}, model="
            f"{config['model'].rsplit('.', 1)[-1]})."
        )
    if not custom and model is not None:
        raise ValueError(
            f"{path} holds the registered model {config['model']!r}; load it "
            "without model=."
        )
    spec = model if custom else config["model"]
    if custom and model_name(model) != config["model"]:
        logger.info(
            "Loading the weights of %s into %s", config["model"], model_name(model)
        )

    def build() -> nn.Module:
        return _build_module(
            spec,
            config["n_chans"],
            config["n_times"],
            len(classes),
            config["model_params"],
        )

    def read(fname):
        try:
            state = torch.load(fname, weights_only=True, map_location="cpu")
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ValueError(
                f"{fname}: not a model file eegsal wrote, or damaged ({first}); "
                "decode again."
            ) from None
        return state

    n_seeds = int(config.get("n_seeds", 1))

    def rebuild(fname: str) -> nn.Module:
        module = (
            build() if n_seeds == 1 else Ensemble([build() for _ in range(n_seeds)])
        )
        module.load_state_dict(read(path / fname))
        return module.eval()

    models = [rebuild(f"fold-{k}.pt") for k in range(config["n_folds"])]
    refit_model = rebuild("refit.pt") if config.get("refit") else None
    alignment = None
    subjects = config.pop("alignment_subjects", None)
    if subjects is not None:
        state = read(path / "alignment.pt")
        alignment = {
            s: (state["matrix"][i].numpy(), state["offset"][i].numpy())
            for i, s in enumerate(subjects)
        }
    predictions = pd.read_csv(path / "predictions.csv")
    predictions["y_true"] = predictions["y_true"].astype(str)
    predictions["y_pred"] = predictions["y_pred"].astype(str)
    scores = pd.read_csv(path / "scores.csv")
    return cls(
        predictions,
        scores,
        models,
        classes,
        config,
        model=spec,
        refit_model=refit_model,
        alignment=alignment,
    )
