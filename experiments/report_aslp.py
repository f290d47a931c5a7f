"""The ASLP study's RESULTS.md and plots from the collected summaries.

    python -m experiments.report_aslp experiments/results/aslp

Tables: the poster grid (ours as mean +- std over seeds beside the published number, as
context), the pruning rate each ASLP run reached, epochs to the best validation accuracy with
and without smart rescale (and to the accuracy both runs of a seed reach, which stays defined
before convergence), supermask's sampled against deterministic test accuracy, and the
paper's two claims read off the same numbers. Plots: validation accuracy against epoch per net.
Every number printed comes from the summaries in the folder, except the published column.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.report import load_summaries, save_figure, study_cli  # noqa: E402

# Poster (PAPERS.md section 1, tier B), CIFAR-10 test accuracy in %: (row, variant) -> value.
PUBLISHED = {
  "conv2": {
    ("supermask", "plain"): 64.4,
    ("supermask", "wr"): 65.0,
    ("supermask", "sc"): 66.3,
    ("supermask", "wr+sc"): 66.0,
    ("aslp", "plain"): 68.7,
    ("aslp", "wr"): 67.8,
    ("aslp", "sc"): 68.4,
    ("aslp", "wr+sc"): 67.1,
    ("edge_popup+da", "sc"): 71.5,
    ("edge_popup+da", "wr+sc"): 71.7,
    ("aslp+da", "sc"): 77.5,
    ("aslp+da", "wr+sc"): 77.5,
  },
  # Zhou et al.'s best supermask (their Conv2/Conv6 figures match the poster's); see PUBLISHED_NOTES
  "conv4": {("supermask", "wr+sc"): 72.5},
  "conv6": {
    ("supermask", "plain"): 63.5,
    ("supermask", "wr"): 76.3,
    ("supermask", "sc"): 65.4,
    ("supermask", "wr+sc"): 76.5,
    ("aslp", "plain"): 73.7,
    ("aslp", "wr"): 77.0,
    ("aslp", "sc"): 72.6,
    ("aslp", "wr+sc"): 76.6,
    ("edge_popup+da", "sc"): 84.5,
    ("edge_popup+da", "wr+sc"): 85.1,
    ("aslp+da", "sc"): 86.3,
    ("aslp+da", "wr+sc"): 86.9,
  },
}
PUBLISHED_NOTES = {
  "conv4": "The ASLP poster and slides give no Conv4 CIFAR-10 numbers (PAPERS.md section 1); the"
  " supermask figure is Zhou et al.'s Table 1 (tier C).",
}
VARIANTS = ("plain", "wr", "sc", "wr+sc")
ROWS = ("supermask", "aslp", "edge_popup+da", "aslp+da")


def row_and_variant(s: dict[str, Any]) -> tuple[str, str]:
  """('aslp+da', 'wr+sc') from method 'aslp' and variant 'wr+sc+da'."""
  variant = s["variant"]
  da = variant.endswith("+da")
  return s["method"] + ("+da" if da else ""), variant.removesuffix("+da")


def group(summaries) -> dict[tuple[str, str, str], list[dict]]:
  out = defaultdict(list)
  for s in summaries:
    out[(s["model"], *row_and_variant(s))].append(s)
  return out


def mean_std(values) -> str:
  v = 100 * np.asarray(values, float)
  return f"{v.mean():.1f}" + (f" +- {v.std():.1f}" if len(v) > 1 else "") + f" (n={len(v)})"


def grid_table(groups, model: str) -> str:
  lines = [
    "| | " + " | ".join(VARIANTS) + " |",
    "| --- |" + " --- |" * len(VARIANTS),
  ]
  for row in ROWS:
    cells = []
    for v in VARIANTS:
      runs = groups.get((model, row, v), [])
      pub = PUBLISHED.get(model, {}).get((row, v))
      ours = mean_std([s["test_accuracy"] for s in runs]) if runs else "-"
      cells.append(ours + (f" [paper {pub}]" if pub is not None else ""))
    if any(c != "-" for c in cells):
      lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def pruning_rate_table(summaries) -> str:
  lines = [
    "| net | run | seed | pruning rate | test acc (deterministic) | best val epoch |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for s in sorted(
    (s for s in summaries if s["method"] == "aslp"), key=lambda s: (s["model"], s["variant"], s["seed"])
  ):
    lines.append(
      f"| {s['model']} | {s['variant']} | {s['seed']} | {s['sparsity']:.4f} | {s['test_accuracy']:.4f} | "
      f"{s.get('best_val_epoch', float('nan')):g} |"
    )
  return "\n".join(lines)


def epochs_to(curve: list[dict], accuracy: float) -> float:
  """The first epoch whose validation accuracy reaches ``accuracy`` (inf if none does)."""
  return next((r["epoch"] for r in curve if r["accuracy"] >= accuracy), float("inf"))


def common_accuracy_epochs(without: list[dict], with_: list[dict]) -> np.ndarray:
  """``(seed pairs, 2)``: per seed present in both, the epochs each run needs to reach the lower
  of their two best validation accuracies -- the accuracy both reach, so it is defined even when
  neither run has converged (epochs-to-best is then just the last epoch for both)."""
  by_seed = {s["seed"]: s for s in with_}
  out = []
  for a in sorted(without, key=lambda s: s["seed"]):
    b = by_seed.get(a["seed"])
    if b is None or not a.get("val_curve") or not b.get("val_curve"):
      continue
    target = min(max(r["accuracy"] for r in a["val_curve"]), max(r["accuracy"] for r in b["val_curve"]))
    out.append((epochs_to(a["val_curve"], target), epochs_to(b["val_curve"], target)))
  return np.asarray(out, float).reshape(-1, 2)


def rescale_pairs(groups):
  """``(model, row, base, wr, runs without, runs with)`` for each smart-rescale pair present."""
  for model in sorted({k[0] for k in groups}):
    for row in ("aslp", "aslp+da"):
      for base, wr in (("plain", "wr"), ("sc", "wr+sc")):
        a, b = groups.get((model, row, base)), groups.get((model, row, wr))
        if a and b:
          yield model, row, base, wr, a, b


def rescale_epochs_table(groups) -> str:
  """Epochs to the best validation accuracy, and to the accuracy both runs of a seed reach,
  without and with smart rescale, per pair."""
  lines = [
    "| net | pair (without -> with smart rescale) | epochs to best, without | with "
    "| epochs to the common accuracy, without | with (seed pairs) | best val without | best val with |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for model, row, base, wr, a, b in rescale_pairs(groups):

    def ep(runs):
      return f"{np.mean([r['best_val_epoch'] for r in runs]):.1f} (n={len(runs)})"

    def bv(runs):
      return mean_std([r["best_val_accuracy"] for r in runs])

    pairs = common_accuracy_epochs(a, b)
    common = f"{pairs[:, 0].mean():.1f} | {pairs[:, 1].mean():.1f} ({len(pairs)})" if len(pairs) else "- | -"
    lines.append(f"| {model} | {row}: {base} -> {wr} | {ep(a)} | {ep(b)} | {common} | {bv(a)} | {bv(b)} |")
  return "\n".join(lines)


def supermask_table(summaries) -> str:
  lines = [
    "| net | variant | seed | test acc, mean over sampled masks (passes) | deterministic m >= 0 "
    "| pruning rate |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for s in sorted(
    (s for s in summaries if s["method"] == "supermask"), key=lambda s: (s["model"], s["variant"], s["seed"])
  ):
    sampled = s.get("test_accuracy_sampled_mean")
    if sampled is not None:
      sampled = f"{sampled:.4f} +- {s['test_accuracy_sampled_std']:.4f} ({len(s['test_accuracy_sampled'])})"
    else:
      sampled = "-"
    lines.append(
      f"| {s['model']} | {s['variant']} | {s['seed']} | {sampled} | {s['test_accuracy']:.4f} "
      f"| {s['sparsity']:.4f} |"
    )
  return "\n".join(lines)


# CIFAR-10's 10 classes; a run whose best validation accuracy stays this close to chance has not
# started learning, and where its curve peaks says nothing about convergence speed.
CHANCE, NEAR_CHANCE = 0.10, 0.02


def claims(groups) -> str:
  """The paper's claims, each as a difference of our means (positive: the claim holds here)."""
  out = []
  for model in sorted({k[0] for k in groups}):
    for v in ("sc", "wr+sc"):
      a, e = groups.get((model, "aslp+da", v)), groups.get((model, "edge_popup+da", v))
      if a and e:
        d = 100 * (np.mean([s["test_accuracy"] for s in a]) - np.mean([s["test_accuracy"] for s in e]))
        out.append(f"- {model}, {v}, with DA: ASLP - edge-popup = {d:+.1f} points (n={len(a)} vs {len(e)}).")
    for v in VARIANTS:
      a, m = groups.get((model, "aslp", v)), groups.get((model, "supermask", v))
      if a and m:
        d = 100 * (np.mean([s["test_accuracy"] for s in a]) - np.mean([s["test_accuracy"] for s in m]))
        out.append(f"- {model}, {v}, no DA: ASLP - supermask (deterministic) = {d:+.1f} points.")
    for _, row, base, wr, a, b in rescale_pairs({k: v for k, v in groups.items() if k[0] == model}):
      d = np.mean([s["best_val_epoch"] for s in b]) - np.mean([s["best_val_epoch"] for s in a])
      line = f"- {model}, {row} {base} -> {wr}: smart rescale changes epochs to best val by {d:+.1f}"
      pairs = common_accuracy_epochs(a, b)
      if len(pairs):
        dc = np.mean(pairs[:, 1] - pairs[:, 0])
        line += f", epochs to the accuracy both reach by {dc:+.1f} ({len(pairs)} seed pairs)"
      if max(s["best_val_accuracy"] for s in a + b) <= CHANCE + NEAR_CHANCE:
        line += (
          f"; every run of the pair peaks within {100 * NEAR_CHANCE:.0f} points of chance "
          f"({100 * CHANCE:.0f}%), so its epoch of best validation accuracy is noise, not speed"
        )
      out.append(line + ".")
  runs = [s for runs in groups.values() for s in runs if s.get("val_curve")]
  at_end = sum(s["best_val_epoch"] == s["val_curve"][-1]["epoch"] for s in runs)
  if runs:
    out.append(
      f"- In {at_end} of {len(runs)} runs the best validation accuracy is at the last epoch: where that is "
      "most of them, the budget ends before training converges and epochs-to-best cannot separate variants; "
      "the epochs to the accuracy both runs of a seed reach still can."
    )
  return "\n".join(out) if out else "- (no comparable pairs yet)"


def plot_curves(summaries, model: str, path: str) -> None:
  curves = defaultdict(list)
  for s in summaries:
    if s["model"] == model and s.get("val_curve"):
      curves[" ".join(row_and_variant(s))].append(s["val_curve"])
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label in sorted(curves):
    n = min(len(c) for c in curves[label])
    epochs = [r["epoch"] for r in curves[label][0][:n]]
    acc = np.mean([[r["accuracy"] for r in c[:n]] for c in curves[label]], axis=0)
    ax.plot(epochs, acc, marker="o", ms=3, label=f"{label} (n={len(curves[label])})")
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation accuracy (deterministic subnetwork)")
  ax.set_title(f"{model} / CIFAR-10")
  save_figure(fig, ax, path, fontsize=7)


def gradient_scale_table(summary: dict) -> str:
  """Steps SGD needs to move a typical logit by the noise scale, per layer (input -> output)."""
  per = defaultdict(list)
  for r in summary["rows"]:
    per[(r["net"], r["signed_constant"])].append(r)
  lines = [
    "| net | SC | steps to move a typical logit by 1, per layer (input -> output) |",
    "| --- | --- | --- |",
  ]
  for (net, sc), rows in sorted(per.items()):
    steps = ", ".join(f"{r['steps_to_unit']:,.0f}" for r in rows)
    lines.append(f"| {net} | {int(sc)} | {steps} |")
  return "\n".join(lines)


def gradient_scale_section(folder: str, steps: list[int] = ()) -> list[str]:
  path = os.path.join(folder, "gradient_scale", "summary.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    summary = json.load(f)
  return [
    "## Why the CPU budget cannot test the converged claims: logit gradients at initialisation",
    "",
    "ASLP keeps a weight iff m + L > 0 with L ~ Logistic(0, 1), so a logit decides its weight only",
    "once |m| nears 1. `gradient_scale/summary.json` (`python -m experiments.aslp_gradient_scale`)",
    f"measures the logit gradient at m = 0 on one CIFAR-10 batch of {summary['batch']}, averaged over "
    f"{summary['samples']} Gumbel",
    f"draws, and converts it into the steps SGD (lr {summary['mask_sgd']['lr']:g}, momentum "
    f"{summary['mask_sgd']['momentum']:g}) would need to move a",
    "typical logit by 1 if that gradient held still (an optimistic bound)."
    + (f" The runs above train for {', '.join(map(str, sorted(set(steps))))} steps." if steps else ""),
    "",
    gradient_scale_table(summary),
    "",
  ]


def render(folder: str) -> str:
  summaries = [s for s in load_summaries(folder) if s.get("study") == "aslp"]
  groups = group(summaries)
  models = sorted({s["model"] for s in summaries})
  budgets = sorted(
    {(s["model"], s["epochs"], s["config"].get("train_subset"), s["device"]) for s in summaries}
  )
  parts = [
    "# ASLP against edge-popup and supermask (CIFAR-10)",
    "",
    "Generated by `python -m experiments.report_aslp experiments/results/aslp` from the run summaries",
    "in this folder; runs by `python -m experiments.sweep --config experiments/configs/aslp.py --grid",
    "cpu_<net> --runs runs/aslp --results experiments/results/aslp`. Choices and budget:",
    "`experiments/configs/aslp.py`.",
    "",
    "Budgets (net, epochs, training images (None: all 45k), device): "
    + "; ".join(f"{m}: {e:g} epochs, {n}, {d}" for m, e, n, d in budgets),
    "",
  ]
  for model in models:
    plot = f"val_accuracy_{model}.png"
    plot_curves(summaries, model, os.path.join(folder, plot))
    parts += [
      f"## {model}: test accuracy (%), ours (mean +- std over seeds) [published, as context]",
      "",
      "Test accuracy of the deterministic extracted subnetwork at the best-validation epoch."
      + (" " + PUBLISHED_NOTES[model] if model in PUBLISHED_NOTES else ""),
      "",
      grid_table(groups, model),
      "",
      f"![validation accuracy per epoch]({plot})",
      "",
    ]
  parts += [
    "## Pruning rate each ASLP run reached (fraction of logits below 0)",
    "",
    pruning_rate_table(summaries),
    "",
    "## Epochs to the best validation accuracy, without and with smart rescale",
    "",
    rescale_epochs_table(groups),
    "",
    "## Supermask: sampled against deterministic test accuracy",
    "",
    supermask_table(summaries),
    "",
    "## The paper's claims, read off these runs",
    "",
    claims(groups),
    "",
    *gradient_scale_section(folder, [s["steps"] for s in summaries if "steps" in s]),
  ]
  return "\n".join(parts)


def main(argv=None) -> None:
  study_cli(render, __doc__, argv)


if __name__ == "__main__":
  main()
