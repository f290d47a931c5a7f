"""The reparametrization study report: the paper-shaped table, sparsity checks and claims."""

import json

from experiments import report
from experiments.configs import reparam as report_reparam


def _summary(method, rate, acc, sparsity=None, lam=100.0, before=None, seed=0):
  pruner = {"name": method} if rate is None else {"name": method, "sparsity": rate, "budget_weight": lam}
  s = {
    "study": "reparam",
    "method": method,
    "model": "conv4",
    "seed": seed,
    "epochs": 4.0,
    "device": "cpu",
    "test_accuracy": acc,
    "best_val_accuracy": acc,
    "sparsity": rate if sparsity is None else sparsity,
    "config": {"train_subset": 15000, "stages": [{"pruner": pruner}]},
    "layer_density": [{"path": "Conv_0/kernel", "kept": 10, "total": 100}],
    "val_curve": [{"epoch": 4.0, "accuracy": acc, "sparsity": 0.0}],
    "train_curve": [{"step": 10, "budget_ratio": 1.5}, {"step": 20, "budget_ratio": 1.01}],
  }
  if before is not None:
    s["test_accuracy_sampled_mean"] = before
  return s


def test_report_table_sparsity_check_and_claims(tmp_path):
  runs = {
    "dense.json": _summary("dense", None, 0.80, sparsity=0.0),
    "mp.json": _summary("mp", 0.9, 0.20),
    "mpft.json": _summary("mp_ft", 0.9, 0.70),
    "rep.json": _summary("reparam", 0.9, 0.65, before=0.66),
    "bad.json": _summary("gmp", 0.95, 0.5, sparsity=0.9),
  }
  for name, s in runs.items():
    (tmp_path / name).write_text(json.dumps(s))
  (tmp_path / "selection").mkdir()
  (tmp_path / "selection" / "l10.json").write_text(json.dumps(_summary("reparam", 0.95, 0.6, lam=10.0)))
  # lambda 100 peaks higher but ends lower: the criterion is the end of training, ties to the smaller
  early_peak = _summary("reparam", 0.95, 0.55, lam=100.0)
  early_peak["best_val_accuracy"] = 0.7
  early_peak["val_curve"] = [{"epoch": 1.0, "accuracy": 0.7, "sparsity": 0.95}, early_peak["val_curve"][0]]
  (tmp_path / "selection" / "l100.json").write_text(json.dumps(early_peak))
  (tmp_path / "selection" / "l1000.json").write_text(json.dumps(_summary("reparam", 0.95, 0.6, lam=1000.0)))
  text = report.render(str(tmp_path), report_reparam.REPORT)
  assert "| reparam | 65.00 [paper 85.57] | - [paper 84.59] |" in text
  assert "| dense (0%) | 80.00 |" in text
  assert "conv4 on 15000 training images (cpu): dense 4, mp 4, mp_ft 4, gmp 4, reparam 4" in text
  assert "conv4 90%: reparam - MP = +45.00 points; reparam - MP+FT = -5.00 points." in text
  assert "| bad.json | 0.95 | 0.90000 | NO | 1.010 | - | 0.5000 |" in text
  assert "| rep.json | 0.90 | 0.90000 | yes | 1.010 | 0.6600 | 0.6500 |" in text
  assert "| 10 | 0.95 | 0.6000 | 0.6000 | 1.010 |" in text  # selection runs stay out of the study table
  assert "| 100 | 0.95 | 0.5500 | 0.7000 | 1.010 |" in text
  assert "Selected: lambda = 10." in text
  assert (tmp_path / "budget_ratio.png").exists() and (tmp_path / "layer_density.png").exists()


def test_claims_compare_methods_seed_by_seed():
  study = [
    _summary("reparam", 0.9, 0.60),
    _summary("reparam", 0.9, 0.50, seed=1),
    _summary("mp", 0.9, 0.40),
    _summary("mp", 0.9, 0.20, seed=1),
    _summary("mp_ft", 0.9, 0.55),
    _summary("gmp", 0.9, 0.45, seed=2),
  ]
  # MP+FT ran seed 0 only: the gap uses reparam's seed 0 (+5), not its two-seed mean (+0).
  assert report_reparam.claims(study, "conv4") == (
    "- conv4 90%: reparam - MP = +25.00 points (seed 0: +20.00, seed 1: +30.00); "
    "reparam - MP+FT = +5.00 points (seed 0: +5.00); reparam - gradual magnitude: no seed in common."
  )
