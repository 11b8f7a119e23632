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
      attributions/split_METHOD.h5  with stats.split: the maps the mixed model
                                tests, of half the subjects, explained by a
                                decoder trained on the other half
      tables/*.csv              scores, verdict, faithfulness, statistics
      figures/*.png, *.svg      every figure, in both formats
      report.html               the HTML report (mne.Report)
      summary.txt               the verdict and key numbers, in words

Each stage is declared once, in :mod:`eegsal._stages` (its name, what its
hash is computed from, its files and its body). A stage is skipped when the
hash of its settings and of the stages it reads is the one recorded in
``stages.json`` and its files exist; so a rerun
after a crash, or after a change of settings, redoes only what it must.
Every file is written atomically (temporary file, then rename), and a stage
is recorded only once all its files are written; an interrupted stage is
therefore redone. The epochs stage's key holds, for a manifest, each file's
size and modification time (:func:`eegsal.data.cache.cache_key`). One run
writes to a folder at a time (the lock ``OUT/.eegsal.lock``), and it first
removes the temporary files a killed run left there. Data from a manifest is
loaded lazily (``load_manifest(..., preload=False)``) and copied one part at
a time; epochs files and maps over 1 GiB are read lazily by the later stages
(decoding and attribution read them batch by batch, the mixed model block by
block; the cluster test holds the binned maps in memory).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from collections.abc import Callable
from numbers import Integral
from pathlib import Path

import yaml

from eegsal._config import DEFAULT_STUDY, ConfigError, read_config
from eegsal._docs import fill_doc
from eegsal._io import atomic_path, lock_folder, remove_temporaries
from eegsal._logging import logger, verbose
from eegsal._stages import plan
from eegsal._study import Study as _Study

__all__ = [
    "DEFAULT_STUDY",
    "ConfigError",
    "calibrate",
    "read_config",
    "run_demo",
    "run_study",
]


class _Stages:
    """Run stages whose settings changed; record each once its files exist."""

    def __init__(self, out: Path, force: bool):
        self.out, self.file = out, out / "stages.json"
        self.done = {}
        if self.file.exists() and not force:
            self.done = self._read()
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def _read(self) -> dict[str, str]:
        problem = None
        try:
            done = json.loads(self.file.read_text(encoding="utf-8"))
        except ValueError as err:
            problem = f"not valid JSON ({err})"
        else:
            if not isinstance(done, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in done.items()
            ):
                problem = "not a record of stage names and keys"
        if problem:
            raise ValueError(
                f"{self.file}: {problem}; it was damaged or edited. Rerun with "
                "--force (run_study(..., force=True)) to redo every stage."
            )
        return done

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
    seed: int | None = None,
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
    seed : int | None
        One seed for the whole study, in place of the config's: ``decode.seed``
        (training, the epochs drawn for the evaluation, the permutations) and
        the ``seed`` of any ``attribute.params`` method and of
        ``evaluate.faithfulness`` that the config sets. The simulator's data
        seed (``data.simulate.seed``) is kept: the data stay the same. The
        seed is written to ``OUT/config.yaml`` and enters the stage hashes,
        so a rerun with another seed redoes the stages it changes. None
        (default) keeps the config's seeds.
    %(verbose)s

    Returns
    -------
    files : dict of str to pathlib.Path
        ``out_dir``, ``report`` and ``summary`` (the verdict table), plus
        ``ran`` and ``skipped``: the stages run and skipped (as lists).
    """
    cfg = read_config(config)
    if seed is not None:
        _set_seed(cfg, seed)
    if out_dir is None:
        out_dir = (
            Path(config).with_suffix("")
            if not isinstance(config, dict)
            else Path("eegsal-study")
        )
    out = Path(out_dir)
    with lock_folder(out):  # one writer at a time
        remove_temporaries(out)  # of a run that was killed
        text = yaml.safe_dump(cfg, sort_keys=False)
        config_file = out / "config.yaml"
        if not config_file.is_file() or config_file.read_text() != text:
            with atomic_path(config_file) as tmp:
                tmp.write_text(text)
        stages = _Stages(out, force)
        _run_stages(cfg, stages, _Study(cfg, out, device, n_jobs))
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


def _set_seed(cfg: dict, seed: int) -> None:
    """Put one seed in every seed of a read config, but the simulator's."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"seed: {seed!r} is not allowed; expected an integer >= 0.")
    seed = int(seed)
    cfg["decode"]["seed"] = seed
    for params in cfg["attribute"]["params"].values():
        if isinstance(params, dict) and "seed" in params:
            params["seed"] = seed
    for section in ("evaluate", "stats"):
        for key, value in cfg[section].items():
            if key == "seed":
                cfg[section][key] = seed
            elif isinstance(value, dict) and "seed" in value:
                value["seed"] = seed


def _run_stages(cfg: dict, stages: _Stages, study: _Study) -> None:
    """Run (or skip) every stage the config has, in order (``_stages.STAGES``)."""
    for stage, name, args, key in plan(cfg):
        body = functools.partial(stage.run, study, *args)
        stages.run(name, key, stage.outputs(study, *args), body)


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


@fill_doc
@verbose
def calibrate(
    config: str | os.PathLike | dict,
    out_dir: str | os.PathLike | None = None,
    *,
    n: int = 50,
    amplitudes: tuple[float, ...] | list[float] = (0.25, 0.5, 1.0, 2.0),
    channels: list[str] | None = None,
    window: tuple[float, float] | None = None,
    waveform: str = "burst",
    frequency: float = 10.0,
    band: tuple[float, float] = (8.0, 12.0),
    rate_by: dict[str, float] | None = None,
    power: float = 0.8,
    maps: bool = False,
    device: str = "auto",
    seed: int = 0,
    n_jobs: int | None = None,
    verbose: bool | str | int | None = None,
) -> dict[str, Path]:
    """Calibrate a study on its own data: false-claim rate and power.

    The study's data (the config's ``data`` section: your recordings from a
    manifest, or the simulator) are labelled ``n`` times at random, and each
    time the study's own decoder (``decode``: model, folds, training) and
    verdict (:func:`eegsal.stats.content_verdict` with ``stats``:
    permutations, alpha) run on them:

    * amplitude 0: the labels follow the context only (drawn from
      ``rate_by``, by default the data's own P(content | context)), and the
      data are left exactly as recorded; a content claim is a false claim,
      and should happen in at most 5 % of draws;
    * each of ``amplitudes``: the same labels, and a known signal
      (:func:`eegsal.simulate.plant_content`) of that size in the positive
      epochs; the share of claims is the power.

    So the question "could this study, as designed (subjects, epochs,
    model), detect an effect of this size, without claiming one that is not
    there?" is answered on the user's own EEG, with its own noise and
    confounds. Files written to ``out_dir``::

        tables/calibration_draws.csv    one row per draw and amplitude
        tables/calibration_summary.csv  claim rate per amplitude (and route)
        figures/calibration.png, .svg   claim rate against amplitude
        calibration.txt                 the conclusion in words

    Parameters
    ----------
    config : path-like | dict
        A study config (:func:`read_config`); ``decode.context`` must be set.
    out_dir : path-like | None
        Output folder; None: the config's name with ``-calibration``
        (``study.yaml`` -> ``study-calibration/``).
    n : int
        Draws per amplitude (the same ``n`` label draws at every amplitude).
        The 95 % interval of a rate is about +-0.06 at 50 draws, +-0.2 at 10.
    amplitudes : sequence of float
        Planted amplitudes (> 0), in SD of each channel (RMS of the signal
        over the window; see :func:`eegsal.simulate.plant_content`).
    channels : list of str | None
        Channels of the planted signal; None: the parieto-occipital ones
        present (:data:`eegsal.simulate.HOT_ZONE`).
    window : tuple of float | None
        Start and end (s, in the epochs' times) of the signal; None: the
        middle half of the epoch.
    waveform : str
        ``'burst'``, ``'erp'`` or ``'band_power'``.
    frequency : float
        Frequency of the burst (Hz).
    band : tuple of float
        Band of ``'band_power'`` (Hz).
    rate_by : dict of str to float | None
        P(positive label) per context value; None: the data's own (when the
        decoded column has two classes), else 0.5.
    power : float
        The power the sentence asks for (default 80 %).
    maps : bool
        Also run the study's maps test on each draw (its stats stage: the
        ``stats.method`` attributions of the explained class, ``stats.bin``,
        the mixed model ``stats.formula`` and the cluster test of the content
        coefficient with ``stats.n_permutations``): the ``maps`` route of the
        tables. Slower. With ``stats.split`` the maps are those of the half
        of the subjects that a decoder trained on the other half explains
        (drawn anew in each draw); without it, the cross-validated decoder's.
    %(device)s
    seed : int
        Seed of the label draws and plants (the decoder's seed is
        ``decode.seed`` + the draw).
    %(n_jobs)s
        Tasks are the draws (each decodes with one job).
    %(verbose)s

    Returns
    -------
    files : dict of str to pathlib.Path
        ``out_dir``, ``draws``, ``summary``, ``figure`` (the PNG) and
        ``text``; and ``sentence`` (str), the conclusion.

    Examples
    --------
    >>> eegsal.pipeline.calibrate("study.yaml", n=50,
    ...                           amplitudes=[0.25, 0.5, 1])  # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd
    from joblib import Parallel, delayed

    from eegsal import _calibrate as cal
    from eegsal._check import check_option, check_range
    from eegsal._logging import progress
    from eegsal._study import _save_figure, _write_csv
    from eegsal.simulate import WAVEFORMS

    check_range(n, "n", 1, integer=True)
    check_option("waveform", waveform, WAVEFORMS)
    check_range(power, "power", 0.0, 1.0, low_closed=False)
    amplitudes = sorted({float(check_range(a, "amplitudes", 0.0, low_closed=False))
                         for a in amplitudes})  # fmt: skip
    if not amplitudes:
        raise ValueError("amplitudes: give at least one amplitude > 0 (SD).")
    cfg = read_config(config)
    if out_dir is None:
        out_dir = (
            Path(config).with_suffix("").with_name(Path(config).stem + "-calibration")
            if not isinstance(config, dict)
            else Path("eegsal-calibration")
        )
    out = Path(out_dir)
    epochs = cal.load_epochs(cfg)
    plan = cal.make_plan(
        cfg, epochs, channels=channels, window=window, waveform=waveform,
        frequency=frequency, band=band, rate_by=rate_by, seed=seed, maps=maps,
    )  # fmt: skip
    levels = [0.0, *amplitudes]
    cal.log_plan(plan, n, levels)
    tasks = [(d, a) for d in range(n) for a in levels]
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(cal.one_draw)(plan, epochs, d, a, device) for d, a in tasks
    )
    rows = list(progress(jobs, desc="Calibration draws", total=len(tasks)))
    draws = pd.DataFrame(rows, columns=cal.DRAW_COLUMNS)
    summary = cal.summarize(draws, cfg["stats"]["alpha"])
    meta = epochs.metadata
    dec = cfg["decode"]
    n_subjects = meta[dec["groups"]].nunique()
    design = (
        f"Study as designed: {n_subjects} subjects, {len(epochs)} epochs "
        f"({np.round(len(epochs) / n_subjects):g} per subject), {dec['model']} "
        f"with cv={dec['cv']} and "
        f"{dec['params'].get('max_epochs', 'default')} training epochs; {n} draws "
        "per amplitude"
    )
    text = cal.sentence(summary, design, plan, power)
    tables = out / "tables"
    _write_csv(draws, tables / "calibration_draws.csv")
    _write_csv(summary, tables / "calibration_summary.csv")
    fig = cal.plot_calibration(
        summary,
        power,
        title=f"{cfg['name']}\nfalse claims (amplitude 0) and power, {n} draws each",
    )
    _save_figure(fig, out / "figures" / "calibration")
    with atomic_path(out / "calibration.txt") as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    logger.info("%s", text)
    return {
        "out_dir": out,
        "draws": tables / "calibration_draws.csv",
        "summary": tables / "calibration_summary.csv",
        "figure": out / "figures" / "calibration.png",
        "text": out / "calibration.txt",
        "sentence": text,
    }
