"""The bodies of a study's stages: what each computes and writes.

Each stage is declared in :mod:`eegsal._stages` (its name, key, files and
this body); :func:`eegsal.pipeline.run_study` runs them in turn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eegsal._config import ConfigError
from eegsal._io import atomic_path
from eegsal._logging import logger
from eegsal.data.cache import save_epochs

__all__ = ["Study"]

#: Epochs files and attribution maps larger than this are read lazily (batch by
#: batch, block by block) instead of into memory.
LAZY_BYTES = 2**30


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


def split_half(groups: pd.Series, name: str, seed: int):
    """Return the one fold of ``stats.split``: half the groups tested, others trained.

    The tested half rounds down (the decoder trains on the larger half); the
    halves are drawn with ``seed``. Used by the study's stats stage and by
    the maps route of its calibration, so that both test the same maps.

    Raises
    ------
    ConfigError
        With fewer than 4 groups.
    """
    from sklearn.model_selection import GroupShuffleSplit

    n_groups = groups.nunique()
    if n_groups < 4:
        raise ConfigError(
            f"stats.split: {n_groups} {name}s; the split trains on half of them "
            f"and tests the others, which needs at least 4: add {name}s, or set "
            "stats.split: false."
        )
    return GroupShuffleSplit(n_splits=1, test_size=n_groups // 2, random_state=seed)


def _fit_or_additive(attr, formula: str, **kw):
    """``fit_lmm``, or the additive model where the interaction cannot be fitted."""
    from eegsal.stats import RankDeficientError, fit_lmm

    try:
        return fit_lmm(attr, formula, **kw)
    except RankDeficientError as err:
        if "*" not in formula:
            raise
        # some context holds one content only: no interaction fits
        additive = formula.replace("*", "+")
        logger.warning("%s; fitting %s instead.", err, additive)
        return fit_lmm(attr, additive, **kw)


def tested_term(lmm, target: str) -> str:
    """Return the coefficient the maps' cluster test is about: ``target``'s."""
    return next((n for n in lmm.names if n.startswith(f"{target}[")), lmm.names[1])


class Study:
    """The stages' bodies for one study; each reads what it needs from the folder."""

    def __init__(self, cfg: dict, out: Path, device: str, n_jobs: int | None):
        self.cfg, self.out, self.device, self.n_jobs = cfg, out, device, n_jobs
        self._cache: dict[str, Any] = {}
        dec = cfg["decode"]
        self.target, self.context = dec["target"], dec["context"]
        self.simulated = "simulate" in cfg["data"]

    # -- readers (cached within a run) ------------------------------------
    def _epochs(self):
        if "epochs" not in self._cache:
            from eegsal.data.cache import read_epochs

            folder = self.out / "epochs"
            size = sum(f.stat().st_size for f in folder.glob("epochs-epo*.fif"))
            self._cache["epochs"] = read_epochs(
                folder / "epochs-epo.fif", preload=size < LAZY_BYTES
            )
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
            small = path.stat().st_size < LAZY_BYTES
            self._cache[key] = read_attributions(path, preload=small)
        return self._cache[key]

    def _truth(self) -> dict | None:
        path = self.out / "epochs" / "truth.json"
        if not path.exists():
            return None
        truth = json.loads(path.read_text())
        truth["content_mask"] = np.asarray(truth["content_mask"], bool)
        return truth

    # -- epochs -----------------------------------------------------------
    def make_epochs(self) -> None:
        data = self.cfg["data"]
        truth = None
        if self.simulated:
            from eegsal.simulate import simulate_sleep_study

            epochs, truth = simulate_sleep_study(**data["simulate"], verbose=False)
        else:
            from eegsal.data import load_manifest

            # read lazily: the study is copied below one part at a time
            epochs = load_manifest(data["manifest"], data.get("root"), preload=False)
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
        # float64: a resumed run reads exactly what the first run computed on
        save_epochs(epochs, self.out / "epochs" / "epochs-epo.fif")
        self._cache.pop("epochs", None)  # read back, lazily when large

    # -- decoding ---------------------------------------------------------
    def _decode(self, target: str, cv=None):
        """Decode ``target`` with the decode section's settings.

        With the config's folds (``cv=None``) the result is saved and cached
        as the study's decoder of ``target``; with other folds it is only
        returned.
        """
        from eegsal.decoding import decode

        dec = self.cfg["decode"]
        result = decode(
            self._epochs(),
            target,
            model=dec["model"],
            groups=dec["groups"],
            cv=dec["cv"] if cv is None else cv,
            device=self.device,
            seed=dec["seed"],
            n_jobs=self.n_jobs,
            **dec["params"],
        )
        if cv is None:
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
    def _class_index(self, which: str, value: str, where: str) -> int:
        """Index of the class ``value`` among the ``which`` decoder's classes."""
        classes = [str(c) for c in self._result(which).classes]
        if str(value) not in classes:
            raise ConfigError(
                f"{where}: {value!r} is not a class of the {which} decoder; its "
                f"classes are {', '.join(map(repr, classes))}."
            )
        return classes.index(str(value))

    def _label(self) -> int | str:
        """Return what the content maps explain: a class index, 'true', 'predicted'."""
        att = self.cfg["attribute"]
        if att.get("explain") is None:
            return att["label"]
        return self._class_index(self.target, att["explain"], "attribute.explain")

    def _compared_classes(self) -> tuple[str, str, float] | None:
        """Return the explained class, its context class and P(class | context).

        None when the maps explain each epoch's own class ('true' or
        'predicted'): the context decoder's maps do the same.
        """
        from eegsal.stats import associated_context

        label = self._label()
        if isinstance(label, str):
            return None
        value = str(self._result(self.target).classes[label])
        meta = self._epochs().metadata
        best, table = associated_context(meta, self.target, self.context, value)
        return value, best, float(table[f"p_{value}"].iloc[0])

    def _attribute(self, result, method: str, name: str, label=None, epochs=None):
        """Explain ``epochs`` (default: all) into ``attributions/NAME.h5``."""
        from eegsal.attribution import attribute

        att = self.cfg["attribute"]
        path = self.out / "attributions" / f"{name}.h5"
        path.parent.mkdir(exist_ok=True)
        attr = attribute(
            result,
            self._epochs() if epochs is None else epochs,
            method=method,
            target=att["target"],
            label=self._label() if label is None else label,
            device=self.device,
            out=path,
            overwrite=True,
            **att["params"].get(method, {}),
        )
        if path.stat().st_size < LAZY_BYTES:
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
    def confound(self) -> None:
        from eegsal.stats import (
            content_verdict,
            context_regression,
            subject_scores,
            within_context_scores,
        )
        from eegsal.viz import plot_subject_scores, plot_within_context

        st, dec = self.cfg["stats"], self.cfg["decode"]
        result, c, g = self._result(self.target), self.context, dec["groups"]
        # continuous context (e.g. delta power): quantile bins within each stage
        kw = dict(groups=g, covariates=st["covariates"], n_bins=st["n_bins"])
        n_perm = st["within_permutations"]
        within, null = within_context_scores(
            result, c, n_permutations=n_perm, return_null=True, **kw
        )
        name = within.columns[0]  # 'stage', or 'stage x delta_power'
        subjects = subject_scores(result, c, **kw)
        tables = self.out / "tables"
        regression = None
        if st["covariates"]:
            regression = context_regression(result, c, n_permutations=n_perm, **kw)
            _write_csv(regression, tables / "regression.csv")
        else:  # a table of an earlier run with covariates would mislead the report
            (tables / "regression.csv").unlink(missing_ok=True)
        ctx_result = self._result(c) if dec["context_decoder"] else None
        verdict = content_verdict(
            result,
            c,
            alpha=st["alpha"],
            context_result=ctx_result,
            within=within,
            regression=regression if regression is not None else False,
            **kw,
        )
        _write_csv(within, tables / f"within_{c}.csv")
        _write_csv(null, tables / f"within_{c}_null.csv")
        _write_csv(subjects, tables / "subject_scores.csv")
        _write_csv(verdict, tables / "verdict.csv")
        _save_figure(
            plot_within_context(within, null, name),
            self.out / "figures" / f"within_{c}",
        )
        _save_figure(
            plot_subject_scores(subjects, groups=g, context=name),
            self.out / "figures" / "subject_scores",
        )

    def similarity(self) -> None:
        from eegsal.stats import explanation_similarity
        from eegsal.viz import plot_similarity

        m0 = self.cfg["attribute"]["methods"][0]
        compared = self._compared_classes()
        label, note = None, {}
        if compared is not None:
            value, best, share = compared
            label = self._class_index(self.context, best, "decode.context")
            note = dict(target_class=value, context_class=best,
                        p_target_given_context=share)  # fmt: skip
            logger.info(
                "Comparing the %s maps of %r with the %s decoder's maps of %r, the "
                "%s with the highest P(%s | %s) = %.2f",
                self.target, value, self.context, best, self.context, value,
                self.context, share,
            )  # fmt: skip
        other = self._attribute(
            self._result(self.context), m0, f"{self.context}_decoder_{m0}", label
        )
        g = self.cfg["decode"]["groups"]
        table = explanation_similarity(self._attr(m0), other, by=g).assign(**note)
        _write_csv(table, self.out / "tables" / "similarity.csv")
        fig = plot_similarity(table, by=g, names=(self.target, self.context))
        _save_figure(fig, self.out / "figures" / "similarity")

    # -- evaluation -------------------------------------------------------
    def _subset(self, n: int) -> np.ndarray:
        """Epochs to evaluate on: ``n`` drawn at random (seeded), in order."""
        total = len(self._epochs())
        rng = np.random.default_rng(self.cfg["decode"]["seed"])
        return np.sort(rng.choice(total, min(n, total), replace=False))

    def _sub_result(self, idx):
        """Restrict the content decoder's result to the epochs ``idx``."""
        return self._result(self.target).take(idx)

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
                label=self._label(),
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
    def stats(self) -> None:
        from eegsal.stats import RankDeficientError

        st = self.cfg["stats"]
        split = st.get("split", False)
        attr = self._split_attr(st["method"]) if split else self._attr(st["method"])
        if st["bin"]:
            attr = _bin_times(attr, st["bin"])
        kw = dict(groups=self.cfg["decode"]["groups"], absolute=st["absolute"])
        try:
            lmm = _fit_or_additive(attr, st["formula"], **kw)
        except RankDeficientError as err:
            if not split:
                raise
            raise RankDeficientError(
                f"{err} With stats.split, only the tested half of the "
                f"{self.cfg['decode']['groups']}s enters the model: another "
                "decode.seed draws other halves."
            ) from None
        name = tested_term(lmm, self.target)
        # the run's GPU, if any, computes the permuted maps too (same null to
        # floating-point error); anything else runs them with NumPy
        gpu = str(self.device) == "auto" or str(self.device).startswith("cuda")
        test = lmm.cluster_test(
            name,
            n_permutations=st["n_permutations"],
            seed=self.cfg["decode"]["seed"],
            n_jobs=self.n_jobs,  # the same null for any n_jobs
            device=self.device if gpu else None,
        )
        lmm.save(self.out / "tables" / "lmm.csv", overwrite=True)
        _write_csv(
            test.clusters.assign(coefficient=name), self.out / "tables" / "clusters.csv"
        )
        groups = self.cfg["decode"]["groups"]
        tested = (
            f"; the {attr.metadata[groups].nunique()} {groups}s a decoder trained "
            "on the others explains"
            if split
            else ""
        )
        fig = lmm.plot_image(
            name,
            mask=test.mask(st["alpha"]),
            title=f"{st['method']} maps ~ {lmm.formula} + (1 | "
            f"{groups}){tested}\nWald t of {name}; outlined: "
            f"clusters p < {st['alpha']:g} ({st['n_permutations']} permutations)",
        )
        _save_figure(fig, self.out / "figures" / "lmm")

    def _split_attr(self, method: str):
        """Explain half the subjects by a decoder trained on the others.

        The maps of cross-validated decoders depend on the tested labels (each
        fold learned from the subjects the other folds explain), and on them
        the cluster test was liberal in calibration; here no tested label
        shaped a tested map.
        The halves are drawn with the decode seed; the decoder is trained with
        the decode section's settings (its early stopping on its own half).
        """
        dec = self.cfg["decode"]
        epochs = self._epochs()
        half = split_half(epochs.metadata[dec["groups"]], dec["groups"], dec["seed"])
        result = self._decode(self.target, cv=half)
        tested = np.flatnonzero(result.predictions["fold"].to_numpy() >= 0)
        return self._attribute(
            result.take(tested), method, f"split_{method}", epochs=epochs[tested]
        )

    # -- report -----------------------------------------------------------
    def report(self) -> None:
        from eegsal.report import make_report

        make_report(self.out)
