"""The stages of a study, each declared once: its name, key, files and body.

A :class:`Stage` holds all that :func:`eegsal.pipeline.run_study` needs to
run it or skip it: what its key is the hash of (``inputs``: the config
fields it reads and the keys of the stages whose files it reads), the files
it writes (``outputs``) and the body that writes them (``run``, a method of
:class:`eegsal._study.Study`), and whether the config has it (``when``) or
has one per item (``each``: one attribution stage per method). :data:`STAGES`
lists them in the order they run; :func:`plan` turns a config into the
stages it has, each with its name and key.

The keys are those ``stages.json`` records: a stage is skipped when its key
is the recorded one and its files exist. A key changes when one of its
inputs does, and so, through the upstream keys among its inputs, when a
stage it reads from reruns; keys must stay the same from one version of this
file to the next (``tests/test_pipeline.py`` holds those of a study), or a
finished study would be redone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eegsal import __version__

__all__ = ["STAGES", "Stage", "plan", "stage_keys"]


@dataclass(frozen=True)
class Stage:
    """One stage of a study, declared once.

    Attributes
    ----------
    name : str
        Its name in ``stages.json`` and in the log; with ``each``, the prefix
        of one stage per item, named ``NAME:ITEM`` (``attribute:saliency``).
    inputs : callable
        ``inputs(cfg, keys[, item])``: what the key is the hash of, as a
        JSON-able value: the config fields the stage reads, and from
        ``keys`` (by name, the keys of the stages before it) those of the
        stages whose files it reads.
    outputs : callable
        ``outputs(study[, item])``: the files the stage writes, relative to
        the output folder (``study.out``); it is skipped only when they
        all exist.
    run : callable
        ``run(study[, item])``: the body, which writes the outputs.
    when : callable | None
        ``when(cfg)``: whether the config has the stage; None: always.
    each : callable | None
        ``each(cfg)``: the items of a stage run once per item (the attribution
        methods); None: a single stage.
    """

    name: str
    inputs: Callable[..., Any]
    outputs: Callable[..., list[str]]
    run: Callable[..., None]
    when: Callable[[dict], bool] | None = None
    each: Callable[[dict], list[str]] | None = None

    def instances(self, cfg: dict) -> list[tuple[str, tuple]]:
        """Return the names this stage has in ``cfg``, with their item.

        Parameters
        ----------
        cfg : dict
            A study config (:func:`eegsal.pipeline.read_config`).

        Returns
        -------
        instances : list of (str, tuple)
            Each name, and the extra arguments of ``inputs``, ``outputs`` and
            ``run`` for it: ``(item,)`` with ``each``, else ``()``. Empty
            when ``when(cfg)`` is false.
        """
        if self.when is not None and not self.when(cfg):
            return []
        if self.each is None:
            return [(self.name, ())]
        return [(f"{self.name}:{item}", (item,)) for item in self.each(cfg)]


def _hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _data_inputs(cfg: dict) -> dict:
    """Return the epochs stage's inputs: the data settings and every file read.

    For a manifest, :func:`eegsal.data.cache.cache_key` (the key of the
    epochs cache) enters: the manifest's settings and each recording's,
    hypnogram's and events file's path, size and modification time, so that
    a replaced recording reruns the study.
    """
    data = dict(cfg["data"], eegsal=__version__)
    if "manifest" in data:
        from eegsal.data.cache import cache_key
        from eegsal.data.loading import expand_recordings
        from eegsal.data.manifest import read_manifest

        m = read_manifest(data["manifest"], data.get("root"))
        data["files"] = cache_key(
            m, expand_recordings(m) if m.source == "files" else []
        )
    return data


def _figures(*names: str) -> list[str]:
    return [f"figures/{n}{ext}" for n in names for ext in (".png", ".svg")]


def _has_context(cfg: dict) -> bool:
    return bool(cfg["decode"]["context"])


def _has_context_decoder(cfg: dict) -> bool:
    return bool(cfg["decode"]["context"] and cfg["decode"]["context_decoder"])


def _first_method(cfg: dict) -> str:
    """Return the method whose maps the two decoders' similarity compares."""
    return cfg["attribute"]["methods"][0]


#: Every stage, in the order it runs. Bodies are looked up on the study when
#: run (``lambda s: s.decode()``), so a subclass or a patched method is used.
STAGES: tuple[Stage, ...] = (
    Stage(
        "epochs",
        inputs=lambda cfg, keys: _data_inputs(cfg),
        outputs=lambda s: [
            "epochs/epochs-epo.fif",
            "tables/epochs_summary.csv",
            *(["epochs/truth.json"] if s.simulated else []),
        ],
        run=lambda s: s.make_epochs(),
    ),
    Stage(
        "decode",
        inputs=lambda cfg, keys: [cfg["decode"], keys["epochs"]],
        outputs=lambda s: [
            f"decoding/{s.target}/config.json",
            "tables/scores.csv",
            "tables/predictions.csv",
            *([f"tables/scores_by_{s.context}.csv"] if s.context else []),
        ],
        run=lambda s: s.decode(),
    ),
    Stage(
        "decode_context",
        when=_has_context_decoder,
        inputs=lambda cfg, keys: [cfg["decode"], keys["epochs"]],
        outputs=lambda s: [f"decoding/{s.context}/config.json"],
        run=lambda s: s.decode_context(),
    ),
    Stage(
        "attribute",
        each=lambda cfg: cfg["attribute"]["methods"],
        inputs=lambda cfg, keys, method: [
            method,
            cfg["attribute"]["target"],
            cfg["attribute"]["label"],
            *(
                [cfg["attribute"]["explain"]]
                if cfg["attribute"].get("explain") is not None
                else []
            ),
            cfg["attribute"]["params"].get(method, {}),
            keys["decode"],
        ],
        outputs=lambda s, method: [
            f"attributions/{method}.h5",
            *_figures(f"topomap_{method}", f"image_{method}"),
        ],
        run=lambda s, method: s.attribute(method),
    ),
    Stage(
        "confound",
        when=_has_context,
        inputs=lambda cfg, keys: [
            cfg["stats"]["within_permutations"],
            cfg["stats"]["alpha"],
            *(
                [cfg["stats"]["covariates"], cfg["stats"]["n_bins"]]
                if cfg["stats"].get("covariates")
                else []
            ),
            keys["decode"],
            keys.get("decode_context"),  # None without a context decoder
        ],
        outputs=lambda s: [
            f"tables/within_{s.context}.csv",
            f"tables/within_{s.context}_null.csv",
            "tables/subject_scores.csv",
            "tables/verdict.csv",
            *(["tables/regression.csv"] if s.cfg["stats"]["covariates"] else []),
            *_figures(f"within_{s.context}", "subject_scores"),
        ],
        run=lambda s: s.confound(),
    ),
    Stage(
        "similarity",
        when=_has_context_decoder,
        inputs=lambda cfg, keys: [
            keys["decode_context"],
            keys[f"attribute:{_first_method(cfg)}"],
            cfg["attribute"]["params"],
            cfg["attribute"].get("explain"),
        ],
        outputs=lambda s: [
            f"attributions/{s.context}_decoder_{_first_method(s.cfg)}.h5",
            "tables/similarity.csv",
            *_figures("similarity"),
        ],
        run=lambda s: s.similarity(),
    ),
    Stage(
        "evaluate",
        inputs=lambda cfg, keys: [
            cfg["evaluate"],
            [keys[f"attribute:{m}"] for m in cfg["attribute"]["methods"]],
        ],
        outputs=lambda s: [
            "tables/faithfulness_auc.csv",
            "tables/faithfulness_curves.csv",
            "tables/randomization.csv",
            *_figures("faithfulness", "randomization"),
            *(["tables/localization.csv"] if s.simulated else []),
        ],
        run=lambda s: s.evaluate(),
    ),
    Stage(
        "stats",
        inputs=lambda cfg, keys: [
            # without split, the key of earlier versions (which had no split)
            {k: v for k, v in cfg["stats"].items() if k != "split" or v},
            keys[f"attribute:{cfg['stats']['method']}"],
            # the split decoder is trained with the decode section's settings
            *([keys["decode"]] if cfg["stats"].get("split") else []),
        ],
        outputs=lambda s: [
            "tables/lmm.csv",
            "tables/clusters.csv",
            *(
                [f"attributions/split_{s.cfg['stats']['method']}.h5"]
                if s.cfg["stats"].get("split")
                else []
            ),
            *_figures("lmm"),
        ],
        run=lambda s: s.stats(),
    ),
    Stage(
        "report",
        # the report reads every stage's files: every key so far enters
        inputs=lambda cfg, keys: [cfg["name"], cfg["report"], keys],
        outputs=lambda s: ["report.html", "summary.txt"],
        run=lambda s: s.report(),
    ),
)


def plan(cfg: dict) -> Iterator[tuple[Stage, str, tuple, str]]:
    """Yield the stages of a study in order, each with its name, item and key.

    Parameters
    ----------
    cfg : dict
        A study config (:func:`eegsal.pipeline.read_config`).

    Yields
    ------
    stage : Stage
        The declaration.
    name : str
        The stage's name (``attribute:saliency`` for one of several).
    args : tuple
        The extra arguments of its ``outputs`` and ``run``: ``(item,)`` or
        ``()``.
    key : str
        Its key: the hash of its inputs, which ``stages.json`` records.
    """
    keys: dict[str, str] = {}
    for stage in STAGES:
        for name, args in stage.instances(cfg):
            keys[name] = _hash(stage.inputs(cfg, keys, *args))
            yield stage, name, args, keys[name]


def stage_keys(cfg: dict) -> dict[str, str]:
    """Return the key of each stage of ``cfg``, by name, in the order they run.

    Parameters
    ----------
    cfg : dict
        A study config (:func:`eegsal.pipeline.read_config`).

    Returns
    -------
    keys : dict of str to str
        What ``stages.json`` holds once the study has run.
    """
    return {name: key for _, name, _, key in plan(cfg)}
