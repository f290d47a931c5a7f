"""Pruning at initialization (SNIP, GraSP, SynFlow, random, magnitude at init) and lottery tickets
(iterative magnitude pruning with four ways to continue), under one protocol (PAPERS.md
section 5).

    python -m experiments.main --workdir runs/init_lottery/X \\
      --config 'experiments/configs/init_lottery.py:method=synflow,sparsity=0.98,seed=0'

Keys of the argument (comma-separated ``key=value``):
  method    dense | snip | grasp | synflow | random | random_erk | magnitude
            | snip_shuffled | grasp_shuffled | synflow_shuffled (each layer's mask permuted)
            | imp_init | imp_rewind | imp_lr_rewind | imp_finetune
  model     lenet300100 (default) | lenet5 | resnet20 | vgg16 | resnet18
  sparsity  the removed fraction of the conv and dense kernels (PaI; IMP: its last round)
  seed      the run's seed
  budget    mnist (default) | cifar_cpu | gpu | smoke

Pruning at initialization: the method's masks are computed at step 0 on the initial weights
(SNIP and GraSP on 10 x classes training examples, GraSP's logits / 200; SynFlow data-free, 100
rounds, float64), one global ranking over every conv and dense kernel (biases and BatchNorm
never pruned), then fixed while the network trains E epochs. random: the same fraction of each
layer; random_erk: Erdos-Renyi-Kernel fractions; magnitude: |w| at init, globally.

Lottery tickets: E epochs dense, then rounds of 20% of the still-kept weights by global
magnitude (the output layer at 10%, half the rate, as in Frankle & Carbin), each round training
E epochs again, until the target sparsity; after each prune:
  imp_init        the kept weights rewound to their initial values (Frankle & Carbin 2019);
  imp_rewind      rewound to their values at step K (Frankle et al. 2020);
  imp_lr_rewind   the trained weights kept, the learning-rate schedule replayed (Renda et al. 2020);
  imp_finetune    the trained weights kept, trained at a tenth of the learning rate.
Every round's ticket is tested (``evaluate_stages``: ``stage_results``), so one run gives the
whole accuracy-sparsity curve; its last round reaches the first sparsity >= the target.

Budgets (the recipe of each is in BUDGETS):
- ``mnist`` (LeNet-300-100, LeNet-5): the lottery-ticket paper's Adam lr 1.2e-3, batch 60, E = 10
  epochs per run and per round (the paper: 50k iterations), K = 500 steps; sparsities 0.9 to
  0.995; the 5,000 validation images of the 60k; the model reported is the last epoch.
- ``cifar_cpu`` (ResNet-20): 15,000 training images, SGD lr 0.1 momentum 0.9 wd 1e-4, x0.1 at
  50% and 75%, batch 128, E = 6, K = 100; sparsities 0.5, 0.8 and 0.9: a short budget that
  compares methods with each other, not with the papers.
- ``gpu`` (VGG-16, ResNet-18 on CIFAR-10): Synaptic-Flow's protocol, 160 epochs, SGD lr 0.1 x0.1
  at epochs 60 and 120, momentum 0.9, wd 1e-4, batch 128; IMP K = 500 steps.
"""

import math

from experiments.configs.base import base_config, check_choice, parse_options, stage

PAI = ("snip", "grasp", "synflow", "random", "random_erk", "magnitude")
SHUFFLED = ("snip_shuffled", "grasp_shuffled", "synflow_shuffled")
IMP = ("imp_init", "imp_rewind", "imp_lr_rewind", "imp_finetune")
METHODS = ("dense", *PAI, *SHUFFLED, *IMP)
MODELS = {  # model -> (dataset, its output layer's kernel)
  "lenet300100": ("mnist", "^Dense_2/kernel$"),
  "lenet5": ("mnist", "^Dense_2/kernel$"),
  "resnet20": ("cifar10", "^Dense_0/kernel$"),
  "vgg16": ("cifar10", "^Dense_0/kernel$"),
  "resnet18": ("cifar10", "^Dense_0/kernel$"),
}
ADAM = {"name": "adam", "lr": 1.2e-3}
BUDGETS = {
  "mnist": {
    "models": ("lenet300100", "lenet5"),
    "epochs": 10,
    "optimizer": ADAM,
    "batch_size": 60,
    "rewind_step": 500,
    "train_subset": None,
    "sparsities": (0.9, 0.95, 0.98, 0.99, 0.995),
  },
  "cifar_cpu": {
    "models": ("resnet20",),
    "epochs": 6,
    "optimizer": {
      "name": "sgd",
      "lr": 0.1,
      "momentum": 0.9,
      "weight_decay": 1e-4,
      "lr_schedule": "multistep",
      "milestones": (0.5, 0.75),
    },
    "batch_size": 128,
    "rewind_step": 100,
    "train_subset": 15_000,
    "sparsities": (0.5, 0.8, 0.9),
  },
  "gpu": {
    "models": ("vgg16", "resnet18"),
    "epochs": 160,
    "optimizer": {
      "name": "sgd",
      "lr": 0.1,
      "momentum": 0.9,
      "weight_decay": 1e-4,
      "lr_schedule": "multistep",
      "milestones": (60 / 160, 120 / 160),
    },
    "batch_size": 128,
    "rewind_step": 500,
    "train_subset": None,
    "sparsities": (0.9, 0.968, 0.99, 0.9968, 0.999),
  },
  "smoke": {
    "models": ("lenet300100",),
    "epochs": 1,
    "optimizer": ADAM,
    "batch_size": 64,
    "rewind_step": 2,
    "train_subset": 1024,
    "sparsities": (0.5,),
  },
}
IMP_RATE = 0.2
DEFAULTS = {"method": "snip", "model": "lenet300100", "sparsity": "0.98", "seed": "0", "budget": "mnist"}


def parse(arg: str) -> dict[str, str]:
  o = parse_options(arg, DEFAULTS, study="init_lottery", example="method=synflow,sparsity=0.98,seed=0")
  check_choice("init_lottery", "method", o["method"], METHODS)
  check_choice("init_lottery", "model", o["model"], MODELS)
  check_choice("init_lottery", "budget", o["budget"], BUDGETS)
  return o


def imp_rounds(sparsity: float, rate: float = IMP_RATE) -> int:
  """Rounds of ``rate`` of the kept weights until at least ``sparsity`` is removed."""
  return math.ceil(math.log(1 - sparsity) / math.log(1 - rate) - 1e-9)


def _pai(method: str, sparsity: float) -> dict:
  base, shuffle = method.removesuffix("_shuffled"), method.endswith("_shuffled")
  if base == "magnitude":
    return {"name": "magnitude_pruning", "sparsity": sparsity}
  if base in ("random", "random_erk"):
    distribution = "erk" if base == "random_erk" else "uniform"
    return {"name": "random_pruning", "sparsity": sparsity, "distribution": distribution}
  extra = {"temperature": 200.0} if base == "grasp" else {"rounds": 100} if base == "synflow" else {}
  return {"name": base, "sparsity": sparsity, "shuffle": shuffle, **extra}


def _finetune(optimizer: dict) -> dict:
  return {**optimizer, "lr": optimizer["lr"] / 10, "lr_schedule": "constant"}


def get_config(arg: str = ""):
  o = parse(arg)
  b = BUDGETS[o["budget"]]
  s = float(o["sparsity"])
  m = o["method"]
  dataset, output = MODELS[o["model"]]
  c = base_config()
  c.study = "init_lottery"
  c.method = m
  c.model = o["model"]
  c.dataset = dataset
  c.variant = o["budget"] if m == "dense" else f"s{s:g}_{o['budget']}"
  c.seed = int(o["seed"])
  c.train_subset = b["train_subset"]
  c.batch_size = b["batch_size"]
  c.augment = dataset != "mnist"
  c.checkpoint_every_steps = 500
  c.init_batches = max(1, math.ceil(10 * 10 / b["batch_size"]))  # 10 x classes examples
  e, opt = b["epochs"], dict(b["optimizer"])
  if m == "dense":
    c.stages = [stage("dense", e, {"name": "dense"}, opt)]
  elif m in PAI or m in SHUFFLED:
    c.stages = [stage(m, e, _pai(m, s), opt)]
  else:
    c.evaluate_stages = True
    imp = {"name": "imp_round", "rate": IMP_RATE, "layer_rates": {output: IMP_RATE / 2}}
    rewinds = {"imp_init": {"stage": 0, "step": 0}, "imp_rewind": {"stage": 0, "step": b["rewind_step"]}}
    rewind = rewinds.get(m)
    round_opt = _finetune(opt) if m == "imp_finetune" else opt
    c.stages = [stage("dense", e, {"name": "dense"}, opt)] + [
      stage(f"round{k}", e, imp, round_opt, rewind_to=rewind) for k in range(1, imp_rounds(s) + 1)
    ]
  if o["budget"] == "smoke":
    c.val_size, c.eval_batch_size = 256, 256
    c.checkpoint_every_steps = 8
  return c


def grid(name: str) -> list[str]:
  """``<budget>[_<model>]``: dense first, then every PaI method at each sparsity, then each IMP
  variant once, to the budget's highest sparsity (its rounds give the other points)."""
  budget = next((b for b in BUDGETS if name == b or name.startswith(b + "_")), None)
  model = name[len(budget) + 1 :] if budget else ""
  if budget is None or (model and model not in MODELS):
    raise ValueError(
      f"init_lottery grid {name!r} is unknown; expected <budget>[_<model>] with budget in {sorted(BUDGETS)} "
      "(e.g. mnist, mnist_lenet5, cifar_cpu, gpu_vgg16)."
    )
  b = BUDGETS[budget]
  models = (model,) if model else b["models"]
  runs = []
  for mdl in models:
    where = f"model={mdl},budget={budget}"
    runs.append(f"method=dense,{where}")
    runs += [f"method={m},sparsity={s},{where}" for m in (*PAI, *SHUFFLED) for s in b["sparsities"]]
    runs += [f"method={m},sparsity={max(b['sparsities'])},{where}" for m in IMP]
  return runs


# ---------------------------------------------------------------------------------------------
# The report:
#   python -m experiments.report experiments/results/init_lottery --config experiments/configs/init_lottery.py
#
# Test accuracy against sparsity (PaI: one run per point; IMP: every round of one run), the
# seed-paired effect of shuffling each layer's mask, the per-layer densities at the highest
# sparsity, the runs in which a layer collapsed, and the cost of computing each mask.

import json  # noqa: E402
import os  # noqa: E402
from collections import defaultdict  # noqa: E402

import numpy as np  # noqa: E402

from experiments import report  # noqa: E402

PUBLISHED_CONTEXT = (
  "Published (PAPERS.md section 5; CIFAR-10, 160 epochs, so context for the gpu grid only): "
  "Synaptic-Flow's VGG-16-BN at 10% / 1% / 0.1% kept: random 91.15 / 79.14 / 10.00, magnitude at init "
  "93.12 / 89.80 / 10.00, SNIP 92.26 / 89.15 / 76.25, GraSP 91.84 / 87.49 / 70.93, SynFlow 93.26 / "
  "90.08 / 80.39. Renda et al. ResNet-20 at 10.7% kept: weight rewinding 91.00, LR rewinding 91.01, "
  "fine-tuning 89.33, rewinding to init 86.67 (dense 91.71)."
)
MASK_COST_COMMAND = (
  "python -m experiments.bench.mask_cost --json experiments/results/init_lottery/mask_cost.json"
)


def _sparsity_of(s) -> float:
  return float(s["config"]["stages"][-1]["pruner"].get("sparsity", 0.0)) if s["method"] not in IMP else None


def curves(study) -> dict:
  """``{(model, method): {sparsity: [(seed, test accuracy)]}}``; IMP rounds at the sparsity
  they reached (rounded to 3 decimals), the final round included."""
  out: dict = defaultdict(lambda: defaultdict(list))
  for s in study:
    key = (s["model"], s["method"])
    if s["method"] in IMP:
      points = [
        (r["sparsity"], r["test_accuracy"]) for k, r in s.get("stage_results", {}).items() if k != "0"
      ]
      points.append((s["sparsity"], s["test_accuracy"]))
      for sp, acc in points:
        out[key][round(sp, 3)].append((s["seed"], acc))
    elif s["method"] != "dense":
      out[key][_sparsity_of(s)].append((s["seed"], s["test_accuracy"]))
  return out


def accuracy_tables(study) -> list[str]:
  lines = []
  cv = curves(study)
  for model in sorted({s["model"] for s in study}):
    dense = [s["test_accuracy"] for s in study if s["model"] == model and s["method"] == "dense"]
    pai = sorted({sp for (mdl, m), pts in cv.items() if mdl == model and m not in IMP for sp in pts})
    if not pai and not dense:
      continue
    lines += [f"### {model}", ""]
    if dense:
      lines += [f"Dense: {report.mean_std(dense, 2)}.", ""]
    if pai:
      lines += [
        "| method | " + " | ".join(f"{sp:g}" for sp in pai) + " |",
        "| --- |" + " --- |" * len(pai),
      ]
      for m in (*PAI, *SHUFFLED):
        pts = cv.get((model, m), {})
        if pts:
          cells = [report.mean_std([a for _, a in pts[sp]], 2) if sp in pts else "-" for sp in pai]
          lines.append(f"| {m} | " + " | ".join(cells) + " |")
      lines.append("")
    for m in IMP:
      pts = cv.get((model, m), {})
      if pts:
        row = ", ".join(
          f"{sp:g}: {report.mean_std([a for _, a in pts[sp]], 2, always_n=False)}" for sp in sorted(pts)
        )
        lines += [f"- {m} (every round, sparsity: test acc in %): {row}"]
    lines.append("")
  return lines or ["(no runs yet)"]


def shuffle_claims(study) -> list[str]:
  out = []
  for model in sorted({s["model"] for s in study}):
    for m in ("snip", "grasp", "synflow"):
      for sp in sorted({_sparsity_of(s) for s in study if s["method"] == m and s["model"] == model}):
        a = report.by_seed(
          [s for s in study if s["model"] == model and s["method"] == m and _sparsity_of(s) == sp]
        )
        b = report.by_seed(
          [
            s
            for s in study
            if s["model"] == model and s["method"] == f"{m}_shuffled" and _sparsity_of(s) == sp
          ]
        )
        if a and b:
          out.append(f"- {model} at {sp:g}: {report.gap_text(f'{m} - {m}_shuffled', a, b)}")
  return out or ["- (no method with its shuffled twin yet)"]


def collapses(study) -> list[str]:
  out = []
  for s in sorted(study, key=lambda s: (s["model"], s["method"], s.get("sparsity", 0), s["seed"])):
    gone = [d["path"] for d in s.get("layer_density", []) if d["total"] and d["kept"] == 0]
    if gone:
      out.append(f"- {s['model']} {s['method']} {s['variant']} seed {s['seed']}: {', '.join(gone)}")
  return out or ["- none: every run kept at least one weight in every layer."]


def density_plot(study, path: str) -> bool:
  """Each layer's kept fraction at the highest sparsity a PaI method ran, per method."""
  drew = False
  models = sorted({s["model"] for s in study})
  fig, axes = report.plt.subplots(
    1, max(len(models), 1), figsize=(6 * max(len(models), 1), 3.6), squeeze=False
  )
  for ax, model in zip(axes[0], models, strict=True):
    runs = [s for s in study if s["model"] == model and s["method"] in (*PAI, *SHUFFLED, *IMP)]
    if not runs:
      continue
    top = max(s["sparsity"] for s in runs)
    for m in (*PAI, *IMP):
      at = [s for s in runs if s["method"] == m and abs(s["sparsity"] - top) < 0.01]
      if at:
        dens = np.mean([[d["kept"] / d["total"] for d in s["layer_density"]] for s in at], axis=0)
        ax.plot(dens, marker="o", ms=3, label=m)
        drew = True
    ax.set_yscale("log")
    ax.set_title(f"{model}, sparsity ~{top:.3f}", fontsize=9)
    ax.set_xlabel("layer (kernels, in order)")
    ax.set_ylabel("kept fraction")
    ax.grid(alpha=0.3)
    if ax.get_lines():
      ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  report.plt.close(fig)
  return drew


def curve_plot(study, path: str) -> bool:
  cv = curves(study)
  models = sorted({mdl for mdl, _ in cv})
  if not models:
    return False
  fig, axes = report.plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
  for ax, model in zip(axes[0], models, strict=True):
    for (mdl, m), pts in sorted(cv.items()):
      if mdl != model or m.endswith("_shuffled"):
        continue
      xs = sorted(pts)
      acc = [100 * np.array([a for _, a in pts[x]]) for x in xs]
      ax.errorbar(
        [100 * (1 - x) for x in xs],
        [a.mean() for a in acc],
        yerr=[a.std() for a in acc],
        marker="o",
        ms=3,
        capsize=2,
        label=m,
        ls="--" if m in IMP else "-",
      )
    dense = [100 * s["test_accuracy"] for s in study if s["model"] == model and s["method"] == "dense"]
    if dense:
      ax.axhline(np.mean(dense), color="k", lw=0.8, label="dense")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights kept (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(model, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  report.plt.close(fig)
  return True


def mask_cost(folder: str) -> list[str]:
  path = os.path.join(folder, "mask_cost.json")
  if not os.path.exists(path):
    return [f"(not measured yet: `{MASK_COST_COMMAND}`)"]
  with open(path) as f:
    bench = json.load(f)
  lines = [
    f"Measured by `{MASK_COST_COMMAND}` on {bench['device']} (median of {bench['rounds']} interleaved "
    "rounds, compiled first): the seconds to compute each method's masks and their multiple of one "
    "jitted training step of the same network and batch.",
    "",
    "| model | method | seconds | x one train step |",
    "| --- | --- | --- | --- |",
  ]
  lines += [f"| {r['model']} | {r['method']} | {r['s']:.4f} | {r['steps']:.1f} |" for r in bench["rows"]]
  return lines


def sections(runs, folder) -> list[str]:
  study = [s for s in runs if s.get("study") == "init_lottery"]
  planned = 3 * len(grid("mnist"))
  lines = [
    f"Runs collected: {len(study)} of the MNIST study's {planned} (grid `mnist`, seeds 0, 1 and 2)"
    + ("; the sweep is still running, so the tables are incomplete." if len(study) < planned else "."),
    "",
    "## Test accuracy against sparsity",
    "",
    "Test accuracy in % (mean +- std over seeds, n runs); sparsity is the removed fraction of the conv "
    "and dense kernels. IMP rows list every round of the run (its sparsity reached, the output layer "
    "pruned at half the rate).",
    "",
    *accuracy_tables(study),
  ]
  if curve_plot(study, os.path.join(folder, "accuracy.png")):
    lines += ["![test accuracy against weights kept](accuracy.png)", ""]
  lines += [
    "## Missing the mark: each layer's mask shuffled",
    "",
    "Frankle et al. (2021) found these methods keep their accuracy when each layer's mask is permuted "
    "at random (same per-layer density): a gap near 0 says the method chose the per-layer densities, "
    "not the weights.",
    "",
    *shuffle_claims(study),
    "",
    "## Per-layer density at the highest sparsity",
    "",
  ]
  if density_plot(study, os.path.join(folder, "density.png")):
    lines += ["![kept fraction per layer](density.png)", ""]
  lines += ["## Layer collapse", "", *collapses(study), "", "## Cost of computing the masks", ""]
  lines += [*mask_cost(folder), "", PUBLISHED_CONTEXT, "", "## Every run", "", report.table(study), ""]
  return lines


REPORT = {
  "title": "Pruning at initialization and lottery tickets, one protocol",
  "notes": (
    "Every mask is exact (round(s N) removed over one global ranking of the conv and dense kernels); "
    "methods, recipes and budgets: experiments/configs/init_lottery.py. The model reported is each "
    "run's last epoch; the test split is evaluated once per run (IMP: once per round)."
  ),
  "study": "init_lottery",
  "sections": [sections],
}
