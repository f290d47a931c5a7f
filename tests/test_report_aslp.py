"""The ASLP study report: grouping, seed statistics and the claims read off the summaries."""

import json

import numpy as np

from experiments import report
from experiments.configs import aslp as report_aslp


def _summary(method, variant, seed, acc, best_epoch, model="conv2"):
  return {
    "study": "aslp",
    "method": method,
    "model": model,
    "variant": variant,
    "seed": seed,
    "epochs": 5.0,
    "test_accuracy": acc,
    "best_val_accuracy": acc - 0.01,
    "best_val_epoch": best_epoch,
    "sparsity": 0.4,
    "device": "cpu",
    "config": {"train_subset": 10000},
    "val_curve": [{"epoch": float(e), "accuracy": acc * e / 5, "sparsity": 0.4} for e in range(1, 6)],
  }


def test_report_tables_and_claims(tmp_path):
  runs = [
    _summary("aslp", "sc+da", 0, 0.30, 5),
    _summary("aslp", "sc+da", 1, 0.34, 5),
    _summary("edge_popup", "sc+da", 0, 0.40, 4),
    _summary("aslp", "plain", 0, 0.20, 5),
    _summary("aslp", "wr", 0, 0.25, 3),
    _summary("aslp", "sc", 0, 0.13, 1),  # best val 0.12: within 2 points of chance
    _summary("aslp", "wr+sc", 0, 0.12, 4),
    {
      **_summary("supermask", "plain", 0, 0.15, 2),
      "test_accuracy_sampled": [0.1, 0.2],
      "test_accuracy_sampled_mean": 0.15,
      "test_accuracy_sampled_std": 0.05,
    },
  ]
  for i, s in enumerate(runs):
    (tmp_path / f"{i}.json").write_text(json.dumps(s))
  text = report.render(str(tmp_path), report_aslp.REPORT)
  assert "| aslp+da | - | - | 32.0 +- 2.0 (n=2) [paper 77.5] |" in text
  assert "| edge_popup+da | - | - | 40.0 (n=1) [paper 71.5] |" in text
  # seed-paired: edge-popup ran seed 0 only, so the gap is ASLP's seed 0 (30.0) - 40.0, not its
  # two-seed mean (32.0) - 40.0
  assert "conv2, sc, with DA: ASLP - edge-popup = -10.0 points (seed 0: -10.0)." in text
  assert "conv2, plain, no DA: ASLP - supermask (deterministic) = +5.0 points." in text
  # plain reaches the common 0.20 at epoch 5, wr (0.25 * e / 5) at epoch 4
  assert (
    "conv2, aslp plain -> wr: smart rescale changes epochs to best val by -2.0, epochs to the accuracy "
    "both reach by -1.0 (1 seed pairs)." in text
  )
  assert "| conv2 | aslp: plain -> wr | 5.0 (n=1) | 3.0 (n=1) | 5.0 | 4.0 (1) |" in text
  assert "conv2, aslp sc -> wr+sc: smart rescale changes epochs to best val by +3.0" in text
  assert "within 2 points of chance (10%), so its epoch of best validation accuracy is noise" in text
  assert text.count("noise, not speed") == 1
  assert "0.1500 +- 0.0500 (2)" in text
  assert "In 3 of 8 runs the best validation accuracy is at the last epoch" in text
  assert (tmp_path / "val_accuracy_conv2.png").stat().st_size > 0
  assert report_aslp.row_and_variant(runs[0]) == ("aslp+da", "sc")
  np.testing.assert_equal(report.mean_std([0.5]), "50.0 (n=1)")


def test_common_accuracy_epochs_pairs_by_seed():
  def run(seed, accs):
    return {"seed": seed, "val_curve": [{"epoch": float(e + 1), "accuracy": a} for e, a in enumerate(accs)]}

  without = [run(0, [0.1, 0.3, 0.2]), run(1, [0.1, 0.2, 0.4]), run(2, [0.5])]
  with_ = [run(1, [0.35, 0.36, 0.37]), run(0, [0.25, 0.28, 0.31])]
  # seed 0: common 0.30 -> epochs 2 and 3; seed 1: common 0.37 -> epochs 3 and 3; seed 2 unpaired
  np.testing.assert_array_equal(report_aslp.common_accuracy_epochs(without, with_), [[2.0, 3.0], [3.0, 3.0]])
  assert report_aslp.epochs_to(run(0, [0.1, 0.2])["val_curve"], 0.3) == float("inf")


def _converged(method, variant, seed, ref, ours, sampled, epochs):
  """An aslp_converged summary: ``ref``/``ours`` (test, epoch) of each protocol's checkpoint."""
  s = {
    "study": "aslp_converged",
    "method": method,
    "model": "lenet300100",
    "dataset": "mnist",
    "variant": f"mnist_{variant}",
    "seed": seed,
    "epochs": 1000.0,
    "epochs_run": float(epochs),
    "early_stopping": {"0": {"epoch": float(epochs)}},
    "test_accuracy": ref[0],
    "best_val_accuracy": ref[0],
    "best_val_epoch": ref[1],
    "sparsity": 0.5,
    "device": "cpu",
    "config": {"stages": [{"patience": 100}]},
    "val_curve": [
      {"epoch": 10.0, "accuracy": 0.9, "forward_accuracy": 0.9, "extracted_accuracy": 0.6},
      {"epoch": float(epochs), "accuracy": 0.95, "forward_accuracy": 0.95, "extracted_accuracy": 0.8},
    ],
  }
  if method != "edge_popup":
    s["protocols"] = {
      "forward": {
        "epoch": ref[1],
        "test_accuracy": ref[0],
        "test_accuracy_sampled_mean": sampled,
        "sparsity": 0.5,
      },
      "extracted": {
        "epoch": ours[1],
        "test_accuracy": ours[0],
        "test_accuracy_sampled_mean": 0.9,
        "sparsity": 0.4,
      },
    }
  return s


def test_converged_report_puts_both_protocols_side_by_side(tmp_path):
  from experiments.configs import aslp_converged

  runs = [
    _converged("aslp", "sc", 0, (0.70, 50), (0.80, 20), 0.96, 150),
    _converged("aslp", "sc", 1, (0.74, 60), (0.82, 30), 0.96, 160),
    _converged("aslp", "wr+sc", 0, (0.72, 40), (0.81, 25), 0.95, 140),
    _converged("edge_popup", "sc_k0.500", 0, (0.90, 70), (0.90, 70), None, 170),
    _converged("edge_popup", "sc_k0.500_bf16", 0, (0.88, 70), (0.88, 70), None, 170),
  ]
  for i, s in enumerate(runs):
    (tmp_path / f"{i}.json").write_text(json.dumps(s))
  text = report.render(str(tmp_path), aslp_converged.REPORT)
  assert "mnist, ours: edge_popup SC with bfloat16 - float32 mask variables = -2.0 points." in text
  assert (
    "| aslp | sc | 0,1 | 155 | 96.0 +- 0.0 (n=2) | 72.0 +- 2.0 (n=2) | 0.5000 | 55 | 81.0 +- 1.0 (n=2) "
    "| 90.0 +- 0.0 (n=2) | 0.4000 | 25 |" in text
  )
  assert "| edge_popup | sc k=0.500 | 0 | 170 | - | 90.0 | 0.5000 | 70 | 90.0 | - | 0.5000 | 70 |" in text
  assert "| mnist aslp sc | 0 | +30.0 | - | +15.0 | 150 |" in text  # epoch 50 is not in the curve
  assert "mnist, reference protocol: ASLP SC - edge-popup SC k=0.500 = -20.0 points (seed 0: -20.0)." in text
  assert "mnist, ours: ASLP SC - edge-popup SC k=0.500 = -10.0 points (seed 0: -10.0)." in text
  assert "smart rescale (sc -> wr+sc): epochs to the best sampled validation accuracy change by -10.0" in text
  assert (
    "sampled test accuracy exceeds its extracted one by +23.7 points on average over 3 runs "
    "(min +22.0, max +26.0)" in text
  )
  assert "5 of 5 runs stopped by patience" in text
  assert (tmp_path / "logits_mnist.png").exists() is False  # no learned_abs_above in these curves
