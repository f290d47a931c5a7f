"""Subnetworks of untrained Conv nets: ASLP against edge-popup and supermask (PAPERS.md 1 and 4).

    python -m experiments.main --workdir runs/aslp/X \\
      --config 'experiments/configs/aslp.py:method=aslp,model=conv2,wr=1,sc=1,da=0,seed=0'

Keys of the argument (comma-separated ``key=value``):
  method  aslp | supermask | edge_popup
  model   conv2 | conv4 | conv6
  wr      1: weight rescale -- ASLP's smart rescale (one learned scalar per layer, SGD lr 1e-3),
          supermask's DWR (numel / sum(mask) every forward), edge-popup's scale_fan (the signed
          Kaiming constant computed with fan_in * k)
  sc      1: signed constant -- sign(w) * std of the layer's initial weights (ASLP, supermask),
          +-sqrt(2 / fan_in) for edge-popup (its paper's "usc"). ASLP puts it on the conv
          kernels only, as the reference code does (it re-initialises its dense layers after
          computing the constant); runs collected before protocol v2 (git_commit in their
          summaries, before 2026-12-01) put it on every layer, dense ones included.
  da      1: random crop (pad 4) + horizontal flip on the training split
  seed    the run's seed (init, mask samples, data order and the 45k/5k split)
  epochs  the epoch budget (default: the CPU budget below)
  budget  cpu (default) | full (the reference's protocol: up to 1000 epochs, patience 100 on the
          sampled validation accuracy, both checkpoint choices reported; GPU only) | smoke

Choices the paper leaves open or that this reimplementation makes (all methods share them):
- Nets: Conv2/4/6 with frozen He-normal (fan_in) kernels and frozen PyTorch-default biases
  that are never masked, no BatchNorm, for all three methods (the reference runs edge-popup in
  the same nets; its own paper's nets have no biases).
- Data: CIFAR-10 (this project's copy), 45k/5k train/validation split drawn with the seed.
  Inputs are always normalised with (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010); the
  reference drops normalisation without augmentation, a quirk we do not copy. The validation
  split is never augmented (the reference's is).
- Optimisers: masks/logits SGD lr 50, momentum 0.9, no weight decay, constant (ASLP and
  supermask, as the reference's main.py); edge-popup scores SGD lr 0.1, momentum 0.9, weight
  decay 1e-4, cosine decay over the run, k = 0.5 kept per layer. Batch 256 for every method so
  that equal epochs are equal steps.
- Smart rescale: the reference (PyTorch Lightning 1.x, two optimizers) runs two forward and
  backward passes per batch, one per optimizer. We update logits and rescales from the same
  sampled pass, one pass per batch.
- Selection (CPU budget): the validation accuracy of the deterministic extracted subnetwork
  (m >= 0 for ASLP and supermask, top-k for edge-popup) after every epoch picks the reported
  checkpoint; the reference selects on the stochastic accuracy. The test split is evaluated
  once, on that checkpoint: the deterministic accuracy, and for supermask (and ASLP at the full
  budget) also the mean of 10 passes with freshly sampled masks (supermask's published
  protocol). The full budget runs the reference's protocol instead: the sampled validation
  accuracy picks the checkpoint and stops the run (patience 100), and the extracted one's
  choice is reported beside it (``protocols``), as in experiments/configs/aslp_converged.py.
- CPU budget (``budget=cpu``): 10,000 training images (a seeded subset of the 45k split; the
  validation split keeps its 5,000) and 5 epochs (195 steps of 256) for every method and net;
  the reference trains up to 1000 epochs with patience 100 on 45k, so absolute accuracies sit
  far below the published ones. A Conv2 step takes ~2 s on the 2-core CPU, Conv4 ~3 s.
"""

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np

from experiments import report
from experiments.configs.base import base_config, check_choice, parse_options, stage

MASK_SGD = {"name": "sgd", "lr": 50.0, "momentum": 0.9, "weight_decay": 0.0, "lr_schedule": "constant"}
RESCALE_SGD = {"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "lr_schedule": "constant"}
SCORES_SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "cosine"}
FROZEN = {"name": "frozen"}
CPU_EPOCHS = 5
CPU_TRAIN_IMAGES = 10_000
FULL_EPOCHS = 1000
DEFAULTS = {"method": "aslp", "model": "conv2", "wr": "0", "sc": "0", "da": "0", "seed": "0", "budget": "cpu"}


def parse(arg: str) -> dict[str, str]:
  opts = parse_options(
    arg, DEFAULTS, study="aslp", example="method=aslp,model=conv2,wr=1,sc=0,da=0,seed=0", optional=("epochs",)
  )
  check_choice("aslp", "method", opts["method"], ("aslp", "supermask", "edge_popup"))
  check_choice("aslp", "budget", opts["budget"], ("cpu", "full", "smoke"))
  return opts


def variant_name(o: dict[str, str]) -> str:
  mods = [name for name, key in (("wr", "wr"), ("sc", "sc")) if o[key] == "1"]
  return "+".join(mods or ["plain"]) + ("+da" if o["da"] == "1" else "")


def pruner(o: dict[str, str], *, keep_fraction: float = 0.5, signed_constant_layers: str = "conv") -> dict:
  """The pruner config of a run; ``signed_constant_layers`` is ASLP's (``"all"`` for an MLP, which
  has no conv kernels), ``keep_fraction`` edge-popup's k."""
  wr, sc = o["wr"] == "1", o["sc"] == "1"
  if o["method"] == "aslp":
    return {
      "name": "aslp",
      "temperature": 1.0,
      "smart_rescale": wr,
      "signed_constant": sc,
      "signed_constant_layers": signed_constant_layers,
    }
  if o["method"] == "supermask":
    return {"name": "supermask", "dynamic_rescale": wr, "signed_constant": sc}
  return {
    "name": "edge_popup",
    "keep_fraction": keep_fraction,
    "signed_constant": "kaiming" if sc else None,
    "scale_fan": wr,
  }


def get_config(arg: str = ""):
  o = parse(arg)
  c = base_config()
  c.study = "aslp"
  c.method = o["method"]
  c.model = o["model"]
  c.variant = variant_name(o)
  c.seed = int(o["seed"])
  c.augment = o["da"] == "1"
  c.batch_size = 256
  c.select_best = True
  c.eval_finalized = True
  # supermask's protocol; ASLP's reported number is the deterministic subnetwork (its sampled
  # test, 10 passes of the 10k test images, is too dear for the CPU budget)
  sampled = o["method"] == "supermask" or (o["method"] == "aslp" and o["budget"] == "full")
  c.test_evaluators = [{"name": "forward", "passes": 10}] if sampled else []
  epochs = {"cpu": CPU_EPOCHS, "full": FULL_EPOCHS, "smoke": 1}[o["budget"]]
  if o["budget"] == "cpu":
    c.train_subset = CPU_TRAIN_IMAGES
  epochs = float(o.get("epochs", epochs))
  mask_opt = SCORES_SGD if o["method"] == "edge_popup" else MASK_SGD
  extra = {"rescale": RESCALE_SGD} if (o["method"] == "aslp" and o["wr"] == "1") else {}
  c.stages = [stage(o["method"], epochs, pruner(o), FROZEN, mask_opt, extra)]
  if o["budget"] == "full":  # the reference's protocol, as experiments/configs/aslp_converged.py
    c.stages[0].patience = 100
    c.select_on = ["forward", "extracted"] if o["method"] != "edge_popup" else ["extracted"]
    c.learned_stats = [0.5, 1.0, 2.0, 4.0]
  c.checkpoint_every_steps = 100
  c.log_every_steps = 25
  if o["budget"] == "smoke":
    c.train_subset, c.val_size, c.batch_size, c.eval_batch_size = 512, 256, 64, 256
    c.test_evaluators = [{"name": "forward", "passes": 2}] if sampled else []
  return c


def grid(name: str) -> list[str]:
  """The runs of a study grid, most informative first (a partial sweep still compares methods).

  ``<budget>_<net>`` (budget cpu or full, net conv2, conv4 or conv6): the poster grid -- ASLP
  and supermask x {plain, WR, SC, WR+SC} without augmentation, ASLP and edge-popup x {SC, WR+SC}
  with it; seeds 0 and 1 for the ASLP and edge-popup rows, seed 0 for supermask. Run names do not
  carry the budget: collect a ``full_`` grid into its own results folder.
  """
  budget, _, model = name.partition("_")
  if budget not in ("cpu", "full") or model not in ("conv2", "conv4", "conv6"):
    raise ValueError(
      f"aslp grid {name!r} is unknown; expected <budget>_<net> with budget cpu or full and net conv2, conv4 "
      "or conv6 (e.g. cpu_conv4)."
    )
  runs = []
  for seed in (0, 1):
    da_rows = [(m, wr, sc) for m in ("aslp", "edge_popup") for wr, sc in ((0, 1), (1, 1))]
    plain_rows = [("aslp", wr, sc) for wr, sc in ((0, 0), (1, 0), (0, 1), (1, 1))]
    if seed == 0:
      plain_rows += [("supermask", wr, sc) for wr, sc in ((0, 0), (1, 0), (0, 1), (1, 1))]
    for da, rows in ((1, da_rows), (0, plain_rows)):
      runs += [
        f"method={m},model={model},wr={wr},sc={sc},da={da},seed={seed},budget={budget}" for m, wr, sc in rows
      ]
  return runs


# ---------------------------------------------------------------------------------------------
# The report: python -m experiments.report experiments/results/aslp --config experiments/configs/aslp.py
#
# Tables: the poster grid (ours as mean +- std over seeds beside the published number, as
# context), the pruning rate each ASLP run reached, epochs to the best validation accuracy with
# and without smart rescale (and to the accuracy both runs of a seed reach, which stays defined
# before convergence), supermask's sampled against deterministic test accuracy, and the paper's
# claims as seed-paired gaps. Plots: validation accuracy against epoch per net. Every number
# printed comes from the summaries, except the published column.

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
      ours = report.mean_std([s["test_accuracy"] for s in runs]) if runs else "-"
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
      return report.mean_std([r["best_val_accuracy"] for r in runs])

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
  """The paper's claims, each as a seed-paired gap (positive: the claim holds here)."""
  out = []
  for model in sorted({k[0] for k in groups}):
    for v in ("sc", "wr+sc"):
      a, e = groups.get((model, "aslp+da", v)), groups.get((model, "edge_popup+da", v))
      if a and e:
        gap = report.gap_text("ASLP - edge-popup", report.by_seed(a), report.by_seed(e), digits=1)
        out.append(f"- {model}, {v}, with DA: {gap}.")
    for v in VARIANTS:
      a, m = groups.get((model, "aslp", v)), groups.get((model, "supermask", v))
      if a and m:
        gap = report.gap_text(
          "ASLP - supermask (deterministic)", report.by_seed(a), report.by_seed(m), digits=1
        )
        out.append(f"- {model}, {v}, no DA: {gap}.")
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
  fig, ax = report.plt.subplots(figsize=(7, 4.5))
  for label in sorted(curves):
    n = min(len(c) for c in curves[label])
    epochs = [r["epoch"] for r in curves[label][0][:n]]
    acc = np.mean([[r["accuracy"] for r in c[:n]] for c in curves[label]], axis=0)
    ax.plot(epochs, acc, marker="o", ms=3, label=f"{label} (n={len(curves[label])})")
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation accuracy (deterministic subnetwork)")
  ax.set_title(f"{model} / CIFAR-10")
  report.save_figure(fig, ax, path, fontsize=7)


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


def intro_section(runs, folder) -> list[str]:
  del folder
  budgets = sorted({(s["model"], s["epochs"], s["config"].get("train_subset"), s["device"]) for s in runs})
  return [
    "Generated by `python -m experiments.report experiments/results/aslp --config "
    "experiments/configs/aslp.py`",
    "from the run summaries in this folder; runs by `python -m experiments.sweep --config",
    "experiments/configs/aslp.py --grid cpu_<net> --runs runs/aslp --results experiments/results/aslp`.",
    "Choices and budget: `experiments/configs/aslp.py`.",
    "",
    "**A short-budget study.** Every run here stops after a few hundred steps, far from the paper's",
    "~176,000, so it tests the methods' early training, not the paper's claims at convergence; those",
    "are tested where training can converge, in `experiments/results/aslp_converged/RESULTS.md`.",
    "",
    "Budgets (net, epochs, training images (None: all 45k), device): "
    + "; ".join(f"{m}: {e:g} epochs, {n}, {d}" for m, e, n, d in budgets),
    "",
  ]


def grid_sections(runs, folder) -> list[str]:
  groups = group(runs)
  lines = []
  for model in sorted({s["model"] for s in runs}):
    plot = f"val_accuracy_{model}.png"
    plot_curves(runs, model, os.path.join(folder, plot))
    lines += [
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
  return lines


def tables_section(runs, folder) -> list[str]:
  del folder
  groups = group(runs)
  return [
    "## Pruning rate each ASLP run reached (fraction of logits below 0)",
    "",
    pruning_rate_table(runs),
    "",
    "## Epochs to the best validation accuracy, without and with smart rescale",
    "",
    rescale_epochs_table(groups),
    "",
    "## Supermask: sampled against deterministic test accuracy",
    "",
    supermask_table(runs),
    "",
    "## The paper's claims, read off these runs",
    "",
    "Every gap is seed-paired: the mean over the seeds both methods ran of the same-seed difference.",
    "",
    claims(groups),
    "",
  ]


def gradient_scale_for(runs, folder) -> list[str]:
  return gradient_scale_section(folder, [s["steps"] for s in runs if "steps" in s])


REPORT = {
  "title": "ASLP against edge-popup and supermask (CIFAR-10): the short CPU-budget study",
  "study": "aslp",
  "sections": (intro_section, grid_sections, tables_section, gradient_scale_for),
}
