"""Studies run end to end from a YAML config, stage by stage, resumable.

A study config names the data (a dataset manifest, or the simulator), the
decoder, the attribution methods, the evaluation and the statistics;
:func:`run_study` runs each stage and writes one output folder::

    OUT/
      config.yaml               the config as run (defaults filled in)
      stages.json               the hash of each finished stage
      epochs/epochs-epo.fif     the epochs (and truth.json for simulated data)
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
is recorded only once all its files are written.
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

import numpy as np
import pandas as pd
import yaml

from eegsal import __version__
from eegsal._docs import fill_doc
from eegsal._io import atomic_path
from eegsal._logging import logger, verbose
from eegsal.data.manifest import _mapping, _unknown

__all__ = ["DEFAULT_STUDY", "ConfigError", "read_config", "run_demo", "run_study"]


class ConfigError(ValueError):
    """A study config that cannot be run; the message names file and field."""


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
    if isinstance(config, dict):
        raw, origin, base = copy.deepcopy(config), "config", Path.cwd()
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"Study config {path} does not exist.")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        raw = _mapping(raw, "top level", str(path), ConfigError)
        origin, base = str(path), path.resolve().parent
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


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _save_figure(fig, stem: Path) -> None:
    """Write ``stem.png`` and ``stem.svg`` atomically, then close the figure."""
    import matplotlib.pyplot as plt

    stem.parent.mkdir(parents=True, exist_ok=True)
    for ext, kw in ((".png", dict(dpi=110)), (".svg", {})):
        with atomic_path(stem.with_suffix(ext)) as tmp:
            fig.savefig(tmp, format=ext[1:], **kw)
    plt.close(fig)


def _figures(*names: str) -> list[str]:
    return [f"figures/{n}{ext}" for n in names for ext in (".png", ".svg")]


def _bin_times(attr, width: float):
    """Average the maps in time bins of ``width`` s, each labelled by its start."""
    from eegsal.attribution import Attributions

    k = max(1, int(round(width * attr.info["sfreq"])))
    n, c, t = attr.data.shape
    t_used = (t // k) * k
    data = np.asarray(attr.data)[..., :t_used].reshape(n, c, t // k, k).mean(-1)
    times = attr.times[:t_used:k]  # on the new sample grid, as MNE needs
    info = attr.info.copy()
    with info._unlock():  # one sample per bin now
        info["sfreq"] = attr.info["sfreq"] / k
        info["lowpass"] = min(info["lowpass"], info["sfreq"] / 2)
    return Attributions(
        data,
        info,
        times,
        metadata=attr.metadata,
        method=attr.method,
        target=attr.target,
        **attr.params,
    )


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


class _Study:
    """The stages of one study; each reads what it needs from the output folder."""

    def __init__(self, cfg: dict, out: Path, device: str, n_jobs: int | None):
        self.cfg, self.out, self.device, self.n_jobs = cfg, out, device, n_jobs
        self._cache: dict[str, Any] = {}
        dec = cfg["decode"]
        self.target, self.context = dec["target"], dec["context"]
        self.simulated = "simulate" in cfg["data"]

    # -- readers (cached within a run) ------------------------------------
    def _epochs(self):
        if "epochs" not in self._cache:
            import mne

            fname = self.out / "epochs" / "epochs-epo.fif"
            self._cache["epochs"] = mne.read_epochs(fname, verbose=False)
        return self._cache["epochs"]

    def _result(self, which: str):
        key = f"result:{which}"
        if key not in self._cache:
            from eegsal.decoding import DecodingResult

            self._cache[key] = DecodingResult.load(self.out / "decoding" / which)
        return self._cache[key]

    def _attr(self, name: str):
        key = f"attr:{name}"
        if key not in self._cache:
            from eegsal.attribution import read_attributions

            path = self.out / "attributions" / f"{name}.h5"
            self._cache[key] = read_attributions(path)
        return self._cache[key]

    def _truth(self) -> dict | None:
        path = self.out / "epochs" / "truth.json"
        if not path.exists():
            return None
        truth = json.loads(path.read_text())
        truth["content_mask"] = np.asarray(truth["content_mask"], bool)
        return truth

    # -- epochs -----------------------------------------------------------
    def epochs_outputs(self) -> list[str]:
        files = ["epochs/epochs-epo.fif", "tables/epochs_summary.csv"]
        return files + (["epochs/truth.json"] if self.simulated else [])

    def make_epochs(self) -> None:
        data = self.cfg["data"]
        truth = None
        if self.simulated:
            from eegsal.simulate import simulate_sleep_study

            epochs, truth = simulate_sleep_study(**data["simulate"], verbose=False)
        else:
            from eegsal.data import load_manifest

            epochs = load_manifest(data["manifest"], data.get("root"))
        meta = epochs.metadata
        for col in (self.target, self.context, self.cfg["decode"]["groups"]):
            if col and col not in meta:
                raise ConfigError(
                    f"decode: the epochs' metadata has no column {col!r}; it has "
                    f"{list(meta.columns)}."
                )
        (self.out / "epochs").mkdir(exist_ok=True)
        cols = [
            c for c in (self.cfg["decode"]["groups"], self.context, self.target) if c
        ]
        counts = meta.groupby(cols).size().rename("n_epochs").reset_index()
        _write_csv(counts, self.out / "tables" / "epochs_summary.csv")
        if truth is not None:
            record = {
                "content_channels": list(truth.content_channels),
                "content_window": list(truth.content_window),
                "content_mask": truth.content_mask.astype(int).tolist(),
                "labels": list(truth.params.get("labels", ())),
                "scenario": truth.params.get("scenario"),
            }
            with atomic_path(self.out / "epochs" / "truth.json") as tmp:
                tmp.write_text(json.dumps(record))
        with atomic_path(self.out / "epochs" / "epochs-epo.fif") as tmp:
            # float64: a resumed run reads exactly what the first run computed on
            epochs.save(tmp, fmt="double", overwrite=True, verbose=False)
        self._cache["epochs"] = epochs

    # -- decoding ---------------------------------------------------------
    def decode_outputs(self) -> list[str]:
        files = [
            f"decoding/{self.target}/config.json",
            "tables/scores.csv",
            "tables/predictions.csv",
        ]
        if self.context:
            files.append(f"tables/scores_by_{self.context}.csv")
        return files

    def _decode(self, target: str):
        from eegsal.decoding import decode

        dec = self.cfg["decode"]
        result = decode(
            self._epochs(),
            target,
            model=dec["model"],
            groups=dec["groups"],
            cv=dec["cv"],
            device=self.device,
            seed=dec["seed"],
            n_jobs=self.n_jobs,
            **dec["params"],
        )
        result.save(self.out / "decoding" / target, overwrite=True)
        self._cache[f"result:{target}"] = result
        return result

    def decode(self) -> None:
        result = self._decode(self.target)
        tables = self.out / "tables"
        _write_csv(result.scores, tables / "scores.csv")
        _write_csv(result.predictions, tables / "predictions.csv")
        if self.context:
            by = result.score_by(self.context)
            _write_csv(by, tables / f"scores_by_{self.context}.csv")

    def decode_context(self) -> None:
        self._decode(self.context)

    # -- attribution ------------------------------------------------------
    def attribute_outputs(self, method: str) -> list[str]:
        return [
            f"attributions/{method}.h5",
            *_figures(f"topomap_{method}", f"image_{method}"),
        ]

    def _attribute(self, result, method: str, name: str):
        from eegsal.attribution import attribute

        att = self.cfg["attribute"]
        path = self.out / "attributions" / f"{name}.h5"
        path.parent.mkdir(exist_ok=True)
        attr = attribute(
            result,
            self._epochs(),
            method=method,
            target=att["target"],
            label=att["label"],
            device=self.device,
            out=path,
            overwrite=True,
            **att["params"].get(method, {}),
        )
        attr.load_data()
        self._cache[f"attr:{name}"] = attr
        return attr

    def attribute(self, method: str) -> None:
        attr = self._attribute(self._result(self.target), method, method)
        truth = self._truth()
        mark = None
        if truth is not None and truth["content_mask"].any():
            mark = truth["content_channels"]
        by = [self.context, self.target] if self.context else self.target
        times = np.linspace(attr.times[0], attr.times[-1], 5)[1:-1]
        fig = attr.plot_topomap(
            times,
            by=by,
            absolute=True,
            mark=mark,
            title=f"{method}: mean |attribution|\nof the {self.target} decoder, "
            f"per {'condition' if self.context else self.target}"
            + ("\n(white: simulated content channels)" if mark else ""),
        )
        _save_figure(fig, self.out / "figures" / f"topomap_{method}")
        mask = truth["content_mask"] if mark else None
        fig = attr.plot_image(
            by=self.target,
            absolute=True,
            mask=mask,
            title=f"{method}: mean |attribution| per {self.target}"
            + (" (outlined: simulated content)" if mark else ""),
        )
        _save_figure(fig, self.out / "figures" / f"image_{method}")

    # -- content versus context ------------------------------------------
    def confound_outputs(self) -> list[str]:
        c = self.context
        return [
            f"tables/within_{c}.csv",
            f"tables/within_{c}_null.csv",
            "tables/subject_scores.csv",
            "tables/verdict.csv",
            *_figures(f"within_{c}", "subject_scores"),
        ]

    def confound(self) -> None:
        from eegsal.stats import content_verdict, subject_scores, within_context_scores
        from eegsal.viz import plot_subject_scores, plot_within_context

        st, dec = self.cfg["stats"], self.cfg["decode"]
        result, c, g = self._result(self.target), self.context, dec["groups"]
        within, null = within_context_scores(
            result,
            c,
            groups=g,
            n_permutations=st["within_permutations"],
            return_null=True,
        )
        subjects = subject_scores(result, c, groups=g)
        ctx_result = self._result(c) if dec["context_decoder"] else None
        verdict = content_verdict(
            result,
            c,
            groups=g,
            alpha=st["alpha"],
            context_result=ctx_result,
            within=within,
        )
        tables = self.out / "tables"
        _write_csv(within, tables / f"within_{c}.csv")
        _write_csv(null, tables / f"within_{c}_null.csv")
        _write_csv(subjects, tables / "subject_scores.csv")
        _write_csv(verdict, tables / "verdict.csv")
        _save_figure(
            plot_within_context(within, null, c), self.out / "figures" / f"within_{c}"
        )
        _save_figure(
            plot_subject_scores(subjects, groups=g, context=c),
            self.out / "figures" / "subject_scores",
        )

    def similarity_outputs(self) -> list[str]:
        m0 = self.cfg["attribute"]["methods"][0]
        return [
            f"attributions/{self.context}_decoder_{m0}.h5",
            "tables/similarity.csv",
            *_figures("similarity"),
        ]

    def similarity(self) -> None:
        from eegsal.stats import explanation_similarity
        from eegsal.viz import plot_similarity

        m0 = self.cfg["attribute"]["methods"][0]
        other = self._attribute(
            self._result(self.context), m0, f"{self.context}_decoder_{m0}"
        )
        g = self.cfg["decode"]["groups"]
        table = explanation_similarity(self._attr(m0), other, by=g)
        _write_csv(table, self.out / "tables" / "similarity.csv")
        fig = plot_similarity(table, by=g, names=(self.target, self.context))
        _save_figure(fig, self.out / "figures" / "similarity")

    # -- evaluation -------------------------------------------------------
    def evaluate_outputs(self) -> list[str]:
        files = [
            "tables/faithfulness_auc.csv",
            "tables/faithfulness_curves.csv",
            "tables/randomization.csv",
            *_figures("faithfulness", "randomization"),
        ]
        return files + (["tables/localization.csv"] if self.simulated else [])

    def _subset(self, n: int) -> np.ndarray:
        """Epochs to evaluate on: ``n`` drawn at random (seeded), in order."""
        total = len(self._epochs())
        rng = np.random.default_rng(self.cfg["decode"]["seed"])
        return np.sort(rng.choice(total, min(n, total), replace=False))

    def _sub_result(self, idx):
        """Restrict the content decoder's result to the epochs ``idx``."""
        from eegsal.decoding import DecodingResult

        res = self._result(self.target)
        pred = res.predictions.iloc[idx].reset_index(drop=True)
        return DecodingResult(pred, res.scores, res.models, res.classes, res.config)

    def evaluate(self) -> None:
        from eegsal.evaluation import faithfulness, localization, randomization_test
        from eegsal.viz import plot_faithfulness, plot_randomization

        ev, att = self.cfg["evaluate"], self.cfg["attribute"]
        idx = self._subset(ev["n_epochs"])
        epochs, result = self._epochs()[idx], self._sub_result(idx)
        curves, aucs, tables, rand = {}, [], [], {}
        for m in att["methods"]:
            attr = self._attr(m)[idx]
            curves[m] = []
            for kind in ("deletion", "insertion"):
                fc = faithfulness(
                    result,
                    epochs,
                    attr,
                    kind=kind,
                    device=self.device,
                    **ev["faithfulness"],
                )
                curves[m].append(fc)
                aucs.append(fc.auc.assign(method=m, kind=kind))
                tables.append(fc.curves.assign(method=m, kind=kind))
        ridx = idx[: ev["randomization"]["n_epochs"]]
        for m in att["methods"]:
            rand[m] = randomization_test(
                self._sub_result(ridx),
                self._epochs()[ridx],
                method=m,
                target=att["target"],
                label=att["label"],
                **att["params"].get(m, {}),
            ).assign(method=m)
        out = self.out / "tables"
        _write_csv(pd.concat(aucs, ignore_index=True), out / "faithfulness_auc.csv")
        _write_csv(
            pd.concat(tables, ignore_index=True), out / "faithfulness_curves.csv"
        )
        _write_csv(
            pd.concat(rand.values(), ignore_index=True), out / "randomization.csv"
        )
        _save_figure(plot_faithfulness(curves), self.out / "figures" / "faithfulness")
        _save_figure(plot_randomization(rand), self.out / "figures" / "randomization")
        truth = self._truth()
        if truth is not None:
            rows = []
            if truth["content_mask"].any():
                from types import SimpleNamespace

                gt = SimpleNamespace(
                    content_mask=truth["content_mask"],
                    params={"labels": truth["labels"]},
                )
                for m in att["methods"]:
                    table = localization(self._attr(m), gt)
                    rows.append(table.assign(method=m))
            table = (
                pd.concat(rows, ignore_index=True)
                if rows
                else pd.DataFrame(
                    columns=["method", "mass_accuracy", "rank_accuracy", "auroc"]
                )
            )
            _write_csv(table, out / "localization.csv")

    # -- statistics -------------------------------------------------------
    def stats_outputs(self) -> list[str]:
        return ["tables/lmm.csv", "tables/clusters.csv", *_figures("lmm")]

    def stats(self) -> None:
        from eegsal.stats import fit_lmm

        st = self.cfg["stats"]
        attr = self._attr(st["method"])
        if st["bin"]:
            attr = _bin_times(attr, st["bin"])
        kw = dict(groups=self.cfg["decode"]["groups"], absolute=st["absolute"])
        try:
            lmm = fit_lmm(attr, st["formula"], **kw)
        except ValueError as err:
            if "rank deficient" not in str(err) or "*" not in st["formula"]:
                raise
            # some context holds one content only: no interaction can be fitted
            additive = st["formula"].replace("*", "+")
            logger.warning("%s; fitting %s instead.", err, additive)
            lmm = fit_lmm(attr, additive, **kw)
        name = next(
            (n for n in lmm.names if n.startswith(f"{self.target}[")), lmm.names[1]
        )
        test = lmm.cluster_test(
            name, n_permutations=st["n_permutations"], seed=self.cfg["decode"]["seed"]
        )
        lmm.save(self.out / "tables" / "lmm.csv", overwrite=True)
        _write_csv(
            test.clusters.assign(coefficient=name), self.out / "tables" / "clusters.csv"
        )
        fig = lmm.plot_image(
            name,
            mask=test.mask(st["alpha"]),
            title=f"{st['method']} maps ~ {lmm.formula} + (1 | "
            f"{self.cfg['decode']['groups']})\nWald t of {name}; outlined: "
            f"clusters p < {st['alpha']:g} ({st['n_permutations']} permutations)",
        )
        _save_figure(fig, self.out / "figures" / "lmm")


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
