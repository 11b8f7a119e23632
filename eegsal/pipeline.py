"""Studies run end to end from a YAML config, stage by stage, resumable.

A study config names the data (a dataset manifest, or the simulator), the
decoder, the attribution methods, the evaluation and the statistics;
:func:`run_study` runs each stage and writes one output folder::

    OUT/
      config.yaml               the config as run (defaults filled in)
      stages.json               the hash of each finished stage
      epochs/epochs-epo.fif     the epochs in float64 (split in -epo-1.fif... parts when
                                large; and truth.json for simulated data)
      decoding/TARGET/          the content decoder (DecodingResult.save)
      decoding/CONTEXT/         the context decoder (when asked)
      attributions/METHOD.h5    maps of every epoch (eegsal.read_attributions)
      tables/*.csv              scores, verdict, faithfulness, statistics
      figures/*.png, *.svg      every figure, in both formats
      report.html               the HTML report (mne.Report)
      summary.txt               the verdict and key numbers, in words

A stage is skipped when the hash of its settings and of the stages it reads
is the one recorded in ``stages.json`` and its files exist; so a rerun
after a crash, or after a change of settings, redoes only what it must.
Every file is written atomically (temporary file, then rename), and a stage
is recorded only once all its files are written. Data from a manifest is
loaded lazily (``load_manifest(..., preload=False)``) and copied one part at
a time; epochs files and maps over 1 GiB are read lazily by the later stages
(decoding and attribution read them batch by batch, the mixed model block by
block; the cluster test holds the binned maps in memory).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from eegsal import __version__
from eegsal._docs import fill_doc
from eegsal._io import atomic_path
from eegsal._logging import logger, verbose
from eegsal._study import ConfigError
from eegsal._study import Study as _Study
from eegsal.data.manifest import _load_yaml, _mapping, _unknown

__all__ = ["DEFAULT_STUDY", "ConfigError", "read_config", "run_demo", "run_study"]


#: The default study (``eegsal demo``; the same as ``analyses/demo_study.yaml``).
DEFAULT_STUDY: dict[str, Any] = {
    "name": "Simulated sleep study: dream content or sleep stage?",
    "data": {
        "simulate": {
            "n_subjects": 8,
            "n_epochs": 60,
            "scenario": "content",
            "effect_size": 0.8,
            "seed": 0,
        }
    },
    "decode": {
        "target": "content",
        "context": "stage",
        "groups": "subject",
        "model": "eegnet",
        "cv": 4,
        "seed": 0,
        "context_decoder": True,
        "params": {"max_epochs": 12, "patience": 12, "batch_size": 32, "lr": 0.003},
    },
    "attribute": {
        "methods": ["saliency", "integrated_gradients"],
        "target": "logit",
        "label": 0,
        "params": {"integrated_gradients": {"n_steps": 12}},
    },
    "evaluate": {
        "n_epochs": 48,
        "faithfulness": {"n_steps": 10, "patch": [1, 10], "perturbation": "zeros"},
        "randomization": {"n_epochs": 12},
    },
    "stats": {
        "method": "integrated_gradients",
        "formula": None,
        "absolute": False,
        "bin": 0.1,
        "n_permutations": 100,
        "within_permutations": 1000,
        "alpha": 0.05,
    },
    "report": {"title": None},
}

_SECTIONS = {
    "name": None,
    "data": {"simulate", "manifest", "root"},
    "decode": set(DEFAULT_STUDY["decode"]),
    "attribute": set(DEFAULT_STUDY["attribute"]),
    "evaluate": set(DEFAULT_STUDY["evaluate"]),
    "stats": set(DEFAULT_STUDY["stats"]),
    "report": set(DEFAULT_STUDY["report"]),
}


def read_config(config: str | os.PathLike | dict) -> dict:
    """Read and check a study config; fill in the defaults.

    Parameters
    ----------
    config : path-like | dict
        A YAML file (read with ``yaml.safe_load``) or the same as a dict. Every
        section is optional; missing entries take the values of
        :data:`DEFAULT_STUDY`. A ``data.manifest`` path is relative to the
        config file.

    Returns
    -------
    config : dict
        The complete config, ``data.manifest`` made absolute.
    """
    raw, origin, path = _load_yaml(config, "study config", ConfigError)
    base = Path.cwd() if path is None else path.resolve().parent
    _unknown(raw, _SECTIONS, "", origin, ConfigError)
    cfg = copy.deepcopy(DEFAULT_STUDY)
    cfg["name"] = str(raw.get("name") or cfg["name"])
    for section, allowed in _SECTIONS.items():
        if section == "name" or section not in raw:
            continue
        given = _mapping(raw[section], section, origin, ConfigError)
        _unknown(given, allowed, f"{section}.", origin, ConfigError)
        if section == "data":
            cfg["data"] = {}
        cfg[section].update(given)
    data = cfg["data"]
    if ("simulate" in data) == ("manifest" in data):
        raise ConfigError(
            f"{origin}: data: give either 'simulate' (simulator parameters) or "
            "'manifest' (a dataset manifest file), not both or neither."
        )
    if "manifest" in data:
        data["manifest"] = str((base / str(data["manifest"])).resolve())
        if data.get("root") is not None:
            data["root"] = str((base / str(data["root"])).resolve())
    methods = cfg["attribute"]["methods"]
    if isinstance(methods, str):
        cfg["attribute"]["methods"] = methods = [methods]
    if not methods:
        raise ConfigError(f"{origin}: attribute.methods: name at least one method.")
    from eegsal.attribution.methods import METHODS

    for m in methods:
        if m not in METHODS:
            raise ConfigError(
                f"{origin}: attribute.methods: unknown method {m!r}; "
                f"available: {', '.join(METHODS)}."
            )
    stats = cfg["stats"]
    given = (raw.get("stats") or {}).get("method")
    if given is None and stats["method"] not in methods:  # the default is absent
        stats["method"] = methods[0]
    if stats["method"] not in methods:
        raise ConfigError(
            f"{origin}: stats.method: {stats['method']!r} is not one of "
            f"attribute.methods {methods}."
        )
    dec = cfg["decode"]
    if stats["formula"] is None:
        ctx = dec["context"]
        stats["formula"] = (
            f"{dec['target']} * C({ctx}, Sum)" if ctx else str(dec["target"])
        )
    return cfg


def _hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class _Stages:
    """Run stages whose settings changed; record each once its files exist."""

    def __init__(self, out: Path, force: bool):
        self.out, self.file = out, out / "stages.json"
        self.done = {}
        if self.file.exists() and not force:
            self.done = json.loads(self.file.read_text())
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def _record(self) -> None:
        with atomic_path(self.file) as tmp:
            tmp.write_text(json.dumps(self.done, indent=2, sort_keys=True))

    def run(self, name: str, key: str, outputs: list[str], fn: Callable) -> str:
        if self.done.get(name) == key and all((self.out / o).exists() for o in outputs):
            logger.info("[%s] unchanged: skipped", name)
            self.skipped.append(name)
            return key
        if self.done.pop(name, None) is not None:
            self._record()
        logger.info("[%s] running", name)
        t0 = time.perf_counter()
        fn()
        missing = [o for o in outputs if not (self.out / o).exists()]
        if missing:  # a bug, not bad input: say which files
            raise RuntimeError(f"stage {name} did not write {missing}.")
        self.done[name] = key
        self._record()
        self.ran.append(name)
        logger.info("[%s] done in %.1f s", name, time.perf_counter() - t0)
        return key


@fill_doc
@verbose
def run_study(
    config: str | os.PathLike | dict,
    out_dir: str | os.PathLike | None = None,
    *,
    device: str = "auto",
    force: bool = False,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
) -> dict[str, Path]:
    """Run a study: epochs, decoding, attribution, evaluation, statistics, report.

    Parameters
    ----------
    config : path-like | dict
        A study config (see :func:`read_config` and ``analyses/demo_study.yaml``).
    out_dir : path-like | None
        Output folder; None uses the config file's name without its suffix
        (``study.yaml`` -> ``study/``), or ``eegsal-study`` for a dict.
    device : str
        ``'auto'`` (a GPU when present), ``'cpu'`` or ``'cuda'``; not part
        of the stage hashes.
    force : bool
        Rerun every stage, whatever ``stages.json`` says.
    %(n_jobs)s
        Tasks are the decoder's folds and the cluster test's permutations.
    %(verbose)s

    Returns
    -------
    files : dict of str to pathlib.Path
        ``out_dir``, ``report`` and ``summary`` (the verdict table), plus
        ``ran`` and ``skipped``: the stages run and skipped (as lists).
    """
    cfg = read_config(config)
    if out_dir is None:
        out_dir = (
            Path(config).with_suffix("")
            if not isinstance(config, dict)
            else Path("eegsal-study")
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    stages = _Stages(out, force)
    study = _Study(cfg, out, device, n_jobs)
    keys: dict[str, str] = {}
    base = {"eegsal": __version__}

    data_key = dict(cfg["data"], **base)
    if "manifest" in cfg["data"]:
        data_key["manifest_sha"] = _file_hash(cfg["data"]["manifest"])
    keys["epochs"] = stages.run(
        "epochs", _hash(data_key), study.epochs_outputs(), study.make_epochs
    )
    dec = cfg["decode"]
    keys["decode"] = stages.run(
        "decode",
        _hash([dec, keys["epochs"]]),
        study.decode_outputs(),
        study.decode,
    )
    if dec["context"] and dec["context_decoder"]:
        keys["decode_context"] = stages.run(
            "decode_context",
            _hash([dec, keys["epochs"]]),
            [f"decoding/{dec['context']}/config.json"],
            study.decode_context,
        )
    att = cfg["attribute"]
    for m in att["methods"]:
        keys[f"attribute:{m}"] = stages.run(
            f"attribute:{m}",
            _hash(
                [
                    m,
                    att["target"],
                    att["label"],
                    att["params"].get(m, {}),
                    keys["decode"],
                ]
            ),
            study.attribute_outputs(m),
            lambda m=m: study.attribute(m),
        )
    if dec["context"]:
        keys["confound"] = stages.run(
            "confound",
            _hash(
                [
                    cfg["stats"]["within_permutations"],
                    cfg["stats"]["alpha"],
                    keys["decode"],
                    keys.get("decode_context"),
                ]
            ),
            study.confound_outputs(),
            study.confound,
        )
    if "decode_context" in keys:
        m0 = att["methods"][0]
        keys["similarity"] = stages.run(
            "similarity",
            _hash([keys["decode_context"], keys[f"attribute:{m0}"], att["params"]]),
            study.similarity_outputs(),
            study.similarity,
        )
    attr_keys = [keys[f"attribute:{m}"] for m in att["methods"]]
    keys["evaluate"] = stages.run(
        "evaluate",
        _hash([cfg["evaluate"], attr_keys]),
        study.evaluate_outputs(),
        study.evaluate,
    )
    keys["stats"] = stages.run(
        "stats",
        _hash([cfg["stats"], keys[f"attribute:{cfg['stats']['method']}"]]),
        study.stats_outputs(),
        study.stats,
    )

    def report():
        from eegsal.report import make_report

        make_report(out)

    stages.run(
        "report",
        _hash([cfg["name"], cfg["report"], keys]),
        ["report.html", "summary.txt"],
        report,
    )
    logger.info(
        "Study written to %s (%d stages run, %d unchanged)",
        out,
        len(stages.ran),
        len(stages.skipped),
    )
    return {
        "out_dir": out,
        "report": out / "report.html",
        "summary": out / "summary.txt",
        "ran": stages.ran,
        "skipped": stages.skipped,
    }


@fill_doc
@verbose
def run_demo(
    out_dir: str | os.PathLike = "eegsal-demo",
    *,
    n_subjects: int = 8,
    n_epochs: int = 60,
    scenario: str = "content",
    cv: int = 4,
    max_epochs: int = 12,
    device: str = "auto",
    seed: int = 0,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
) -> dict[str, Path]:
    """Run the default study (:data:`DEFAULT_STUDY`) on simulated sleep EEG.

    Parameters
    ----------
    out_dir : path-like
        Output folder.
    n_subjects : int
        Simulated subjects.
    n_epochs : int
        Epochs per subject.
    scenario : str
        Simulator scenario (``'content'``, ``'confound'``, ``'both'``, ``'null'``).
    cv : int
        Number of GroupKFold folds.
    max_epochs : int
        Training epochs per fold.
    device : str
        ``'auto'``, ``'cpu'`` or ``'cuda'``.
    seed : int
        Seed of the simulation and of training.
    %(n_jobs)s
    %(verbose)s

    Returns
    -------
    files : dict
        As :func:`run_study`.
    """
    cfg = copy.deepcopy(DEFAULT_STUDY)
    cfg["data"]["simulate"].update(
        n_subjects=n_subjects, n_epochs=n_epochs, scenario=scenario, seed=seed
    )
    cfg["decode"].update(cv=cv, seed=seed)
    cfg["decode"]["params"].update(max_epochs=max_epochs, patience=max_epochs)
    return run_study(cfg, out_dir, device=device, n_jobs=n_jobs)
