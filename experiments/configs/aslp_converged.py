"""ASLP's claims where training converges: ASLP, edge-popup and supermask on untrained
LeNet-300-100 (MNIST, Fashion-MNIST), run to the reference's stopping rule (issue 18).

    python -m experiments.main --workdir runs/aslp_converged/X \\
      --config 'experiments/configs/aslp_converged.py:method=aslp,dataset=mnist,wr=1,sc=1,seed=0'

Keys of the argument (comma-separated ``key=value``):
  method   aslp | supermask | edge_popup
  dataset  mnist | fashion_mnist
  model    lenet300100 (default) | conv2 (Conv2 at 28x28: GPU-sized, ~5 min an epoch on this CPU)
  wr, sc   weight rescale and signed constant, as in experiments/configs/aslp.py; the signed
           constant goes on every masked layer (an MLP has no conv kernels)
  k        edge-popup's kept fraction per layer (default 0.5)
  seed     the run's seed (init, mask samples, data order and the 55k/5k split)
  budget   converged (default: up to 1000 epochs, early stopping with patience 100) | smoke

What one run measures (both protocols from the same run):
- Every epoch the validation split is evaluated twice: the method's own forward pass (ASLP and
  supermask sample a fresh mask per batch, as the reference validates) and the extracted
  subnetwork (m >= 0; edge-popup's top-k, which its forward pass already is).
- The reference's protocol (the run's primary selection, ``select_on[0]``): PyTorch Lightning's
  ModelCheckpoint and EarlyStopping both monitor the sampled ``val_acc``, patience 100, at most
  1000 epochs; the test then reports the sampled accuracy of that checkpoint and, with
  ``--prune-and-test`` (used by every command of the README's "paper configurations"), the
  accuracy after extraction. Here: ``test_accuracy`` (extracted) and
  ``test_accuracy_sampled_mean`` (10 sampled passes) of the best sampled-validation epoch.
- Ours: the checkpoint with the best extracted validation accuracy among the same epochs,
  ``protocols["extracted"]``, tested the same two ways.
- ``learned_stats``: per layer and epoch, the fraction of logits with |m| above 0.5, 1, 2 and 4
  (a logit decides its weight under the Logistic noise only once |m| is a few units).

Choices (all methods share them):
- Data: all 60k training images, a 55k/5k train/validation split drawn with the seed, no
  augmentation, per-dataset normalization (experiments/data.py); batch 256.
- Net: LeNet-300-100 with frozen He-normal (fan-in) kernels and frozen PyTorch-default biases,
  never masked.
- Optimisers: the reference's main.py for every method. Logits and scores: SGD lr 50, momentum
  0.9, no weight decay, constant. The reference runs edge-popup inside its own framework with
  this same mask optimizer (strategies/edge-popup/optimizer_functions.py), unlike the CPU-budget
  CIFAR study (experiments/configs/aslp.py), which uses edge-popup's paper recipe (lr 0.1,
  cosine, weight decay 1e-4): a cosine schedule has no length when the run stops by patience.
  Smart rescale: SGD lr 1e-3, momentum 0.9, from the same sampled pass as the logits (the
  reference runs a second pass for it).
"""

from __future__ import annotations

from experiments.configs import aslp
from experiments.configs.base import base_config, check_choice, parse_options, stage

MAX_EPOCHS = 1000
PATIENCE = 100
THRESHOLDS = [0.5, 1.0, 2.0, 4.0]
DEFAULTS = {
  "method": "aslp",
  "dataset": "mnist",
  "model": "lenet300100",
  "wr": "0",
  "sc": "0",
  "k": "0.5",
  "seed": "0",
  "budget": "converged",
}
DATASETS = ("mnist", "fashion_mnist")


def parse(arg: str) -> dict[str, str]:
  opts = parse_options(
    arg, DEFAULTS, study="aslp_converged", example="method=aslp,dataset=mnist,wr=1,sc=1,seed=0"
  )
  check_choice("aslp_converged", "method", opts["method"], ("aslp", "supermask", "edge_popup"))
  check_choice("aslp_converged", "dataset", opts["dataset"], DATASETS)
  check_choice("aslp_converged", "model", opts["model"], ("lenet300100", "conv2"))
  check_choice("aslp_converged", "budget", opts["budget"], ("converged", "smoke"))
  try:
    k = float(opts["k"])
  except ValueError:
    k = -1.0
  if not 0.0 < k <= 1.0:
    raise ValueError(
      f"aslp_converged config: k={opts['k']!r}; expected edge-popup's kept fraction in (0, 1]."
    )
  return opts


def variant_name(o: dict[str, str]) -> str:
  """``mnist_wr+sc``; edge-popup's also names k: ``mnist_sc_k0.500``."""
  k = f"_k{float(o['k']):.3f}" if o["method"] == "edge_popup" else ""
  return f"{o['dataset']}_{aslp.variant_name({**o, 'da': '0'})}{k}"


def get_config(arg: str = ""):
  o = parse(arg)
  c = base_config()
  c.study = "aslp_converged"
  c.method = o["method"]
  c.model = o["model"]
  c.model_kwargs = {"he_normal": True, "torch_bias": True} if o["model"] == "lenet300100" else {}
  c.dataset = o["dataset"]
  c.variant = variant_name(o)
  c.seed = int(o["seed"])
  c.augment = False
  c.batch_size = 256
  c.val_size = 5000
  c.select_best = True
  sampled = o["method"] in ("aslp", "supermask")
  # the sampled forward pass first: it is what the reference monitors and stops on
  c.select_on = ["forward", "extracted"] if sampled else ["extracted"]
  c.test_evaluators = [{"name": "forward", "passes": 10}] if sampled else []
  c.learned_stats = THRESHOLDS
  c.log_macs = False
  pruner = aslp.pruner(o, keep_fraction=float(o["k"]), signed_constant_layers="all")
  extra = {"rescale": aslp.RESCALE_SGD} if (o["method"] == "aslp" and o["wr"] == "1") else {}
  epochs = MAX_EPOCHS if o["budget"] == "converged" else 3
  c.stages = [stage(o["method"], epochs, pruner, aslp.FROZEN, aslp.MASK_SGD, extra)]
  c.stages[0].patience = PATIENCE if o["budget"] == "converged" else 1
  c.checkpoint_every_steps = 2000
  c.log_every_steps = 200
  if o["budget"] == "smoke":
    c.train_subset, c.val_size, c.batch_size, c.eval_batch_size = 512, 256, 64, 256
    c.test_evaluators = [{"name": "forward", "passes": 2}] if sampled else []
    c.log_every_steps = 4
  return c


# The cells run with three seeds (the claims' pairs); every other cell runs seed 0.
HEADLINE = (
  ("aslp", "0", "1", "0.5"),
  ("aslp", "1", "1", "0.5"),
  ("supermask", "1", "1", "0.5"),
  ("edge_popup", "0", "1", "0.5"),
)
SEED0_ONLY = (
  ("aslp", "0", "0", "0.5"),
  ("aslp", "1", "0", "0.5"),
  ("supermask", "0", "0", "0.5"),
  ("supermask", "1", "0", "0.5"),
  ("supermask", "0", "1", "0.5"),
  ("edge_popup", "1", "1", "0.5"),
  ("edge_popup", "0", "1", "0.3"),
  ("edge_popup", "0", "1", "0.7"),
)


def grid(name: str) -> list[str]:
  """``<dataset>``: the headline cells for seeds 0, 1, 2 and the rest for seed 0, seed 0 first
  (a partial sweep already compares every method); ``smoke``: one tiny run per method.

  Edge-popup at ASLP's emergent rate is its own grid, ``<dataset>_matched``: it reads the
  collected ASLP summaries (experiments/results/aslp_converged) for the kept fraction, so it
  runs once the ASLP cells are in.
  """
  if name == "smoke":
    return [f"method={m},dataset=mnist,sc=1,budget=smoke" for m in ("aslp", "supermask", "edge_popup")]
  dataset = name.removesuffix("_matched")
  if dataset not in DATASETS:
    raise ValueError(
      f"aslp_converged grid {name!r} is unknown; expected one of {list(DATASETS)}, <dataset>_matched, smoke."
    )
  if name != dataset:
    return matched_runs(dataset)
  cells = [(cell, 0) for cell in HEADLINE + SEED0_ONLY] + [(cell, s) for s in (1, 2) for cell in HEADLINE]
  return [f"method={m},dataset={dataset},wr={wr},sc={sc},k={k},seed={s}" for (m, wr, sc, k), s in cells]


RESULTS = "experiments/results/aslp_converged"


def matched_runs(dataset: str, folder: str = RESULTS) -> list[str]:
  """Edge-popup (SC) at the kept fraction each seed's ASLP SC run reached (extracted m >= 0)."""
  from experiments import report

  runs = [
    s
    for s in report.load_summaries(folder)
    if s["method"] == "aslp" and s["variant"] == f"{dataset}_sc" and s["study"] == "aslp_converged"
  ]
  if not runs:
    raise ValueError(
      f"aslp_converged grid {dataset}_matched: no ASLP '{dataset}_sc' summary in {folder} yet; run the "
      f"{dataset} grid's ASLP cells first."
    )
  return [
    f"method=edge_popup,dataset={dataset},wr=0,sc=1,k={1.0 - s['sparsity']:.3f},seed={s['seed']}"
    for s in sorted(runs, key=lambda s: s["seed"])
  ]
