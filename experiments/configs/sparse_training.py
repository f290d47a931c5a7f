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
  import jax  # noqa: F401 (the config stays importable without building a model)

  from pruning_jax import models

  base, kw, _ = MODELS[name]
  return models.get_model(base, **{**kw, **over})


def _counts(model, dataset: str) -> tuple[int, int]:
  """(every param, the conv and dense kernels) of ``model`` on ``dataset``'s inputs."""
  import jax
  import jax.numpy as jnp

  v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *INPUTS[dataset])))
  leaves = jax.tree.leaves(v["params"])
  return sum(x.size for x in leaves), sum(x.size for x in leaves if len(x.shape) > 1)


@functools.lru_cache(maxsize=None)
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
    raise ValueError(f"sparse_training config: method={m!r} is not in budget {o['budget']!r}'s {b['methods']}.")
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
