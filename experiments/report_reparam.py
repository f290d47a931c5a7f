"""The reparametrization study's RESULTS.md and plots from the collected summaries.

    python -m experiments.report_reparam experiments/results/reparam

Tables: test accuracy by method and rate in the paper's shape (ours, mean +- std over seeds,
beside the published number as context), the measured sparsity of every run against its
target, the accuracy of the reparametrized network just before and just after the hard prune,
and the lambda selection runs. Plots: per-layer density of every pruned run and C / C_target
during training. Every number printed comes from the summaries, except the published column.
"""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.report import load_summaries, save_figure, study_cli  # noqa: E402

# Slides 10-11 (PAPERS.md section 2, tier B), CIFAR-10 test accuracy in %.
PUBLISHED = {
  "conv4": {
    "mp": (54.94, 22.91, 13.10, 13.07),
    "mp_ft": (89.50, 87.38, 85.57, 76.70),
    "reparam": (85.57, 84.59, 82.60, 16.54),
  },
  "vgg19": {
    "mp": (10.00, 10.00, 10.00, 10.00),
    "mp_ft": (93.57, 93.52, 92.96, 10.00),
    "reparam": (86.03, 47.08, 10.00, 10.00),
  },
  "resnet18": {
    "mp": (77.89, 37.55, 14.19, 10.00),
    "mp_ft": (94.69, 94.43, 94.03, 92.25),
    "reparam": (91.59, 89.89, 33.49, 15.08),
  },
}
RATES = (0.9, 0.95, 0.97, 0.99)
METHODS = ("dense", "mp", "mp_ft", "gmp", "reparam")


def target_rate(s) -> float | None:
  sparsity = s["config"]["stages"][-1]["pruner"].get("sparsity")
  # a schedule (gradual magnitude, since the pruner config names its factory's arguments) ends at its target
  return sparsity.get("final_sparsity") if isinstance(sparsity, dict) else sparsity


def mean_std(values) -> str:
  v = 100 * np.asarray(values, float)
  return (
    f"{v.mean():.2f}"
    + (f" +- {v.std():.2f}" if len(v) > 1 else "")
    + (f" (n={len(v)})" if len(v) > 1 else "")
  )


def accuracy_table(study, model: str) -> str:
  lines = ["| method | " + " | ".join(f"{r:.0%}" for r in RATES) + " |", "| --- |" + " --- |" * len(RATES)]
  cells = defaultdict(list)
  for s in study:
    if s["model"] == model:
      cells[(s["method"], target_rate(s))].append(s["test_accuracy"])
  dense = [s["test_accuracy"] for s in study if s["model"] == model and s["method"] == "dense"]
  for method in METHODS[1:]:
    row = []
    for i, r in enumerate(RATES):
      ours = cells.get((method, r))
      pub = PUBLISHED.get(model, {}).get(method)
      row.append((mean_std(ours) if ours else "-") + (f" [paper {pub[i]:.2f}]" if pub else ""))
    lines.append(f"| {method} | " + " | ".join(row) + " |")
  if dense:
    lines.append(f"| dense (0%) | {mean_std(dense)} |" + " |" * (len(RATES) - 1))
  return "\n".join(lines)


def sparsity_table(study) -> str:
  lines = [
    "| run | target | measured sparsity | within 0.1% | final C / C_target | test acc before hard prune "
    "| test acc after |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ]
  for s in sorted(study, key=lambda s: (s["model"], s["method"], target_rate(s) or 0, s["seed"])):
    rate = target_rate(s)
    if rate is None:
      continue
    before = s.get("test_accuracy_sampled_mean")
    ratio = (s.get("train_curve") or [{}])[-1].get("budget_ratio")
    lines.append(
      f"| {s['_file']} | {rate:.2f} | {s['sparsity']:.5f} "
      f"| {'yes' if abs(s['sparsity'] - rate) <= 1e-3 else 'NO'} "
      f"| {f'{ratio:.3f}' if ratio is not None else '-'} "
      f"| {f'{before:.4f}' if before is not None else '-'} | {s['test_accuracy']:.4f} |"
    )
  return "\n".join(lines)


def budget_weight(s) -> float:
  return s["config"]["stages"][-1]["pruner"]["budget_weight"]


def last_val_accuracy(s) -> float:
  return s["val_curve"][-1]["accuracy"] if s.get("val_curve") else float("nan")


def selected_lambda(selection) -> float | None:
  """The config's criterion: the hard-pruned network's validation accuracy at the end of
  training, ties to the smaller lambda."""
  if not selection:
    return None
  return budget_weight(max(selection, key=lambda s: (last_val_accuracy(s), -budget_weight(s))))


def selection_table(selection) -> str:
  lines = [
    "| lambda | rate | last val acc, hard-pruned (the criterion) | best val acc | final C / C_target |",
    "| --- | --- | --- | --- | --- |",
  ]
  for s in sorted(selection, key=budget_weight):
    ratio = s["train_curve"][-1].get("budget_ratio", float("nan")) if s.get("train_curve") else float("nan")
    lines.append(
      f"| {budget_weight(s):g} | {target_rate(s):.2f} | {last_val_accuracy(s):.4f} "
      f"| {s['best_val_accuracy']:.4f} | {ratio:.3f} |"
    )
  lines += ["", f"Selected: lambda = {selected_lambda(selection):g}."]
  return "\n".join(lines)


def paired_gap(label: str, ours: dict[int, float], theirs: dict[int, float]) -> str:
  """``reparam - <label>`` in points over the seeds both methods ran (each seed is one data subset
  and init, so only same-seed differences compare like with like)."""
  seeds = sorted(set(ours) & set(theirs))
  if not seeds:
    return f"reparam - {label}: no seed in common"
  gaps = [100 * (ours[k] - theirs[k]) for k in seeds]
  text = f"reparam - {label} = {np.mean(gaps):+.2f} points"
  if len(ours) > 1 or len(theirs) > 1:
    text += " (" + ", ".join(f"seed {k}: {g:+.2f}" for k, g in zip(seeds, gaps, strict=True)) + ")"
  return text


def claims(study, model: str) -> str:
  out = []
  for r in RATES:
    acc = {
      m: {
        s["seed"]: s["test_accuracy"]
        for s in study
        if s["model"] == model and s["method"] == m and target_rate(s) == r
      }
      for m in ("mp", "mp_ft", "gmp", "reparam")
    }
    if acc["reparam"] and acc["mp"] and acc["mp_ft"]:
      labels = (("mp", "MP"), ("mp_ft", "MP+FT"), ("gmp", "gradual magnitude"))
      gaps = [paired_gap(label, acc["reparam"], acc[m]) for m, label in labels if acc[m]]
      out.append(f"- {model} {r:.0%}: " + "; ".join(gaps) + ".")
  return "\n".join(out) if out else "- (no comparable runs yet)"


LINE_STYLES = {"mp": ("-", "o"), "mp_ft": ("--", "s"), "gmp": (":", "^"), "reparam": ("-", "x")}


def plot_density(study, path: str) -> None:
  """One panel per rate, a line per method and seed.

  MP+FT keeps MP's mask, and gradual magnitude's global profile lands close to it,
  so each method has its own line style and marker: overlapping lines stay readable.
  """
  pruned = [s for s in study if target_rate(s) is not None and s.get("layer_density")]
  if not pruned:
    return
  rates = sorted({target_rate(s) for s in pruned})
  fig, axes = plt.subplots(1, len(rates), figsize=(3.2 * len(rates), 4), sharey=True, squeeze=False)
  names = [d["path"].replace("/kernel", "") for d in pruned[0]["layer_density"]]
  for ax, rate in zip(axes[0], rates, strict=True):
    for s in sorted(
      (s for s in pruned if target_rate(s) == rate), key=lambda s: (METHODS.index(s["method"]), s["seed"])
    ):
      dens = [d["kept"] / d["total"] for d in s["layer_density"]]
      style, marker = LINE_STYLES.get(s["method"], ("-", "o"))
      ax.plot(
        range(len(dens)), dens, style, marker=marker, ms=4, mfc="none", label=f"{s['method']} s{s['seed']}"
      )
    ax.set_title(f"{rate:.0%} removed", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=60, fontsize=6)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  axes[0][0].set_ylabel("kept fraction per layer (log)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_budget(runs, path: str) -> None:
  runs = [
    s
    for s in runs
    if s["method"] == "reparam" and s.get("train_curve") and "budget_ratio" in s["train_curve"][0]
  ]
  # the selection run at the chosen lambda is also the study run at that rate: draw it once
  runs = list({(target_rate(s), budget_weight(s), s["seed"]): s for s in runs}.values())
  if not runs:
    return
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for s in sorted(runs, key=lambda s: (target_rate(s), budget_weight(s), s["seed"])):
    lam = budget_weight(s)
    steps = [r["step"] for r in s["train_curve"]]
    ax.plot(
      steps,
      [r["budget_ratio"] for r in s["train_curve"]],
      label=f"{target_rate(s):.2f} lambda {lam:g} s{s['seed']}",
    )
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("C / C_target")
  save_figure(fig, ax, path, fontsize=7)


def budget_line(study) -> str:
  groups = defaultdict(set)
  for s in study:
    groups[(s["model"], s["config"].get("train_subset"), s["device"])].add((s["method"], s["epochs"]))
  parts = []
  for (model, images, device), epochs in sorted(groups.items(), key=str):
    by_method = ", ".join(f"{m} {e:g}" for m, e in sorted(epochs, key=lambda me: METHODS.index(me[0])))
    parts.append(f"{model} on {images or 'all 45k'} training images ({device}): {by_method}")
  return "; ".join(parts)


def render(folder: str) -> str:
  summaries = [s for s in load_summaries(folder) if s.get("study") == "reparam"]
  selection = [s for s in summaries if os.path.dirname(s["_file"]) == "selection"]
  study = [s for s in summaries if os.path.dirname(s["_file"]) != "selection"]
  plot_density(study, os.path.join(folder, "layer_density.png"))
  plot_budget(study + selection, os.path.join(folder, "budget_ratio.png"))
  parts = [
    "# Budget-aware pruning by weight reparametrization (CIFAR-10)",
    "",
    "Generated by `python -m experiments.report_reparam experiments/results/reparam` from the run",
    "summaries in this folder (`selection/`: the lambda selection runs). Runs by `python -m",
    "experiments.sweep --config experiments/configs/reparam.py --grid <budget> --runs runs/reparam",
    "--results experiments/results/reparam`; every choice is in `experiments/configs/reparam.py`.",
    "",
    "Budgets (training epochs of each method's own run; mp and mp_ft start from the dense run): "
    + budget_line(study),
    "",
  ]
  for model in sorted({s["model"] for s in study}):
    parts += [
      f"## {model}: test accuracy (%) by removed fraction, ours [published, as context]",
      "",
      accuracy_table(study, model),
      "",
      "### The paper's claim, read off these runs",
      "",
      claims(study, model),
      "",
    ]
  parts += [
    "## Measured sparsity of every run, and accuracy just before and after the hard prune",
    "",
    sparsity_table(study),
    "",
    "![per-layer density](layer_density.png)",
    "",
    "## C / C_target during training",
    "",
    "![budget ratio](budget_ratio.png)",
    "",
  ]
  if selection:
    parts += ["## Lambda selection (validation split only)", "", selection_table(selection), ""]
  return "\n".join(parts)


def main(argv=None) -> None:
  study_cli(render, __doc__, argv)


if __name__ == "__main__":
  main()
