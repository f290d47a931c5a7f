"""Structured (channel) pruning with physical surgery, at equal MACs (PAPERS.md section 5).

    python -m experiments.main --workdir runs/structured/X \\
      --config 'experiments/configs/structured.py:method=l1_ft,reduction=0.5,seed=0'

Keys of the argument (comma-separated ``key=value``):
  method     dense | l1_ft | slimming | sfp | random | uniform
  model      resnet20 (default) | resnet56 | vgg16
  reduction  the MACs reduction against the dense model (0.3, 0.5)
  seed       the run's seed
  budget     cpu (default) | gpu | smoke
  runs       where the dense run lives for l1_ft (default runs/structured)

Every method ends in a network physically shrunk to its structure (the runner's ``shrink``
stage), whose MACs, parameters and accuracy the summary reports; the structure is found at the
target MACs reduction within 1% relative (a per-layer fraction of ResNet-20's channels moves in
coarse steps) by bisection
(:func:`pruning_jax.structured.keep_for_macs`). On ResNets only the inner channels of each block
are pruned (``tied=False``: the residual stream keeps its widths), as Li et al. and Pruning from
Scratch do; VGG prunes every conv.

- dense: E epochs of SGD (lr 0.1, momentum 0.9, weight decay 5e-4, cosine), batch 128, crop +
  flip, 45k/5k split. The reference, and the trained network l1_ft prunes.
- l1_ft (Li et al. 2017): the dense run's weights, the same fraction of each layer's filters
  with the smallest L1 norm removed (the fraction bisected to the MACs target), then F epochs
  of fine-tuning of the shrunk network (SGD lr 0.01, cosine).
- slimming (Liu et al. 2017): E epochs with lambda * sum |gamma| on the BatchNorm scales
  (lambda 1e-5 for ResNets, 1e-4 for VGG, the paper's), then the channels with the smallest
  |gamma| removed by one global ranking to the MACs target, then F epochs of fine-tuning.
- sfp (He et al. 2018): E + F epochs from scratch in which the lowest-L2 filters of each layer
  are zeroed at the end of every epoch and may regrow, then the last selection removed (no
  fine-tuning, as the paper's from-scratch setting). The per-layer rate is the one whose
  uniform removal meets the MACs target.
- random: a random structure at the target (random channel scores, one global ranking), trained
  from scratch for E + F epochs.
- uniform: every layer narrowed by the same fraction to the target, trained from scratch for E +
  F epochs.

Every pruned network thus sees E + F epochs of training in all (l1_ft: E dense + F fine-tuning),
the dense reference E.

Budgets: ``cpu``: ResNet-20, 15,000 training images (seeded subset of the 45k split; the 5,000
validation images are kept), E = 6, F = 3 (far below the papers' 160-200 epochs: the study
compares methods at one short budget, it does not reproduce their accuracies). ``gpu``: all
45k, E = 160, F = 40 (ResNet-56 and VGG-16 grids). Model selection: the last epoch; the test
split is evaluated once per run.
"""

from experiments.configs.base import base_config, check_choice, parse_options, stage

BUDGETS = {
  "cpu": {"epochs": 6, "finetune": 3, "train_subset": 15_000, "rtol": 1e-2},
  "gpu": {"epochs": 160, "finetune": 40, "train_subset": None, "rtol": 1e-2},
  # the smoke net's 8/16/16 channels move the MACs in steps of several percent
  "smoke": {"epochs": 1, "finetune": 1, "train_subset": 256, "rtol": 0.2},
}
DEFAULTS = {
  "method": "l1_ft",
  "model": "resnet20",
  "reduction": "0.5",
  "seed": "0",
  "budget": "cpu",
  "runs": "runs/structured",
}
METHODS = ("dense", "l1_ft", "slimming", "sfp", "random", "uniform")
# rtol: a per-block fraction of ResNet-20's inner channels moves in steps of ~0.7% of the MACs
# (the nearest reachable reductions to 30% and 50% are 30.2% and 49.6%)
SLIMMING_LAMBDA = {"resnet": 1e-5, "vgg": 1e-4}


def parse(arg: str) -> dict[str, str]:
  o = parse_options(arg, DEFAULTS, study="structured", example="method=l1_ft,reduction=0.5,seed=0")
  check_choice("structured", "method", o["method"], METHODS)
  check_choice("structured", "budget", o["budget"], BUDGETS)
  return o


def sgd(lr: float) -> dict:
  return {"name": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine"}


def variant_name(o: dict[str, str]) -> str:
  if o["method"] == "dense":
    return o["budget"]
  return f"r{float(o['reduction']):.2f}_{o['budget']}"


def dense_workdir(o: dict[str, str]) -> str:
  return f"{o['runs']}/{o['model']}_dense_{o['budget']}_seed{o['seed']}"


def _structure(criterion: str, reduction: float, scope: str, tied: bool, rtol: float) -> dict:
  return {
    "name": "channel_pruning",
    "criterion": criterion,
    "macs_reduction": reduction,
    "scope": scope,
    "tied": tied,
    "rtol": rtol,
  }


def _shrunk(name: str, epochs: float, optimizer: dict, *, reinit: bool = False):
  s = stage(name, epochs, {"name": "dense"}, optimizer)
  s.shrink = True
  s.reinit = reinit
  return s


def get_config(arg: str = ""):
  o = parse(arg)
  b = BUDGETS[o["budget"]]
  r = float(o["reduction"])
  e, f = b["epochs"], b["finetune"]
  vgg = o["model"].startswith("vgg")
  tied = vgg  # ResNets keep their residual widths
  c = base_config()
  c.study = "structured"
  c.method = o["method"]
  c.model = o["model"]
  c.variant = variant_name(o)
  c.seed = int(o["seed"])
  c.train_subset = b["train_subset"]
  c.checkpoint_every_steps = 200
  train, finetune = sgd(0.1), sgd(0.01)
  m = o["method"]
  if m == "dense":
    c.stages = [stage("dense", e, {"name": "dense"}, train)]
  elif m == "l1_ft":
    c.init_from = dense_workdir(o)
    c.stages = [
      stage("prune", 0, _structure("l1", r, "group", tied, b["rtol"]), finetune),
      _shrunk("finetune", f, finetune),
    ]
  elif m == "slimming":
    lam = SLIMMING_LAMBDA["vgg" if vgg else "resnet"]
    c.stages = [
      stage("sparsity", e, {"name": "penalized", "weight": lam, "selection": r"scale$"}, train),
      stage("prune", 0, _structure("bn_scale", r, "global", tied, b["rtol"]), finetune),
      _shrunk("finetune", f, finetune),
    ]
  elif m == "sfp":
    sfp = {
      "name": "soft_filter_pruning",
      "macs_reduction": r,
      "every_epochs": 1,
      "tied": tied,
      "rtol": b["rtol"],
    }
    c.stages = [stage("soft", e + f, sfp, train), _shrunk("shrink", 0, train)]
  else:  # random / uniform structures, trained from scratch
    scope = "global" if m == "random" else "group"
    c.stages = [
      stage("structure", 0, _structure("random", r, scope, tied, b["rtol"]), train),
      _shrunk("scratch", e + f, train, reinit=True),
    ]
  if o["budget"] == "smoke":
    c.val_size, c.batch_size, c.eval_batch_size = 128, 64, 128
    c.checkpoint_every_steps = 2
    c.model_kwargs = {"stage_widths": (8, 16, 16)} if not vgg else {}
  return c


def grid(name: str) -> list[str]:
  """``<budget>[_<model>]``: dense first (l1_ft starts from it), then every method at 30% and
  50% MACs reduction."""
  budget, _, model = name.partition("_")
  if budget not in BUDGETS:
    raise ValueError(
      f"structured grid {name!r} is unknown; expected <budget>[_<model>] with budget in {sorted(BUDGETS)} "
      "(e.g. cpu, gpu_resnet56, gpu_vgg16)."
    )
  where = f"model={model or DEFAULTS['model']},budget={budget}"
  runs = [f"method=dense,{where}"]
  for method in METHODS[1:]:
    runs += [f"method={method},reduction={r},{where}" for r in (0.3, 0.5)]
  return runs


# ---------------------------------------------------------------------------------------------
# The report:
#   python -m experiments.report experiments/results/structured --config experiments/configs/structured.py
#
# Tables: test accuracy by method and MACs reduction (mean +- std over seeds; the measured
# reduction of the shrunk network beside it), the seed-paired gaps the claims turn on (a pruned
# and fine-tuned network against the same structure's cheaper rivals: a random structure and the
# uniformly narrower network trained from scratch), the measured latency of each structure from
# the benchmark, and the per-layer widths. Published numbers (PAPERS.md section 5) as context:
# other budgets, other models (ResNet-56 where we ran ResNet-20 on CPU).

import json  # noqa: E402
import os  # noqa: E402
from collections import defaultdict  # noqa: E402

from experiments import report  # noqa: E402

REDUCTIONS = (0.3, 0.5)
PUBLISHED_CONTEXT = (
  "Published (PAPERS.md section 5; full budgets, mostly ResNet-56, so context only): L1-norm "
  "filter pruning ResNet-56 93.04 -> 93.10 at -10.4% FLOPs and 93.06 at -27.2%, VGG-16 93.25 -> "
  "93.40 at -34.2%; SFP ResNet-20 (92.20) 92.24 / 91.20 / 90.83 at -15.2 / -29.3 / -42.2% FLOPs, "
  "ResNet-56 from scratch 93.47 at -28.4% and 92.26 at -52.6%; network slimming VGG-19 93.77 -> "
  "93.78 with 70% of channels removed; Rethinking (Liu et al. 2019) ResNet-56-B Scratch-E 92.54."
)


def reduction_of(s) -> float | None:
  for st in s["config"]["stages"]:
    r = st["pruner"].get("macs_reduction")
    if r is not None:
      return float(r)
  return None


def rtol_of(s) -> float | None:
  for st in s["config"]["stages"]:
    if st["pruner"].get("macs_reduction") is not None:
      return float(st["pruner"]["rtol"])
  return None


def _dense_macs(study) -> dict[tuple[str, int], int]:
  return {(s["model"], s["seed"]): s["macs_per_example"] for s in study if s["method"] == "dense"}


def accuracy_table(study) -> list[str]:
  dense_macs = _dense_macs(study)
  head = "| model | method | " + " | ".join(
    f"-{r:.0%} MACs: test acc, measured reduction" for r in REDUCTIONS
  )
  lines = [head + " |", "| --- | --- |" + " --- |" * len(REDUCTIONS)]
  cells = defaultdict(list)
  for s in study:
    cells[(s["model"], s["method"], reduction_of(s))].append(s)
  for model in sorted({s["model"] for s in study}):
    dense = cells.get((model, "dense", None), [])
    if dense:
      acc = report.mean_std([s["test_accuracy"] for s in dense], 2, always_n=False)
      lines.append(f"| {model} | dense | {acc}, 0 |" + " |" * (len(REDUCTIONS) - 1))
    for method in METHODS[1:]:
      row = []
      for r in REDUCTIONS:
        runs = cells.get((model, method, r), [])
        if not runs:
          row.append("-")
          continue
        red = [
          1 - s["macs_per_example"] / dense_macs[(model, s["seed"])]
          for s in runs
          if (model, s["seed"]) in dense_macs
        ]
        measured = f"{min(red):.3f}-{max(red):.3f}" if red else "?"
        row.append(f"{report.mean_std([s['test_accuracy'] for s in runs], 2, always_n=False)}, {measured}")
      lines.append(f"| {model} | {method} | " + " | ".join(row) + " |")
  return lines


def claims(study) -> list[str]:
  out = []
  for model in sorted({s["model"] for s in study}):
    for r in REDUCTIONS:
      acc = {
        m: report.by_seed(
          [s for s in study if s["model"] == model and s["method"] == m and reduction_of(s) == r]
        )
        for m in METHODS[1:]
      }
      dense = report.by_seed([s for s in study if s["model"] == model and s["method"] == "dense"])
      gaps = [report.gap_text(f"{m} - dense", acc[m], dense) for m in METHODS[1:] if acc[m] and dense]
      gaps += [
        report.gap_text(f"{m} - {base}", acc[m], acc[base])
        for m in ("l1_ft", "slimming", "sfp")
        for base in ("uniform", "random")
        if acc[m] and acc[base]
      ]
      if gaps:
        out.append(f"- {model}, -{r:.0%} MACs: " + "; ".join(gaps) + ".")
  return out or ["- (no comparable runs yet)"]


def _flat_widths(kwargs: dict) -> list[int]:
  """A model's prunable widths in layer order: ResNet inner widths, VGG conv widths."""
  if "inner_widths" in kwargs:
    return list(kwargs["inner_widths"])
  return [w for w in kwargs.get("cfg", ()) if w != "M"]


def _dense_widths(s) -> list[int]:
  import jax
  import jax.numpy as jnp

  from pruning_jax import models

  m = models.get_model(s["model"], **s["config"].get("model_kwargs", {}))
  shapes = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  return _flat_widths(m.widths_of(shapes["params"]))


def width_plot(study, path: str) -> bool:
  """Each prunable layer's kept width as a fraction of the dense model's."""
  pruned = [s for s in study if reduction_of(s) is not None and s.get("model_kwargs")]
  if not pruned:
    return False
  fig, axes = report.plt.subplots(
    1, len(REDUCTIONS), figsize=(5 * len(REDUCTIONS), 3.6), sharey=True, squeeze=False
  )
  for ax, r in zip(axes[0], REDUCTIONS, strict=True):
    for s in sorted((s for s in pruned if reduction_of(s) == r), key=lambda s: (s["method"], s["seed"])):
      widths, full = _flat_widths(s["model_kwargs"]), _dense_widths(s)
      ax.plot(
        [w / f for w, f in zip(widths, full, strict=True)],
        marker="o",
        ms=3,
        label=f"{s['method']} s{s['seed']}",
      )
    ax.set_title(f"-{r:.0%} MACs", fontsize=9)
    ax.set_xlabel("layer (ResNet: each block's inner conv)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    if ax.get_lines():
      ax.legend(fontsize=6)
  axes[0][0].set_ylabel("kept width / dense width")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  report.plt.close(fig)
  return True


def latency_lines(folder: str) -> list[str]:
  path = os.path.join(os.path.dirname(os.path.normpath(folder)), "bench_structured", "summary.json")
  if not os.path.exists(path):
    return ["(no latency benchmark yet: `make bench` writes experiments/results/bench_structured/)"]
  with open(path) as f:
    bench = json.load(f)
  lines = [
    f"Measured by `python -m experiments.bench.structured_latency` on {bench['device']} (median of "
    f"{bench['rounds']} interleaved rounds), random-init structures at each MACs target: speedup "
    f"of the shrunk network over the dense one, against the MACs ratio (target >= {bench['target']} x).",
    "",
    "| model | widths rounded to | batch | MACs reduction | MACs ratio | speedup (shrunk) | speedup (masked) "
    "| speedup / MACs ratio |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ]
  for row in bench["rows"]:
    lines.append(
      f"| {row['model']} | {row.get('round_to') or '-'} | {row['batch']} | {row['macs_reduction']:.3f} "
      f"| {row['macs_ratio']:.2f} | {row['speedup']:.2f} | {row['masked_speedup']:.2f} "
      f"| {row['speedup_per_macs_ratio']:.4f}{'' if row['meets_target'] else ' (below)'} |"
    )
  probe = os.path.join(os.path.dirname(path), "width_probe", "summary.json")
  if os.path.exists(probe):
    with open(probe) as f:
      rows = json.load(f)["rows"]
    lines += [
      "",
      "Why widths matter on this CPU (`--width-probe`): the dense ResNet-56 at uniform stage widths, "
      f"batch {rows[0]['batch']}, against 16/32/64:",
      "",
      "| stage widths | MACs ratio | speedup |",
      "| --- | --- | --- |",
      *(f"| {r['stage_widths']} | {r['macs_ratio']:.2f} | {r['speedup']:.2f} |" for r in rows),
    ]
  return lines


def sections(runs, folder) -> list[str]:
  study = [s for s in runs if s.get("study") == "structured"]
  planned = 2 * len(grid("cpu"))  # the CPU study: its grid with seeds 0 and 1
  lines = [
    f"Runs collected: {len(study)} of the CPU study's {planned} (grid `cpu`, seeds 0 and 1)"
    + ("; the sweep is still running, so the tables are incomplete." if len(study) < planned else "."),
    "",
    "## Test accuracy at equal MACs",
    "",
    "Test accuracy in % (mean +- std over seeds) and the range of the measured MACs reduction of the "
    "shrunk networks. The dense reference trains E epochs; every pruned network E + F in all "
    "(l1_ft: the dense run's E plus F of fine-tuning), so a pruned network above dense may owe it "
    "to the extra epochs: the comparisons among pruned networks are the like-for-like ones.",
    "",
    *accuracy_table(study),
    "",
    "## Claims, seed-paired",
    "",
  ]
  lines += claims(study) + ["", PUBLISHED_CONTEXT, "", "## Latency of the shrunk networks", ""]
  lines += latency_lines(folder) + [""]
  if width_plot(study, os.path.join(folder, "widths.png")):
    lines += ["## Per-layer widths", "", "![kept width per layer](widths.png)", ""]
  lines += ["## Every run", "", report.table(study), ""]
  return lines


REPORT = {
  "title": "Structured pruning with physical surgery, at equal MACs",
  "notes": (
    "Every pruned network is physically shrunk (fewer channels, not masks); MACs and parameters are "
    "those of the shrunk network, counted from its own jaxpr. Budget and recipes: "
    "experiments/configs/structured.py (CPU: ResNet-20, 15,000 training images, 6 + 3 epochs; far "
    "below the papers' budgets, so accuracies compare methods with each other, not with the papers)."
  ),
  "study": "structured",
  "sections": [sections],
}
