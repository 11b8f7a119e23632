"""Study configs: every field is checked when the config is read, in one line."""

import time

import pytest
import yaml

from eegsal.cli import main
from eegsal.pipeline import DEFAULT_STUDY, read_config

SIMULATE = {"simulate": {"n_subjects": 4, "n_epochs": 20, "epoch_length": 2.0}}

#: case: (config sections, substring of the one-line message)
CASES = {
    "alpha above 1": ({"stats": {"alpha": 2}}, "stats.alpha: 2 is not allowed; "
                      "expected a number in (0, 1)"),
    "alpha NaN": ({"stats": {"alpha": float("nan")}}, "stats.alpha: nan"),
    "alpha as text": ({"stats": {"alpha": "0.05"}}, "stats.alpha: '0.05'"),
    "negative permutations": ({"stats": {"n_permutations": -5}},
                              "stats.n_permutations: -5 is not allowed; expected an "
                              "integer >= 1"),
    "negative bin": ({"stats": {"bin": -0.1}}, "stats.bin: -0.1"),
    "bin longer than the epochs": ({"stats": {"bin": 1000}},
                                   "stats.bin: 1000 s is not shorter than the epochs "
                                   "(2 s)"),
    "negative training epochs": ({"decode": {"params": {"max_epochs": -1}}},
                                 "decode.params.max_epochs: -1"),
    "typo in a training setting": ({"decode": {"params": {"max_epoch": 5}}},
                                   "Did you mean 'max_epochs'?"),
    "seed among training settings": ({"decode": {"params": {"seed": 1}}},
                                     "set by decode.seed"),
    "typo in a guidance setting": (
        {"decode": {"params": {"guidance": {"wieght": 1.0}}}},
        "decode.params.guidance.wieght: not a parameter of Guidance; allowed: "
        "consistency_noise, consistency_shift, consistency_weight, keep_mask, "
        "keep_weight, mask, method, weight. Did you mean 'weight'?",
    ),
    "guidance not a mapping": ({"decode": {"params": {"guidance": 10}}},
                               "decode.params.guidance: expected a mapping"),
    "guidance weight as text": (
        {"decode": {"params": {"guidance": {"weight": "high"}}}},
        "decode.params.guidance.weight: 'high' is not allowed; Guidance takes float.",
    ),
    "deprecated guidance keyword as text": (
        {"decode": {"params": {"rrr_weight": "high"}}},
        "decode.params.rrr_weight: 'high' is not allowed; Guidance takes float. "
        "(deprecated name of decode.params.guidance.weight)",
    ),
    "no such class": ({"attribute": {"label": 99}},
                      "attribute.label: 99 is not a class of 'content'"),
    "label as text": ({"attribute": {"label": "ture"}}, "Did you mean 'true'?"),
    "explained class not a class": ({"attribute": {"explain": "flyng"}},
                                    "attribute.explain: 'flyng' is not a class of "
                                    "'content'; expected one of 'flying', 'other'. "
                                    "Did you mean 'flying'?"),
    "explained class and label": ({"attribute": {"explain": "flying", "label": 1}},
                                  "attribute.explain: give either 'explain'"),
    "folds as a word": ({"decode": {"cv": "four"}}, "decode.cv: 'four'"),
    "more folds than subjects": ({"decode": {"cv": 5}}, "4 subjects"),
    "seed as a word": ({"decode": {"seed": "zero"}}, "decode.seed: 'zero'"),
    "unknown model": ({"decode": {"model": "eegnetv4"}}, "Did you mean 'eegnet'?"),
    "context_decoder not a flag": ({"decode": {"context_decoder": "yes"}},
                                   "expected true or false"),
    "unknown attribution target": ({"attribute": {"target": "logits"}},
                                   "Did you mean 'logit'?"),
    "typo in a method setting": (
        {"attribute": {"params": {"integrated_gradients": {"n_step": 5}}}},
        "attribute.params.integrated_gradients.n_step: not a parameter of attribute",
    ),
    "settings of no method": ({"attribute": {"params": {"salency": {}}}},
                              "Did you mean 'saliency'?"),
    "unknown perturbation": ({"evaluate": {"faithfulness": {"perturbation": "zero"}}},
                             "Did you mean 'zeros'?"),
    "faithfulness patch": ({"evaluate": {"faithfulness": {"patch": [0, 10]}}},
                           "evaluate.faithfulness.patch"),
    "typo in randomization": ({"evaluate": {"randomization": {"n_epoch": 3}}},
                              "Did you mean 'n_epochs'?"),
    "typo in the simulator": ({"data": {"simulate": {"n_subject": 3}}},
                              "data.simulate.n_subject: not a parameter"),
    "simulator seed as a word": ({"data": {"simulate": {"seed": "zero"}}},
                                 "data.simulate.seed: 'zero'"),
    "stats method not run": ({"stats": {"method": "salency"}},
                             "Did you mean 'saliency'?"),
    "evaluate epochs zero": ({"evaluate": {"n_epochs": 0}}, "evaluate.n_epochs: 0"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_value_exits_1_in_one_line_before_any_data(case, tmp_path, capsys):
    sections, needle = CASES[case]
    config = {"data": dict(SIMULATE)}
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
        if section == "data":
            config["data"]["simulate"] = {**SIMULATE["simulate"], **values["simulate"]}
    fname = tmp_path / "study.yaml"
    fname.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    code = main(["run", str(fname), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and needle in err, err
    assert f"{fname}: " in err  # names the file
    assert not (tmp_path / "out").exists()  # refused before anything ran
    assert time.perf_counter() - start < 10


def test_the_defaults_and_good_values_pass():
    cfg = read_config(
        {
            "data": SIMULATE,
            "decode": {"cv": "loso", "params": {"lr_schedule": "cosine"}},
            "attribute": {"label": "predicted",
                          "params": {"occlusion": {"window": [1, 20]}}},
            "stats": {"bin": None, "alpha": 0.01},
        }
    )  # fmt: skip
    assert cfg["decode"]["cv"] == "loso" and cfg["stats"]["bin"] is None
    assert read_config(DEFAULT_STUDY)["stats"]["alpha"] == 0.05


def test_guidance_settings_pass_as_a_mapping_or_by_their_deprecated_names():
    mask = [[True] * 200] * 3 + [[False] * 200] * 16
    guidance = {"mask": mask, "weight": 10.0, "method": "counterfactual",
                "consistency_weight": 0.1, "consistency_shift": 2}  # fmt: skip
    cfg = read_config({"data": SIMULATE, "decode": {"params": {"guidance": guidance}}})
    assert cfg["decode"]["params"]["guidance"] == guidance  # decode builds Guidance
    old = {"rrr_mask": mask, "rrr_weight": 10.0, "consistency_weight": 0.1}
    cfg = read_config({"data": SIMULATE, "decode": {"params": old}})
    assert cfg["decode"]["params"] == old  # decode warns, with the new form
