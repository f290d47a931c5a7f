"""Sparse training (RigL, SET) against static sparse, small-dense, gradual magnitude pruning,
hard-concrete L0 gates and L1 + fine-tuning, under one protocol (PAPERS.md section 5).

    python -m experiments.main --workdir runs/sparse_training/X \\
      --config 'experiments/configs/sparse_training.py:method=rigl_erk,sparsity=0.9,seed=0'

Keys of the argument (comma-separated ``key=value``):
  method    dense | rigl_erk | rigl_uniform | set | static | small_dense | gmp | l1_ft | l0
  model     resnet20 (cifar_cpu) | mlp (fmnist_mlp) | wrn22_2 (gpu); default: the budget's
  sparsity  the removed fraction of the conv and dense kernels (not for dense and l0)
  lam       l0's lambda per gate (its sparsity is what the penalty reaches, reported as such)
  seed      the run's seed
  budget    cifar_cpu (default) | fmnist_mlp | gpu | smoke

Methods (every one trains E epochs in all, by the budget's recipe, from a fresh init):
  dense         every weight.
  rigl_erk      RigL (Evci et al. 2020): random ERK masks, every delta_T = 100 steps each layer drops
                the fraction alpha_t (0.3, cosine-decayed to 0 at 75% of training) of its smallest
                active weights and grows as many inactive ones with the largest dense gradient;
                grown weights start at 0 with fresh optimizer moments.
  rigl_uniform  the same with every layer at the same sparsity.
  set           SET (Mocanu et al. 2018): RigL's drop, random growth. On ``fmnist_mlp`` SET's own
                rule (zeta = 0.3 undecayed, once per epoch, until the last epoch); elsewhere the
                RigL protocol (as in the RigL papers' comparisons).
  static        the same random ERK start, never updated.
  small_dense   a dense network narrowed (every width scaled by one factor) to the parameter count
                of the sparse ones.
  gmp           gradual magnitude pruning (Zhu & Gupta 2017): cubic schedule from 10% to 75% of
                training, masks updated every 100 steps, one global ranking.
  l1_ft         L1 on the kernels (lambda 5e-5) for 75% of the epochs, then an exact global
                magnitude prune to the sparsity and 25% of fine-tuning.
  l0            hard-concrete gates per weight (Louizos et al. 2018; drop rate 0.5 at init,
                log-odds trained by Adam 0.01), lambda per gate; the test network uses the
                deterministic gate.

Budgets (BUDGETS):
- ``cifar_cpu``: ResNet-20 on 15,000 CIFAR-10 training images (5,000 held out), E = 8, SGD lr 0.1
  momentum 0.9 wd 1e-4, x0.1 at 50% and 75%, batch 128, crop + flip; sparsities 0.8, 0.9, 0.95;
  l0 at lambda 1e-6, 1e-5, 1e-4: a short budget that ranks methods against each other, not the
  papers.
- ``fmnist_mlp``: SET's Fashion-MNIST MLP 784-1000-1000-1000-10 (ReLU; SET's code uses an
  alternated leaky ReLU and dropout 0.3, left out here), SET's SGD lr 0.01 momentum 0.9 wd 2e-4,
  batch 128, constant lr, E = 40 epochs on the 55,000/5,000 split; sparsity: SET's epsilon = 20
  Erdos-Renyi allocation (``set_epsilon_sparsity``: 95.5% of the kernels; ERK at that sparsity is
  the same allocation, the 1000 x 10 layer dense).
- ``gpu``: the RigL reproducibility study's CIFAR-10 WRN-22-2 at 80% and 90%, 250 epochs, batch 128,
  SGD lr 0.1 momentum 0.9 wd 5e-4 (its exact learning-rate schedule was not read here: x0.1 at 50%
  and 75%).
"""

import functools
import math

from experiments.configs.base import base_config, check_choice, parse_options, stage

METHODS = ("dense", "rigl_erk", "rigl_uniform", "set", "static", "small_dense", "gmp", "l1_ft", "l0")
SPARSE = ("rigl_erk", "rigl_uniform", "set", "static", "small_dense", "gmp", "l1_ft")
INPUTS = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
# model -> (the pruning_jax.models name, its kwargs, the width fields small_dense scales)
MODELS = {
  "resnet20": ("resnet20", {}, ("stage_widths",)),
  "mlp": ("lenet300100", {"widths": (1000, 1000, 1000)}, ("widths",)),
  "wrn22_2": ("wrn22_2", {}, ("stem_width", "stage_widths")),
}


def _sgd(lr, wd, schedule="multistep"):
  return {"name": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": wd, "lr_schedule": schedule}


BUDGETS = {
  "cifar_cpu": {
    "model": "resnet20",
    "dataset": "cifar10",
    "epochs": 8,
    "optimizer": _sgd(0.1, 1e-4),
    "train_subset": 15_000,
    "sparsities": (0.8, 0.9, 0.95),
    "lams": (1e-6, 1e-5, 1e-4),
    "methods": METHODS,
    "set_rule": "rigl",
  },
  "fmnist_mlp": {
    "model": "mlp",
    "dataset": "fashion_mnist",
    "epochs": 40,
    "optimizer": _sgd(0.01, 2e-4, "constant"),
    "train_subset": None,
    "sparsities": ("eps20",),
    "lams": (),
    "methods": ("dense", "set", "rigl_erk", "static", "small_dense"),
    "set_rule": "set",
  },
  "gpu": {
    "model": "wrn22_2",
    "dataset": "cifar10",
    "epochs": 250,
    "optimizer": _sgd(0.1, 5e-4),
    "train_subset": None,
    "sparsities": (0.8, 0.9),
    "lams": (),
    "methods": ("dense", "rigl_erk", "rigl_uniform", "set", "static", "small_dense", "gmp"),
    "set_rule": "rigl",
  },
  "smoke": {
    "model": "resnet20",
    "dataset": "cifar10",
    "epochs": 2,
    "optimizer": _sgd(0.1, 1e-4),
    "train_subset": 256,
    "sparsities": (0.8,),
    "lams": (1e-4,),
    "methods": METHODS,
    "set_rule": "rigl",
  },
}
DELTA_T, ALPHA, END = 100, 0.3, 0.75  # RigL's update period, initial drop fraction, stop fraction
L1_LAMBDA = 5e-5
L0_ADAM = {"name": "adam", "lr": 1e-2}
DEFAULTS = {"method": "rigl_erk", "sparsity": "0.9", "lam": "1e-5", "seed": "0", "budget": "cifar_cpu"}


def parse(arg: str) -> dict[str, str]:
  o = parse_options(
    arg, DEFAULTS, study="sparse_training", example="method=rigl_erk,sparsity=0.9,seed=0", optional=("model",)
  )
  check_choice("sparse_training", "budget", o["budget"], BUDGETS)
  o.setdefault("model", BUDGETS[o["budget"]]["model"])
  check_choice("sparse_training", "method", o["method"], METHODS)
  check_choice("sparse_training", "model", o["model"], MODELS)
  return o


def _model(name: str, **over):
  from pruning_jax import models  # imported here: the config loads without building a model

  base, kw, _ = MODELS[name]
  return models.get_model(base, **{**kw, **over})


def _counts(model, dataset: str) -> tuple[int, int]:
  """(every param, the conv and dense kernels) of ``model`` on ``dataset``'s inputs."""
  import jax
  import jax.numpy as jnp

  v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *INPUTS[dataset])))
  leaves = jax.tree.leaves(v["params"])
  return sum(x.size for x in leaves), sum(x.size for x in leaves if len(x.shape) > 1)


@functools.cache
def _dense_count(model: str, dataset: str, widths: tuple) -> int:
  return _counts(_model(model, **dict(widths)), dataset)[0]


def set_epsilon_sparsity(model: str, epsilon: float) -> float:
  """The kernel sparsity of SET's Erdos-Renyi allocation: each dense layer keeps
  ``min(1, epsilon (n_in + n_out) / (n_in n_out))`` of its weights."""
  import jax
  import jax.numpy as jnp

  m = _model(model)
  v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  kernels = [x.shape for x in jax.tree.leaves(v["params"]) if len(x.shape) == 2]
  kept = sum(min(1.0, epsilon * (i + o) / (i * o)) * i * o for i, o in kernels)
  return 1.0 - kept / sum(i * o for i, o in kernels)


def sparsity_of(model: str, value: str) -> float:
  """``"eps<k>"`` is SET's epsilon = k allocation; anything else is the removed fraction."""
  return set_epsilon_sparsity(model, float(value[3:])) if value.startswith("eps") else float(value)


def small_dense_widths(model: str, dataset: str, sparsity: float) -> dict:
  """The widths (every width field scaled by one factor k, rounded) whose dense parameter count
  is closest to the sparse network's non-zero count (its kernels at ``1 - sparsity``, every
  bias and BatchNorm parameter kept)."""
  _, kw, fields = MODELS[model]
  full = _model(model)
  total, kernels = _counts(full, dataset)
  target = total - round(sparsity * kernels)

  def widths(k):
    out = {}
    for f in fields:
      w = getattr(full, f)
      out[f] = max(1, round(w * k)) if isinstance(w, int) else tuple(max(1, round(x * k)) for x in w)
    return out

  def count(k):
    return _dense_count(model, dataset, tuple(sorted(widths(k).items())))

  lo, hi = 0.0, 1.0
  for _ in range(16):  # count is monotone in k; bisect, then take the nearest of the bracket
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
  best = min((lo, hi), key=lambda k: abs(count(k) - target))
  return widths(best)


def variant_name(o: dict) -> str:
  b = o["budget"]
  if o["method"] == "dense":
    return b
  if o["method"] == "l0":
    return f"lam{float(o['lam']):g}_{b}"
  return f"s{o['sparsity']}_{b}"


def get_config(arg: str = ""):
  o = parse(arg)
  b = BUDGETS[o["budget"]]
  m, model = o["method"], o["model"]
  if m not in b["methods"]:
    raise ValueError(
      f"sparse_training config: method={m!r} is not in budget {o['budget']!r}'s {b['methods']}."
    )
  c = base_config()
  c.study = "sparse_training"
  c.method = m
  c.model = MODELS[model][0]
  c.model_kwargs = dict(MODELS[model][1])
  c.dataset = b["dataset"]
  c.variant = variant_name(o)
  c.seed = int(o["seed"])
  c.train_subset = b["train_subset"]
  c.batch_size = 128
  c.augment = b["dataset"] == "cifar10"
  c.checkpoint_every_steps = 200
  c.log_every_steps = 50
  e, opt = b["epochs"], dict(b["optimizer"])
  s = sparsity_of(model, o["sparsity"]) if m not in ("dense", "l0") else 0.0
  smoke = o["budget"] == "smoke"
  delta = 2 if smoke else DELTA_T
  rigl_like = {"end_epoch": END * e, "every_steps": delta, "drop_fraction": ALPHA}
  if m == "dense":
    c.stages = [stage("dense", e, {"name": "dense"}, opt)]
  elif m in ("rigl_erk", "rigl_uniform"):
    dist = "erk" if m == "rigl_erk" else "uniform"
    c.stages = [stage(m, e, {"name": "rigl", "sparsity": s, "distribution": dist, **rigl_like}, opt)]
  elif m == "set":
    if b["set_rule"] == "set":  # once per epoch, zeta undecayed, until the last epoch
      rule = {"end_epoch": e - 1, "every_epochs": 1, "drop_fraction": ALPHA, "decay": "constant"}
    else:
      rule = rigl_like
    c.stages = [stage(m, e, {"name": "set_training", "sparsity": s, "distribution": "erk", **rule}, opt)]
  elif m == "static":
    c.stages = [stage(m, e, {"name": "random_pruning", "sparsity": s, "distribution": "erk"}, opt)]
  elif m == "small_dense":
    c.model_kwargs = {**c.model_kwargs, **small_dense_widths(model, b["dataset"], s)}
    c.stages = [stage(m, e, {"name": "dense"}, opt)]
  elif m == "gmp":
    schedule = {"schedule": "polynomial", "final_sparsity": s, "begin_epoch": 0.1 * e, "end_epoch": END * e}
    schedule["frequency"] = delta
    c.stages = [stage(m, e, {"name": "magnitude_pruning", "sparsity": schedule}, opt)]
  elif m == "l1_ft":
    e1 = math.floor(END * e)
    c.stages = [
      stage("l1", e1, {"name": "penalized", "weight": L1_LAMBDA, "penalty": "l1"}, opt),
      stage("finetune", e - e1, {"name": "magnitude_pruning", "sparsity": s}, opt),
    ]
  else:  # l0
    pruner = {"name": "l0_gates", "weight": float(o["lam"]), "droprate_init": 0.5}
    c.stages = [stage(m, e, pruner, opt, L0_ADAM)]
  if smoke:
    c.val_size, c.batch_size, c.eval_batch_size = 128, 32, 128
    c.checkpoint_every_steps = 4
    c.log_every_steps = 2
  return c


def grid(name: str) -> list[str]:
  """A budget's runs: dense first, every sparse method at each sparsity, l0 at each lambda."""
  if name not in BUDGETS:
    raise ValueError(f"sparse_training grid {name!r} is unknown; expected one of {sorted(BUDGETS)}.")
  b = BUDGETS[name]
  runs = [f"method=dense,budget={name}"]
  runs += [
    f"method={m},sparsity={s},budget={name}" for s in b["sparsities"] for m in b["methods"] if m in SPARSE
  ]
  runs += [f"method=l0,lam={lam:g},budget={name}" for lam in b["lams"] if "l0" in b["methods"]]
  return runs


# ---------------------------------------------------------------------------------------------
# The report (one line):
#   python -m experiments.report experiments/results/sparse_training \
#     --config experiments/configs/sparse_training.py
#
# Accuracy against sparsity and against training FLOPs (RigL's comparison), seed-paired claims,
# per-layer densities, L0's sparsity against lambda, and the step-time benchmark.

import json  # noqa: E402
import os  # noqa: E402
from collections import defaultdict  # noqa: E402

import numpy as np  # noqa: E402

from experiments import report  # noqa: E402

PUBLISHED_CONTEXT = (
  "Published (PAPERS.md section 5; context for the gpu grid only, never a target here): the RigL "
  "reproducibility study's CIFAR-10 WRN-22-2 at 80% sparsity, 250 epochs: RigL-ERK 93.1 +- 0.09, RigL "
  "uniform 92.6, SET-ERK 92.9, SET 92.7, static 91.2, small-dense 91.0, gradual pruning 93.2. RigL "
  "(ResNet-50, ImageNet, 1x training): ERK 80% 75.12, uniform 80% 74.60 (dense 76.8). L0-ARM reports "
  "that hard-concrete gates fail to sparsify WideResNets on CIFAR."
)
STEP_TIME_JSON = "experiments/results/bench_sparse_step/summary.json"
STEP_TIME_COMMAND = f"python -m experiments.bench.sparse_step --json {STEP_TIME_JSON}"


def _stages(s) -> list[dict]:
  return [*s.get("earlier_stages", {}).values(), s]


def training_flops(s) -> float | None:
  """Training FLOPs per example, RigL's accounting: 3 x the forward MACs of the masks of every
  step (forward, input gradient, weight gradient), and at each drop-and-grow update the dense
  weight gradient (``f_D - f_S`` more) for RigL, which grows from it."""
  total = 0.0
  for st in _stages(s):
    macs = st.get("training_macs_per_example")
    if macs is None:
      return None
    total += 3 * macs
    curve = st.get("train_curve") or []
    if s["method"].startswith("rigl") and curve and "updates" in curve[-1]:
      total += curve[-1]["updates"] * (s["flops_dense"] / 2 - curve[-1]["macs"])
  return 2 * total  # MACs -> FLOPs


def _key(s) -> tuple:
  return (s["model"], s["dataset"])


def _target(s) -> float | None:
  """The run's target sparsity (None for dense and l0): the grid's point, read off the config."""
  if s["method"] in ("dense", "l0"):
    return None
  p = s["config"]["stages"][-1]["pruner"]
  if s["method"] == "small_dense":
    return float(s["variant"].split("_")[0][1:]) if not s["variant"].startswith("seps") else None
  sp = p.get("sparsity")
  return round(float(sp["final_sparsity"] if isinstance(sp, dict) else sp), 4)


def _points(study):
  """``{(model, dataset): {method: {target: [summary]}}}``; small-dense at its sparse twin's point."""
  out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
  for s in study:
    t = _target(s)
    if s["method"] == "small_dense" and t is None:  # the epsilon point of fmnist_mlp
      t = round(sparsity_of("mlp", s["variant"].split("_")[0][1:]), 4)
    out[_key(s)][s["method"]][t].append(s)
  return out


def accuracy_tables(study) -> list[str]:
  lines = []
  for key, methods in sorted(_points(study).items()):
    dense = methods.get("dense", {}).get(None, [])
    dense_flops = [training_flops(s) for s in dense if training_flops(s)]
    targets = sorted({t for m, pts in methods.items() for t in pts if t is not None})
    lines += [f"### {key[0]} on {key[1]}", ""]
    if dense:
      lines += [f"Dense: {report.mean_std([s['test_accuracy'] for s in dense], 2)}.", ""]
    if targets:
      lines += [
        "Test accuracy in % (mean +- std over seeds), and in brackets the training FLOPs as a multiple of "
        "the dense run's (RigL's accounting; mean over seeds):",
        "",
        "| method | " + " | ".join(f"{t:g}" for t in targets) + " |",
        "| --- |" + " --- |" * len(targets),
      ]
      for m in METHODS:
        if m in ("dense", "l0") or m not in methods:
          continue
        cells = []
        for t in targets:
          runs = methods[m].get(t, [])
          if not runs:
            cells.append("-")
            continue
          cell = report.mean_std([s["test_accuracy"] for s in runs], 2)
          fl = [training_flops(s) for s in runs]
          if dense_flops and all(fl):
            cell += f" [{np.mean(fl) / np.mean(dense_flops):.2f}x]"
          cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
      lines.append("")
  return lines or ["(no runs yet)"]


def claims(study) -> list[str]:
  """Seed-paired gaps the papers' claims rest on, at every shared sparsity."""
  pairs = [
    ("rigl_erk", "static", "RigL beats the static sparse net it starts from"),
    ("rigl_erk", "set", "gradient growth beats random growth"),
    ("rigl_erk", "rigl_uniform", "ERK beats uniform"),
    ("rigl_erk", "small_dense", "a sparse net beats the dense one of its parameter count"),
    ("gmp", "rigl_erk", "gradual pruning (dense to sparse) matches or beats RigL at 1x"),
    ("l1_ft", "gmp", "L1 + fine-tune against gradual magnitude"),
  ]
  out = []
  for key, methods in sorted(_points(study).items()):
    for a, b, claim in pairs:
      for t in sorted(set(methods.get(a, {})) & set(methods.get(b, {})) - {None}):
        text = report.gap_text(f"{a} - {b}", report.by_seed(methods[a][t]), report.by_seed(methods[b][t]))
        out.append(f"- {key[0]} at {t:g} ({claim}): {text}")
  return out or ["- (no pair of methods at a shared sparsity yet)"]


def l0_table(study) -> list[str]:
  runs = sorted(
    (s for s in study if s["method"] == "l0"), key=lambda s: (s["model"], s["variant"], s["seed"])
  )
  if not runs:
    return ["(no L0 run yet)"]
  lines = [
    "The sparsity hard-concrete gates reach is whatever the penalty buys; the test network uses the "
    "deterministic gate (exact zeros).",
    "",
    "| model | lambda per gate | seed | sparsity reached | test accuracy |",
    "| --- | --- | --- | --- | --- |",
  ]
  for s in runs:
    lam = s["config"]["stages"][-1]["pruner"]["weight"]
    lines.append(
      f"| {s['model']} | {lam:g} | {s['seed']} | {s['sparsity']:.4f} | {100 * s['test_accuracy']:.2f} |"
    )
  return lines


def convergence(study) -> list[str]:
  """Whether each run's validation accuracy had stopped moving: its change over the last 20% of
  epochs (at least 2)."""
  out = []
  for s in sorted(study, key=lambda s: (s["model"], s["method"], s["variant"], s["seed"])):
    curve = [r["accuracy"] for r in s.get("val_curve", [])]
    if len(curve) < 5:
      continue
    k = max(2, len(curve) // 5)
    moved = 100 * (curve[-1] - curve[-k - 1])
    out.append(
      f"- {s['model']} {s['method']} {s['variant']} seed {s['seed']}: best val {100 * max(curve):.2f} "
      f"at epoch {s.get('best_val_epoch')}, the last {k} epochs moved {moved:+.2f} points"
    )
  return out


def flops_plot(study, path: str) -> bool:
  pts = _points(study)
  keys = sorted(pts)
  if not keys:
    return False
  fig, axes = report.plt.subplots(1, len(keys), figsize=(6 * len(keys), 4), squeeze=False)
  drew = False
  for ax, key in zip(axes[0], keys, strict=True):
    dense = [training_flops(s) for s in pts[key].get("dense", {}).get(None, [])]
    if not dense or not all(dense):
      continue
    for m, by_t in sorted(pts[key].items()):
      xs, ys = [], []
      for _, runs in sorted(by_t.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        fl = [training_flops(s) for s in runs]
        if all(fl):
          xs.append(np.mean(fl) / np.mean(dense))
          ys.append(100 * np.mean([s["test_accuracy"] for s in runs]))
      if xs:
        ax.plot(xs, ys, marker="o", ms=4, label=m, ls="" if m in ("dense",) else "-")
        drew = True
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs / dense")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{key[0]} on {key[1]}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  report.plt.close(fig)
  return drew


def density_lines(study) -> list[str]:
  """Each layer's kept fraction (mean over seeds) at the highest sparsity, per method."""
  lines = []
  for key, methods in sorted(_points(study).items()):
    targets = sorted(
      {t for m, pts in methods.items() if m not in ("small_dense",) for t in pts if t is not None}
    )
    if not targets:
      continue
    top = targets[-1]
    rows = {
      m: np.mean([[d["kept"] / d["total"] for d in s["layer_density"]] for s in methods[m][top]], axis=0)
      for m in METHODS
      if m in methods and top in methods[m] and m != "small_dense"
    }
    if not rows:
      continue
    layers = [
      d["path"].replace("/kernel", "") for d in next(iter(methods[next(iter(rows))][top]))["layer_density"]
    ]
    lines += [
      f"{key[0]} at {top:g}:",
      "",
      "| layer | " + " | ".join(rows) + " |",
      "| --- |" + " --- |" * len(rows),
    ]
    for i, name in enumerate(layers):
      lines.append(f"| {name} | " + " | ".join(f"{rows[m][i]:.3f}" for m in rows) + " |")
    lines.append("")
  return lines or ["(no sparse run yet)"]


def step_time(folder: str) -> list[str]:
  # the benchmark's folder beside the study's: experiments/results/bench_sparse_step/
  path = os.path.join(os.path.dirname(os.path.abspath(folder)), "bench_sparse_step", "summary.json")
  if not os.path.exists(path):
    return [f"(not measured yet: `{STEP_TIME_COMMAND}`)"]
  with open(path) as f:
    bench = json.load(f)
  lines = [
    f"Measured by `{STEP_TIME_COMMAND}` on {bench['device']} (median of {bench['rounds']} interleaved rounds "
    f"of {bench['steps']} steps; amortized over delta_T = {bench['delta_t']}: one update step in delta_T). "
    "Targets: RigL and SET <= 1.02x dense, L0 <= 1.08x.",
    "",
    "| model | variant | s / ordinary step | s / update step | amortized | x dense |",
    "| --- | --- | --- | --- | --- | --- |",
  ]
  for model, rows in bench["models"].items():
    for v, r in rows.items():
      lines.append(
        f"| {model} | {v} | {r['s_ordinary']:.4f} | {r['s_update']:.4f} | {r['s_amortized']:.4f} | "
        f"{r['ratio_to_dense']:.3f} |"
      )
  return lines


def sections(runs, folder) -> list[str]:
  study = [s for s in runs if s.get("study") == "sparse_training"]
  planned = {"fmnist_mlp": 3 * len(grid("fmnist_mlp")), "cifar_cpu": 2 * len(grid("cifar_cpu"))}
  done = {b: sum(1 for s in study if s["variant"].endswith(b)) for b in planned}
  lines = [
    "Runs collected: "
    + "; ".join(f"{done[b]} of {n} of grid `{b}`" for b, n in planned.items())
    + " (fmnist_mlp: seeds 0-2; cifar_cpu: seeds 0-1). Tables are incomplete until both finish.",
    "",
    "## Accuracy against sparsity, and training FLOPs",
    "",
    *accuracy_tables(study),
  ]
  if flops_plot(study, os.path.join(folder, "accuracy_vs_flops.png")):
    lines += ["![test accuracy against training FLOPs](accuracy_vs_flops.png)", ""]
  lines += [
    "## Claims, seed-paired",
    "",
    *claims(study),
    "",
    "## Per-layer densities at the highest sparsity",
    "",
    *density_lines(study),
    "",
    "## L0: sparsity reached against lambda",
    "",
    *l0_table(study),
    "",
    "## Convergence",
    "",
    *(convergence(study) or ["(no run with 5 or more epochs yet)"]),
    "",
    "## Step time",
    "",
    *step_time(folder),
    "",
    PUBLISHED_CONTEXT,
    "",
    "## Every run",
    "",
    report.table(study),
    "",
  ]
  return lines


REPORT = {
  "title": "Sparse training: RigL, SET and their baselines, one protocol",
  "notes": (
    "Masks are exact per layer (ERK or uniform); methods, recipes and budgets: "
    "experiments/configs/sparse_training.py. The model reported is each run's last epoch; the test "
    "split is evaluated once per run. Training FLOPs count the forward MACs of the masks each step "
    "trained with (logged every 50 steps), x3, plus RigL's dense gradient at each update."
  ),
  "study": "sparse_training",
  "sections": [sections],
}
