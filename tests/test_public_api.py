import subprocess
import sys

import pytest

import eegsal

DESIGN_NAMES_SO_FAR = {
    "simulate",
    "decode",
    "attribute",
    "Attributions",
    "DecodingResult",
    "read_attributions",
    "stats",
    "load_manifest",
    "evaluation",
}


def test_public_surface_exposes_design_names():
    assert DESIGN_NAMES_SO_FAR <= set(eegsal.__all__)
    for name in eegsal.__all__:
        assert getattr(eegsal, name) is not None
    assert callable(eegsal.decode) and callable(eegsal.attribute)
    assert callable(eegsal.simulate.simulate_sleep_study)
    assert callable(eegsal.simulate.simulate_night)


def _loaded_after(module: str, names) -> list[str]:
    """Import ``module`` in a fresh interpreter; which of ``names`` it loaded."""
    code = (
        f"import sys, {module}; "
        f"print(','.join(n for n in {sorted(names)!r} if n in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return [n for n in out.stdout.strip().split(",") if n]


@pytest.mark.parametrize("module", ["eegsal", "eegsal.stats", "eegsal.evaluation"])
def test_import_does_not_load_torch(module):
    # torch and skorch are imported by the functions that run networks
    assert _loaded_after(module, ["torch", "skorch"]) == []


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        eegsal.nope  # noqa: B018


def test_docstrings_are_filled_and_present():
    import inspect

    from eegsal import data, evaluation, guidance, models, stats
    from eegsal.attribution import container, io, methods

    modules = [eegsal.simulate, eegsal.decoding, models, data, container, io, methods]
    modules += [stats, evaluation, guidance]
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj)
            assert doc, f"{module.__name__}.{name} has no docstring"
            assert "%(" not in doc, f"{module.__name__}.{name}: unfilled placeholder"
            if inspect.isfunction(obj) and inspect.signature(obj).parameters:
                assert "Parameters\n----------" in doc, f"{name}: no Parameters"


def test_the_version_is_defined_once():
    from importlib.metadata import version
    from pathlib import Path

    import yaml

    import eegsal

    assert version("eegsal") == eegsal.__version__  # the build reads _version.py
    root = Path(__file__).parents[1]
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert str(cff["version"]) == eegsal.__version__
    assert (root / "eegsal" / "py.typed").is_file()
    assert "BSD 3-Clause" in (root / "LICENSE").read_text()


@pytest.mark.parametrize(
    "module", ["eegsal.decoding.networks", "eegsal.models", "eegsal.data"]
)
def test_low_modules_do_not_import_the_high_ones(module):
    # networks, models and data sit below what explains or tests a decoder:
    # importing them must not bring in attribution, guidance, stats or evaluation
    high = ["attribution", "guidance", "stats", "evaluation"]
    high = [f"eegsal.{name}" for name in high]
    assert _loaded_after(module, high) == []


def test_the_training_objects_are_public_estimator_like_classes():
    from sklearn.base import BaseEstimator

    import eegsal.guidance
    from eegsal.guidance import Distillation, Guidance

    for cls in (Guidance, Distillation):
        assert cls.__name__ in eegsal.guidance.__all__
        assert issubclass(cls, BaseEstimator)
        doc = cls.__doc__
        assert "Parameters\n    ----------" in doc and "Examples\n    --------" in doc
        # every parameter is documented
        for name in cls._get_param_names():
            assert f"\n    {name} : " in doc, f"{cls.__name__}.{name} undocumented"


def test_localize_events_lives_with_the_attributions():
    from eegsal.attribution.events import localize_events
    from eegsal.guidance import localize_events as public

    assert public is localize_events
    assert "%(" not in localize_events.__doc__
