"""Budget-aware pruning by weight reparametrization (PAPERS.md 2) and its magnitude baselines.

    python -m experiments.main --workdir runs/reparam/X \\
      --config 'experiments/configs/reparam.py:method=reparam,rate=0.95,lam=100,seed=0'

Keys of the argument (comma-separated ``key=value``):
  method  reparam | dense | mp | mp_ft | gmp
  model   conv4 (default) | vgg19 | resnet18 | any registered model
  rate    removed fraction of the prunable weights (0.9, 0.95, 0.97, 0.99)
  lam     reparam's lambda (budget weight); default: the one selected for (model, budget) in
          ``LAMBDA``, an error where none has been selected yet
  seed    the run's seed
  budget  cpu (default) | gpu | smoke
  runs    where the dense run lives for mp / mp_ft (default runs/reparam)

Methods, all on the same data, seed and weight optimizer:
- dense: E epochs of SGD (lr 0.01 Conv4 / 0.1 VGG19 and ResNet18, momentum 0.9, weight decay
  5e-4, cosine), random crop + flip, batch 128.
- mp: the dense run's final weights, global magnitude pruning to the rate, no training.
- mp_ft: mp, then F epochs of fine-tuning with the pruned weights held at zero (the same SGD).
- gmp: gradual magnitude pruning from scratch (Zhu & Gupta cubic schedule, global, masks updated
  every 50 steps from 10% to 70% of the E epochs), E epochs: the modern baseline at equal budget.
- reparam: E epochs from scratch of w * h_t(w) with the budget penalty, then the effective
  pruning (exactly the rate, smallest gates removed), no fine-tuning. Weights use the dense SGD;
  t (one per layer, init 100, n = 4) uses Adam lr 1.0 because its scale (~100) is four orders
  above the weights' and plain SGD at the weights' rate leaves it where it started.

Choices the paper does not give:
- lambda: chosen per (model, budget) on the validation split among {10, 100, 1000} at 95% (the
  grid's middle rate, grid ``select_<budget>[_<model>]``), reused for every rate; the criterion
  is the validation accuracy of the hard-pruned network at the end of training (the network the
  study reports), ties to the smaller lambda. The report prints the winner; ``LAMBDA`` below
  records it.
- The hard-prune rule (see pruning_jax.methods.reparam): global, by gate value h_t(w), exactly
  the target count.
- Model selection: the last epoch (the paper reports the trained network); the test split is
  evaluated once.

Budgets: ``cpu``: Conv4, 15,000 training images (seeded subset of the 45k split, validation
keeps its 5,000), E = 4 epochs, F = 1 (a CPU budget far below any paper's). ``gpu``: all 45k,
E = 160, F = 40.
"""

import os
from collections import defaultdict

from experiments import report
from experiments.configs.base import base_config, check_choice, parse_options, stage

# (model, budget) -> lambda selected on validation (see the docstring); lam= overrides.
# Conv4 / cpu: the winner of experiments/results/reparam/selection/ (its RESULTS.md table).
LAMBDA: dict[tuple[str, str], float] = {("conv4", "cpu"): 10.0}
SELECTION_LAMBDAS = (10.0, 100.0, 1000.0)
BUDGETS = {
  "cpu": {"epochs": 4, "finetune": 1, "train_subset": 15_000},
  "gpu": {"epochs": 160, "finetune": 40, "train_subset": None},
  "smoke": {"epochs": 1, "finetune": 1, "train_subset": 256},
}
DEFAULTS = {
  "method": "reparam",
  "model": "conv4",
  "rate": "0.9",
  "lam": "selected",
  "seed": "0",
  "budget": "cpu",
  "runs": "runs/reparam",
}
METHODS = ("reparam", "dense", "mp", "mp_ft", "gmp")
T_ADAM = {"name": "adam", "lr": 1.0, "lr_schedule": "constant"}


def parse(arg: str) -> dict[str, str]:
  o = parse_options(arg, DEFAULTS, study="reparam", example="method=reparam,rate=0.95,lam=100,seed=0")
  check_choice("reparam", "method", o["method"], METHODS)
  check_choice("reparam", "budget", o["budget"], BUDGETS)
  if o["lam"] == "selected":
    if o["method"] != "reparam":
      o["lam"] = "0"  # unused by the baselines
    elif (o["model"], o["budget"]) in LAMBDA:
      o["lam"] = repr(LAMBDA[(o["model"], o["budget"])])
    else:
      raise ValueError(
        f"reparam config: no lambda selected yet for model={o['model']}, budget={o['budget']}; run the grid "
        f"select_{o['budget']}_{o['model']} and record the winner in LAMBDA, or pass lam=<value>."
      )
  return o


def sgd(model: str) -> dict:
  lr = 0.01 if model.startswith("conv") else 0.1
  return {"name": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine"}


def variant_name(o: dict[str, str]) -> str:
  if o["method"] == "dense":
    return o["budget"]
  lam = f"_lam{float(o['lam']):g}" if o["method"] == "reparam" else ""
  return f"s{float(o['rate']):.2f}{lam}_{o['budget']}"


def dense_workdir(o: dict[str, str]) -> str:
  return f"{o['runs']}/{o['model']}_dense_{o['budget']}_seed{o['seed']}"


def get_config(arg: str = ""):
  o = parse(arg)
  b = BUDGETS[o["budget"]]
  rate = float(o["rate"])
  c = base_config()
  c.study = "reparam"
  c.method = o["method"]
  c.model = o["model"]
  c.variant = variant_name(o)
  c.seed = int(o["seed"])
  c.train_subset = b["train_subset"]
  c.batch_size = 128
  c.select_best = False
  c.eval_finalized = True
  c.checkpoint_every_steps = 200
  opt = sgd(o["model"])
  magnitude = {"name": "magnitude_pruning", "sparsity": rate}
  if o["method"] == "dense":
    c.stages = [stage("dense", b["epochs"], {"name": "dense"}, opt)]
  elif o["method"] == "mp":
    c.init_from = dense_workdir(o)
    c.stages = [stage("prune", 0, magnitude, opt)]
  elif o["method"] == "mp_ft":
    c.init_from = dense_workdir(o)
    c.stages = [stage("finetune", b["finetune"], magnitude, opt)]
  elif o["method"] == "gmp":
    schedule = {"schedule": "polynomial", "final_sparsity": rate, "begin_epoch": 0.1 * b["epochs"]}
    schedule.update(end_epoch=0.7 * b["epochs"], frequency=50)
    c.stages = [stage("gradual", b["epochs"], {"name": "magnitude_pruning", "sparsity": schedule}, opt)]
  else:
    pruner = {"name": "reparam", "sparsity": rate, "budget_weight": float(o["lam"]), "per_layer_t": True}
    c.stages = [stage("reparam", b["epochs"], pruner, opt, T_ADAM)]
    c.test_evaluators = [{"name": "forward"}]  # the accuracy just before the hard prune (the soft network)
  if o["budget"] == "smoke":
    c.val_size, c.batch_size, c.eval_batch_size = 128, 64, 128
    c.checkpoint_every_steps = 2
    if o["method"] == "gmp":
      c.stages[0].pruner.sparsity.frequency = 1
  return c


def grid(name: str) -> list[str]:
  """``<budget>[_<model>]``: the study (model default conv4; dense first: mp and mp_ft start from
  it); ``select_<budget>[_<model>]``: the lambda selection runs."""
  kind, rest = ("select", name.removeprefix("select_")) if name.startswith("select_") else ("study", name)
  budget, _, model = rest.partition("_")
  if budget not in BUDGETS:
    raise ValueError(
      f"reparam grid {name!r} is unknown; expected [select_]<budget>[_<model>] with budget in "
      f"{sorted(BUDGETS)} (e.g. cpu, select_cpu, gpu_vgg19)."
    )
  where = f"model={model or DEFAULTS['model']},budget={budget}"
  if kind == "select":
    return [f"method=reparam,rate=0.95,lam={lam:g},{where}" for lam in SELECTION_LAMBDAS]
  runs = [f"method=dense,{where}"]
  for method in ("mp", "mp_ft", "gmp", "reparam"):
    runs += [f"method={method},rate={r},{where}" for r in (0.9, 0.95, 0.97, 0.99)]
  return runs


# ---------------------------------------------------------------------------------------------
# The report: python -m experiments.report experiments/results/reparam --config experiments/configs/reparam.py
#
# Tables: test accuracy by method and rate in the paper's shape (ours, mean +- std over seeds,
# beside the published number as context), the paper's claim as seed-paired gaps, the measured
# sparsity of every run against its target, the accuracy of the reparametrized network just
# before and just after the hard prune, and the lambda selection runs. Plots: per-layer density
# of every pruned run and C / C_target during training. Every number printed comes from the
# summaries, except the published column.

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
REPORT_METHODS = ("dense", "mp", "mp_ft", "gmp", "reparam")


def target_rate(s) -> float | None:
  sparsity = s["config"]["stages"][-1]["pruner"].get("sparsity")
  # a schedule (gradual magnitude, since the pruner config names its factory's arguments) ends at its target
  return sparsity.get("final_sparsity") if isinstance(sparsity, dict) else sparsity


def accuracy_table(study, model: str) -> str:
  lines = ["| method | " + " | ".join(f"{r:.0%}" for r in RATES) + " |", "| --- |" + " --- |" * len(RATES)]
  cells = defaultdict(list)
  for s in study:
    if s["model"] == model:
      cells[(s["method"], target_rate(s))].append(s["test_accuracy"])
  dense = [s["test_accuracy"] for s in study if s["model"] == model and s["method"] == "dense"]
  for method in REPORT_METHODS[1:]:
    row = []
    for i, r in enumerate(RATES):
      ours = cells.get((method, r))
      pub = PUBLISHED.get(model, {}).get(method)
      row.append(
        (report.mean_std(ours, 2, always_n=False) if ours else "-")
        + (f" [paper {pub[i]:.2f}]" if pub else "")
      )
    lines.append(f"| {method} | " + " | ".join(row) + " |")
  if dense:
    lines.append(f"| dense (0%) | {report.mean_std(dense, 2, always_n=False)} |" + " |" * (len(RATES) - 1))
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
      gaps = [report.gap_text(f"reparam - {label}", acc["reparam"], acc[m]) for m, label in labels if acc[m]]
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
  fig, axes = report.plt.subplots(1, len(rates), figsize=(3.2 * len(rates), 4), sharey=True, squeeze=False)
  names = [d["path"].replace("/kernel", "") for d in pruned[0]["layer_density"]]
  for ax, rate in zip(axes[0], rates, strict=True):
    for s in sorted(
      (s for s in pruned if target_rate(s) == rate),
      key=lambda s: (REPORT_METHODS.index(s["method"]), s["seed"]),
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
  report.plt.close(fig)


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
  fig, ax = report.plt.subplots(figsize=(7, 4.5))
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
  report.save_figure(fig, ax, path, fontsize=7)


def budget_line(study) -> str:
  groups = defaultdict(set)
  for s in study:
    groups[(s["model"], s["config"].get("train_subset"), s["device"])].add((s["method"], s["epochs"]))
  parts = []
  for (model, images, device), epochs in sorted(groups.items(), key=str):
    by_method = ", ".join(f"{m} {e:g}" for m, e in sorted(epochs, key=lambda me: REPORT_METHODS.index(me[0])))
    parts.append(f"{model} on {images or 'all 45k'} training images ({device}): {by_method}")
  return "; ".join(parts)


def _split(runs):
  """(study runs, lambda-selection runs): the selection runs live in ``selection/``."""
  selection = [s for s in runs if os.path.dirname(s["_file"]) == "selection"]
  return [s for s in runs if os.path.dirname(s["_file"]) != "selection"], selection


def intro_section(runs, folder) -> list[str]:
  del folder
  study, _ = _split(runs)
  return [
    "Generated by `python -m experiments.report experiments/results/reparam --config",
    "experiments/configs/reparam.py` from the run summaries in this folder (`selection/`: the lambda",
    "selection runs). Runs by `python -m experiments.sweep --config experiments/configs/reparam.py",
    "--grid <budget> --runs runs/reparam --results experiments/results/reparam`; every choice is in",
    "`experiments/configs/reparam.py`.",
    "",
    "Budgets (training epochs of each method's own run; mp and mp_ft start from the dense run): "
    + budget_line(study),
    "",
  ]


def accuracy_sections(runs, folder) -> list[str]:
  del folder
  study, _ = _split(runs)
  lines = []
  for model in sorted({s["model"] for s in study}):
    lines += [
      f"## {model}: test accuracy (%) by removed fraction, ours [published, as context]",
      "",
      accuracy_table(study, model),
      "",
      "### The paper's claim, read off these runs",
      "",
      claims(study, model),
      "",
    ]
  return lines


def sparsity_section(runs, folder) -> list[str]:
  study, selection = _split(runs)
  plot_density(study, os.path.join(folder, "layer_density.png"))
  plot_budget(study + selection, os.path.join(folder, "budget_ratio.png"))
  lines = [
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
    lines += ["## Lambda selection (validation split only)", "", selection_table(selection), ""]
  return lines


REPORT = {
  "title": "Budget-aware pruning by weight reparametrization (CIFAR-10)",
  "study": "reparam",
  "sections": (intro_section, accuracy_sections, sparsity_section),
}
