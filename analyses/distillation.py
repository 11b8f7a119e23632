"""Does a small decoder distilled from a larger one also explain like it?
=========================================================================

A ShallowConvNet teacher is decoded on the simulated sleep study (content
scenario); an EEGNet student is then trained with the same subject-grouped
folds twice: plainly, and with knowledge distillation from the teacher's
out-of-fold soft targets (Hinton et al., 2015;
``decode(..., distillation=Distillation(teacher))``).
For each student the script reports the held-out balanced accuracy, the
agreement of its predictions with the teacher's, the similarity of its
saliency maps to the teacher's (:func:`eegsal.stats.explanation_similarity`,
per subject) and the deletion AUC of its maps (Samek et al., 2017).

A third student adds explanation matching
(``Distillation(teacher, explanation_weight=...)``: the cosine between its
saliency maps and the teacher's out-of-fold maps of the true class enters
the loss), to compare "distil outputs" with "distil outputs and
explanations": does the student that matches the teacher's maps decide
better, or only look more alike?

Run: python analyses/distillation.py [--subjects 12] [--epochs 60] [--out distillation]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import eegsal
from eegsal.evaluation import faithfulness
from eegsal.guidance import Distillation
from eegsal.stats import explanation_similarity


def main() -> None:
    """Train the teacher and both students; print and write the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=60, help="epochs per subject")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--explanation-weight", type=float, default=1.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="distillation")
    args = parser.parse_args()
    epochs, _ = eegsal.simulate.simulate_sleep_study(
        n_subjects=args.subjects, n_epochs=args.epochs, scenario="content",
        seed=args.seed,
    )  # fmt: skip
    common = dict(cv=args.folds, max_epochs=args.max_epochs, device=args.device,
                  seed=args.seed, verbose=False)  # fmt: skip
    teacher = eegsal.decode(epochs, "content", model="shallow", **common)
    students = {
        "plain": eegsal.decode(epochs, "content", model="eegnet", **common),
        "distilled": eegsal.decode(
            epochs,
            "content",
            model="eegnet",
            distillation=Distillation(
                teacher, temperature=args.temperature, weight=args.weight
            ),
            **common,
        ),  # fmt: skip
        "distilled + maps matched": eegsal.decode(
            epochs,
            "content",
            model="eegnet",
            distillation=Distillation(
                teacher, temperature=args.temperature, weight=args.weight,
                explanation_weight=args.explanation_weight,
            ),  # fmt: skip
            **common,
        ),
    }
    explain = dict(method="saliency", target="logit", label="true", verbose=False)
    teacher_maps = eegsal.attribute(teacher, epochs, **explain)
    teacher_ba = teacher.scores["balanced_accuracy"].mean()
    rows = [dict(decoder="teacher (shallow)", balanced_accuracy=teacher_ba)]
    for name, result in students.items():
        maps = eegsal.attribute(result, epochs, **explain)
        similarity = explanation_similarity(maps, teacher_maps, n_boot=200)
        deletion = faithfulness(result, epochs, maps, kind="deletion")
        agree = result.predictions["y_pred"] == teacher.predictions["y_pred"]
        rows.append(
            dict(
                decoder=f"student (eegnet), {name}",
                balanced_accuracy=result.scores["balanced_accuracy"].mean(),
                agreement_with_teacher=float(np.mean(agree)),
                map_similarity=float(similarity["map"].iloc[-1]),
                spatial_similarity=float(similarity["spatial"].iloc[-1]),
                deletion_auc=float(deletion.auc["auc_attribution"].mean()),
                deletion_gain=float(deletion.auc["gain"].mean()),
            )
        )
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "distillation.csv", index=False)
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
