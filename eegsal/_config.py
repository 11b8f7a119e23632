"""A study config: its defaults, and the check of every field when it is read.

Each field of :data:`DEFAULT_STUDY` has one check in :data:`_SCHEMA` (type,
range or choices); the training, attribution and faithfulness settings are
checked against the signatures of the functions they are passed to
(:class:`eegsal.EEGDecoder`, :func:`eegsal.attribute`,
:func:`eegsal.evaluation.faithfulness`), so that a typo or an impossible
value is refused before any data are read, in one line naming the file, the
field, the value, what is allowed and, for a near miss, what was meant.
The checks of single values, and :class:`ConfigError`, are defined in
:mod:`eegsal._config_checks`.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eegsal._config_checks import (
    Check,
    ConfigError,
    _choice,
    _cv,
    _fail,
    _flag,
    _integer,
    _is_int,
    _is_number,
    _label,
    _names,
    _names_in,
    _number,
    _pair,
    _text,
)
from eegsal._config_io import check_known, did_you_mean, load_yaml, mapping

__all__ = ["DEFAULT_STUDY", "ConfigError", "read_config"]


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
        "explain": None,
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
        "covariates": None,
        "n_bins": 4,
        "alpha": 0.05,
        "split": False,
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

_models = _names_in("eegsal.models", "MODELS")
_methods = _names_in("eegsal.attribution.methods", "METHODS")
_targets = _names_in("eegsal.attribution.methods", "TARGETS")
_perturbations = _names_in("eegsal.evaluation.faithfulness", "PERTURBATIONS")


#: Ranges and choices of the parameters passed on to eegsal's functions, by name
#: (a name means the same in every function that takes it).
_PARAMETERS: dict[str, Check] = {
    "max_epochs": _integer(1),
    "batch_size": _integer(1),
    "patience": _integer(1),
    "min_epochs": _integer(0),
    "lr": _number(0, open_low=True, example="0.001"),
    "weight_decay": _number(0),
    "valid_size": _number(0, 1, open_low=True, open_high=True),
    "lr_schedule": _choice([None, "cosine"]),
    "class_weight": _choice([None, "balanced"]),
    "n_steps": _integer(1),
    "n_samples": _integer(1),
    "n_random": _integer(1),
    "noise": _number(0),
    "window": _pair(1),
    "patch": _pair(1),
    "perturbation": _choice(_perturbations),
    "threshold": _number(0, 1),
    "seed": _integer(0, none=True),
    "n_subjects": _integer(2),
    "n_epochs": _integer(1),
    "sfreq": _number(0, open_low=True),
    "epoch_length": _number(0, open_low=True),
}

_SIMPLE = {
    "int": _is_int,
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dict": lambda v: isinstance(v, dict),
    "None": lambda v: v is None,
}


def _annotation_check(annotation: str) -> Callable[[Any], bool] | None:
    """Test a YAML value against a signature's annotation (None: any value)."""
    tests = []
    for part in re.split(r"\s*\|\s*(?![^\[]*\])", annotation.strip()):
        head = part.split("[", 1)[0]
        if head in _SIMPLE:
            tests.append(_SIMPLE[head])
        elif head in ("tuple", "list", "np.ndarray", "numpy.ndarray"):
            tests.append(lambda v: isinstance(v, list | tuple))
        elif head in ("np.random.Generator", "mne.channels.DigMontage"):
            continue  # not expressible in YAML
        else:
            return None
    return lambda v: any(t(v) for t in tests)


def _params(module: str, name: str, given: dict[str, str]) -> Check:
    """Keyword arguments of ``module.name``, checked against its signature.

    ``given`` maps the parameters the study sets itself to where it takes them.
    """

    def check(value, where, origin):
        value = mapping(value, where, origin, ConfigError)
        func = getattr(importlib.import_module(module), name)
        sig = inspect.signature(func)
        allowed = {
            p.name: p
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY
            or (p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty)
        }
        allowed = {k: p for k, p in allowed.items() if k not in given}
        allowed.pop("verbose", None)
        # keywords a function still takes for a release (it warns when they are
        # used): old name -> (new parameter, its parameter), checked as those
        deprecated = getattr(func, "_deprecated_params", {})
        for key, val in value.items():
            if key in given:
                raise _fail(origin, f"{where}.{key}", f"set by {given[key]}, not here.")
            if key in deprecated and key not in allowed:
                owner, new = deprecated[key]
                if owner in _PARAMETERS:
                    place = f"{where}.{owner}.{new}"
                    try:
                        _PARAMETERS[owner]({new: val}, f"{where}.{owner}", origin)
                    except ConfigError as err:
                        problem = str(err)[len(f"{origin}: {place}: ") :]
                        raise _fail(origin, f"{where}.{key}", f"{problem} (deprecated "
                                    f"name of {place})") from None  # fmt: skip
                continue
            if key not in allowed:
                raise _fail(
                    origin,
                    f"{where}.{key}",
                    f"not a parameter of {name}; allowed: "
                    f"{', '.join(sorted(allowed))}.{did_you_mean(key, allowed)}",
                )
            if key in _PARAMETERS:
                _PARAMETERS[key](val, f"{where}.{key}", origin)
                continue
            annotation = allowed[key].annotation
            test = (
                _annotation_check(annotation) if isinstance(annotation, str) else None
            )
            if test is not None and not test(val):
                raise _fail(
                    origin,
                    f"{where}.{key}",
                    f"{val!r} is not allowed; {name} takes {annotation}.",
                )

    return check


#: EEGDecoder(guidance=Guidance(...)): a mapping of its parameters (decode builds it)
_PARAMETERS["guidance"] = _params("eegsal.guidance", "Guidance", {})


_DECODE_GIVEN = {
    "model": "decode.model",
    "seed": "decode.seed",
    "device": "the --device option",
}
_ATTRIBUTE_GIVEN = {
    "method": "attribute.methods",
    "target": "attribute.target",
    "label": "attribute.label",
    "device": "the --device option",
    "out": "the study (attributions/METHOD.h5)",
    "overwrite": "the study",
}

#: One check per field; a dict is a mapping whose keys are checked in turn.
_SCHEMA: dict[str, Any] = {
    "data": {
        "simulate": _params("eegsal.simulate", "simulate_sleep_study", {}),
        "manifest": _text(),
        "root": _text(none=True),
    },
    "decode": {
        "target": _text(),
        "context": _text(none=True),
        "groups": _text(),
        "model": _choice(_models),
        "cv": _cv,
        "seed": _integer(0),
        "context_decoder": _flag,
        "params": _params("eegsal.decoding", "EEGDecoder", _DECODE_GIVEN),
    },
    "attribute": {
        "target": _choice(_targets),
        "label": _label,
        "explain": _text(none=True),
    },
    "evaluate": {
        "n_epochs": _integer(1),
        "faithfulness": _params(
            "eegsal.evaluation",
            "faithfulness",
            {"kind": "the study (both kinds)", "device": "the --device option"},
        ),
        "randomization": {"n_epochs": _integer(1)},
    },
    "stats": {
        "formula": _text(none=True),
        "absolute": _flag,
        "bin": _number(0, none=True, example="0.1 (s; 0 or null: no bins)"),
        "n_permutations": _integer(1),
        "within_permutations": _integer(1),
        "covariates": _names,
        "n_bins": _integer(1),
        "alpha": _number(0, 1, open_low=True, open_high=True, example="0.05"),
        "split": _flag,
    },
    "report": {"title": _text(none=True)},
}


def _walk(value, schema, where: str, origin: str, depth: int = 0) -> None:
    """Check ``value`` against ``schema``; below the sections, mappings are closed."""
    if not isinstance(schema, dict):
        schema(value, where, origin)
        return
    value = mapping(value, where.rstrip("."), origin, ConfigError)
    if depth >= 2:  # the sections' own keys are checked by read_config
        check_known(value, schema, where, origin, ConfigError)
    for key, check in schema.items():
        if key in value:
            sub = f"{where}{key}" + ("." if isinstance(check, dict) else "")
            _walk(value[key], check, sub, origin, depth + 1)


def _simulated(cfg: dict, name: str):
    """Return a simulator parameter: the config's value, else its default."""
    from eegsal.simulate import simulate_sleep_study

    given = cfg["data"]["simulate"]
    if name in given:
        return given[name]
    return inspect.signature(simulate_sleep_study).parameters[name].default


def _epoch_length(cfg: dict) -> float | None:
    """Length of the epochs (s), when the config tells it without reading data."""
    data = cfg["data"]
    if "simulate" in data:
        return float(_simulated(cfg, "epoch_length"))
    from eegsal.data.manifest import read_manifest

    m = read_manifest(data["manifest"], data.get("root"))
    if m.source != "files":
        return None
    if m.epochs["mode"] == "scored":
        return float(m.epochs["length"])
    return float(m.epochs["tmax"]) - float(m.epochs["tmin"])


def _check_with_data_settings(cfg: dict, origin: str) -> None:
    """Check what needs the data's settings: folds, classes, epoch length."""
    dec, st = cfg["decode"], cfg["stats"]
    if "simulate" in cfg["data"]:
        n_subjects = _simulated(cfg, "n_subjects")
        if _is_int(dec["cv"]) and dec["cv"] > n_subjects:
            raise _fail(
                origin,
                "decode.cv",
                f"{dec['cv']} folds but data.simulate has {n_subjects} subjects; "
                f"expected 2 to {n_subjects} folds, or 'loso'.",
            )
        classes = {
            "content": _simulated(cfg, "labels"),
            "stage": _simulated(cfg, "stages"),
        }.get(dec["target"])
        label = cfg["attribute"]["label"]
        explain = cfg["attribute"]["explain"]
        if classes is not None and explain is not None and explain not in classes:
            names = [str(c) for c in classes]
            raise _fail(
                origin,
                "attribute.explain",
                f"{explain!r} is not a class of {dec['target']!r}; expected one "
                f"of {', '.join(map(repr, names))}.{did_you_mean(explain, names)}",
            )
        if classes is not None and _is_int(label) and label >= len(classes):
            raise _fail(
                origin,
                "attribute.label",
                f"{label!r} is not a class of {dec['target']!r}; expected 'true', "
                f"'predicted' or an index 0 to {len(classes) - 1} "
                f"({', '.join(map(str, classes))}).",
            )
    if st["bin"]:
        length = _epoch_length(cfg)
        if length is not None and st["bin"] >= length:
            raise _fail(
                origin,
                "stats.bin",
                f"{st['bin']!r} s is not shorter than the epochs ({length:g} s); "
                "expected a bin width in (0, "
                f"{length:g}) s, e.g. 0.1, or 0 / null for no bins.",
            )


def read_config(config: str | os.PathLike | dict) -> dict:
    """Read and check a study config; fill in the defaults.

    Parameters
    ----------
    config : path-like | dict
        A YAML file (read with ``yaml.safe_load``) or the same as a dict. Every
        section is optional; missing entries take the values of
        :data:`DEFAULT_STUDY`. A ``data.manifest`` path is relative to the
        config file. Every value is checked (type, range, choices; training,
        attribution and faithfulness settings against the functions that take
        them) before anything runs.

    Returns
    -------
    config : dict
        The complete config, ``data.manifest`` made absolute.
    """
    raw, origin, path = load_yaml(config, "study config", ConfigError)
    base = Path.cwd() if path is None else path.resolve().parent
    check_known(raw, _SECTIONS, "", origin, ConfigError)
    cfg = copy.deepcopy(DEFAULT_STUDY)
    name = raw.get("name")
    if name is not None and not isinstance(name, str | int | float):
        raise _fail(origin, "name", f"expected a text, got {name!r}.")
    cfg["name"] = str(name or cfg["name"])
    for section, allowed in _SECTIONS.items():
        if section == "name" or section not in raw:
            continue
        given = mapping(raw[section], section, origin, ConfigError)
        check_known(given, allowed, f"{section}.", origin, ConfigError)
        if section == "data":
            cfg["data"] = {}
        cfg[section].update(given)
    data = cfg["data"]
    if ("simulate" in data) == ("manifest" in data):
        raise ConfigError(
            f"{origin}: data: give either 'simulate' (simulator parameters) or "
            "'manifest' (a dataset manifest file), not both or neither."
        )
    _walk(cfg, _SCHEMA, "", origin)
    if "manifest" in data:
        data["manifest"] = str((base / str(data["manifest"])).resolve())
        if data.get("root") is not None:
            data["root"] = str((base / str(data["root"])).resolve())
    methods = cfg["attribute"]["methods"]
    if isinstance(methods, str):
        cfg["attribute"]["methods"] = methods = [methods]
    if not isinstance(methods, list) or not methods:
        raise ConfigError(
            f"{origin}: attribute.methods: name at least one method, got {methods!r}."
        )
    known = _methods()
    for m in methods:
        if m not in known:
            raise ConfigError(
                f"{origin}: attribute.methods: unknown method {m!r}; "
                f"available: {', '.join(known)}.{did_you_mean(m, known)}"
            )
    params = mapping(
        cfg["attribute"]["params"], "attribute.params", origin, ConfigError
    )
    for m, given in params.items():
        if m not in known:
            raise _fail(
                origin,
                f"attribute.params.{m}",
                f"not a method; available: {', '.join(known)}.{did_you_mean(m, known)}",
            )
        check = _params("eegsal.attribution", "attribute", _ATTRIBUTE_GIVEN)
        check(given, f"attribute.params.{m}", origin)
    stats = cfg["stats"]
    given = (raw.get("stats") or {}).get("method")
    if given is None and stats["method"] not in methods:  # the default is absent
        stats["method"] = methods[0]
    if stats["method"] not in methods:
        raise ConfigError(
            f"{origin}: stats.method: {stats['method']!r} is not one of "
            f"attribute.methods {methods}.{did_you_mean(stats['method'], methods)}"
        )
    if cfg["attribute"]["explain"] is not None and "label" in (
        raw.get("attribute") or {}
    ):
        raise _fail(
            origin,
            "attribute.explain",
            "give either 'explain' (a class by name) or 'label' (an index, "
            "'true' or 'predicted'), not both.",
        )
    dec = cfg["decode"]
    if stats["covariates"] and not dec["context"]:
        raise _fail(
            origin,
            "stats.covariates",
            "covariates refine the context the content is tested beyond; set "
            "decode.context (e.g. stage) too, or leave covariates out.",
        )
    if stats["split"] and cfg["attribute"]["label"] == "true":
        raise _fail(
            origin,
            "stats.split",
            "the split maps are tested against the labels, which label: true "
            "would also choose the explained output by; explain one class "
            "(attribute.explain or an index as attribute.label), or leave split "
            "out.",
        )
    if stats["formula"] is None:
        ctx = dec["context"]
        stats["formula"] = (
            f"{dec['target']} * C({ctx}, Sum)" if ctx else str(dec["target"])
        )
    _check_with_data_settings(cfg, origin)
    return cfg
