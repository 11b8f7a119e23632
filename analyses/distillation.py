"""Does a small decoder distilled from a larger one also explain like it?
=========================================================================

A ShallowConvNet teacher is decoded with subject-grouped folds; an EEGNet
student is then trained with the same folds three times: plainly, with
knowledge distillation from the teacher's out-of-fold soft targets (Hinton et
al., 2015; ``decode(..., distillation=Distillation(teacher))``), and with
distillation plus explanation matching (``Distillation(teacher,
explanation_weight=...)``: the cosine between the student's input gradients
and the teacher's out-of-fold ones, for the true class, enters the loss). For
each decoder the script reports the held-out balanced accuracy, the agreement
of its predictions with the teacher's, the similarity of its saliency maps to
the teacher's (:func:`eegsal.stats.explanation_similarity`, per subject) and
the deletion AUC of its maps (Samek et al., 2017): does the student that
matches the teacher's maps decide better, or only look more alike?

Three data sets (``--data``):

- ``content``: the simulated sleep study, content scenario;
- ``shortcut``: the same with a weaker content signal (``--shortcut-effect``,
  0.3 against the simulator's 0.6), and an eye-movement-like artifact on
  every "flying" epoch of half the subjects
  (:func:`eegsal.simulate.plant_shortcut`): decoders that read it fail on the
  clean subjects (``clean_ba``), and their maps put mass on the frontal
  channels (``frontal_share``; 4 of the 32 channels);
- ``motor``: the real motor EEG in ``../shared/data``, movement vs rest in the
  executed runs (``data_manifests/eegmmidb_movement.yaml``, 80 Hz).

``--nested`` runs a check instead: output distillation from a teacher
retrained inside each student fold, so that no target comes from a model
that saw the student's test subjects (:func:`nested`).

Run: python analyses/distillation.py [--data content shortcut motor]
[--subjects 12] [--epochs 60] [--nested] [--out distillation]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

import eegsal
from eegsal.evaluation import faithfulness
from eegsal.guidance import Distillation
from eegsal.stats import explanation_similarity

MANIFESTS = Path(__file__).parents[1] / "data_manifests"


def load(name: str, args) -> tuple:
    """Epochs of one data set, and the subjects whose held-out BA is 'clean'."""
    import yaml

    from eegsal.data import load_manifest
    from eegsal.simulate import plant_shortcut, simulate_sleep_study

    if name == "motor":
        path = MANIFESTS / "eegmmidb_movement.yaml"
        manifest = yaml.safe_load(path.read_text())
        manifest["preprocessing"]["sfreq"] = 80.0
        manifest["recordings"]["include"]["run"] = ["03", "07", "11"]  # executed
        manifest["root"] = str((path.parent / manifest["root"]).resolve())
        return load_manifest(manifest, verbose=False), None
    weaker = dict(effect_size=args.shortcut_effect) if name == "shortcut" else {}
    epochs, _ = simulate_sleep_study(
        n_subjects=args.subjects, n_epochs=args.epochs, scenario="content",
        seed=args.seed, verbose=False, **weaker,
    )  # fmt: skip
    if name == "content":
        return epochs, None
    subjects = sorted(epochs.metadata["subject"].unique())
    planted = subjects[: len(subjects) // 2]
    epochs = plant_shortcut(epochs, value="flying", subjects=planted)
    return epochs, sorted(set(subjects) - set(planted))


class _Splits:
    """A scikit-learn splitter of given (train, test) index pairs."""

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def split(self, X=None, y=None, groups=None):  # noqa: D102
        yield from self.pairs

    def get_n_splits(self, X=None, y=None, groups=None):  # noqa: D102
        return len(self.pairs)


def nested(epochs, args) -> dict:
    """Output distillation with a teacher retrained inside each student fold.

    ``decode(..., distillation=Distillation(teacher))`` gives each student the
    teacher's out-of-fold targets of its training epochs; the teacher models
    behind them trained on the other subjects, the student's test subjects
    among them. Here, for each student fold, the teacher is decoded again
    with folds over that fold's training subjects only (plus one model
    trained on all of them, which tests the held-out subjects so that every
    epoch has a target; the student never reads those), so that no target
    the student learns from comes from a model that saw its test subjects.
    """
    from sklearn.model_selection import GroupKFold

    groups = epochs.metadata["subject"].to_numpy()
    index = np.arange(len(epochs))
    common = dict(max_epochs=args.max_epochs, device=args.device, seed=args.seed,
                  verbose=False)  # fmt: skip
    scores = []
    outer = GroupKFold(args.folds).split(index, groups=groups)
    for train, test in outer:
        inner = GroupKFold(args.folds - 1).split(train, groups=groups[train])
        pairs = [(train[a], train[b]) for a, b in inner] + [(train, test)]
        teacher = eegsal.decode(epochs, "content", model="shallow",
                                cv=_Splits(pairs), **common)  # fmt: skip
        student = eegsal.decode(
            epochs, "content", model="eegnet", cv=_Splits([(train, test)]),
            distillation=Distillation(teacher, temperature=args.temperature,
                                      weight=args.weight),
            **common,
        )  # fmt: skip
        scores.append(student.scores["balanced_accuracy"].iloc[0])
    return dict(
        decoder="student (eegnet), distilled, teacher nested in each fold",
        balanced_accuracy=float(np.mean(scores)),
    )


def compare(name: str, args) -> pd.DataFrame:
    """Train the teacher and the three students on one data set; compare them."""
    from eegsal.simulate import FRONTAL

    epochs, clean = load(name, args)
    if args.nested:  # the check alone
        return pd.DataFrame([dict(data=name, **nested(epochs, args))])
    common = dict(cv=args.folds, max_epochs=args.max_epochs, device=args.device,
                  seed=args.seed, verbose=False)  # fmt: skip
    teacher = eegsal.decode(epochs, "content", model="shallow", **common)

    def distil(**kw):
        return Distillation(
            teacher, temperature=args.temperature, weight=args.weight, **kw
        )

    students = {
        "plain": eegsal.decode(epochs, "content", model="eegnet", **common),
        "distilled": eegsal.decode(
            epochs, "content", model="eegnet", distillation=distil(), **common
        ),
        "distilled + maps matched": eegsal.decode(
            epochs, "content", model="eegnet",
            distillation=distil(explanation_weight=args.explanation_weight),
            **common,
        ),  # fmt: skip
    }
    explain = dict(method="saliency", target="logit", label="true", verbose=False)
    teacher_maps = eegsal.attribute(teacher, epochs, **explain)
    frontal = np.isin(epochs.ch_names, FRONTAL)
    rows = []
    for decoder, result in {"teacher (shallow)": teacher, **students}.items():
        maps = teacher_maps if result is teacher else eegsal.attribute(
            result, epochs, **explain
        )  # fmt: skip
        pred = result.predictions
        row = dict(
            data=name,
            decoder=decoder if result is teacher else f"student (eegnet), {decoder}",
            balanced_accuracy=result.scores["balanced_accuracy"].mean(),
        )
        if clean is not None:
            rows_clean = pred["subject"].isin(clean).to_numpy()
            row["clean_ba"] = balanced_accuracy_score(
                pred["y_true"][rows_clean], pred["y_pred"][rows_clean]
            )
            mass = np.abs(maps.get_data()).sum(axis=(0, 2))
            row["frontal_share"] = float(mass[frontal].sum() / mass.sum())
        if result is not teacher:
            similarity = explanation_similarity(maps, teacher_maps, n_boot=200)
            row["agreement_with_teacher"] = float(
                np.mean(pred["y_pred"] == teacher.predictions["y_pred"])
            )
            row["map_similarity"] = float(similarity["map"].iloc[-1])
            row["spatial_similarity"] = float(similarity["spatial"].iloc[-1])
        deletion = faithfulness(result, epochs, maps, kind="deletion")
        row["deletion_auc"] = float(deletion.auc["auc_attribution"].mean())
        row["deletion_gain"] = float(deletion.auc["gain"].mean())
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, float_format="%.3f"),
              flush=True)  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    """Compare teacher and students on each data set; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["content", "shortcut", "motor"],
                        choices=["content", "shortcut", "motor"])  # fmt: skip
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--shortcut-effect", type=float, default=0.3,
                        help="content effect size beside the shortcut")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=60, help="epochs per subject")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--explanation-weight", type=float, default=1.0)
    parser.add_argument("--nested", action="store_true",
                        help="only the student of a teacher retrained in each "
                        "fold (a check of the targets' provenance)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="distillation")
    args = parser.parse_args()
    if args.nested and args.folds < 3:
        parser.error("--nested needs --folds 3 or more (the teacher's inner folds)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for name in args.data:
        tables.append(compare(name, args))
        table = pd.concat(tables, ignore_index=True)
        order = ["data", "decoder", "balanced_accuracy", "clean_ba",
                 "agreement_with_teacher", "map_similarity", "spatial_similarity",
                 "frontal_share", "deletion_auc", "deletion_gain"]  # fmt: skip
        table = table[[c for c in order if c in table]]
        table.to_csv(out / "distillation.csv", index=False)
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
