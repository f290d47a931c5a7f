"""`make run`: every method side by side on LeNet-300-100 / MNIST, in a few minutes of a 2-core CPU.

    python -m experiments.sweep --config experiments/configs/quickstart.py --grid main \\
      --runs runs/quickstart --results runs/quickstart/summaries
    python -m experiments.report runs/quickstart/summaries --config experiments/configs/quickstart.py

One run per method (``method=<name>``), all on the same data (MNIST, 55k/5k train/validation split
drawn with the seed, no augmentation), the same seed, batch 128 and E = 4 epochs of optimizer
steps; the test split is evaluated once, on the last epoch's network:

- dense: SGD lr 0.05, momentum 0.9, weight decay 1e-4, cosine decay over the 4 epochs.
- mp_ft: the same training, one-shot global magnitude pruning to 90% of the kernels after 3
  epochs, and the last epoch fine-tunes the remaining weights (one stage, one LR schedule).
- gmp: gradual global magnitude pruning (Zhu & Gupta cubic schedule from epoch 0.5 to 2.5,
  masks every 50 steps) to 90%, the same optimizer.
- reparam: w * h_t(w) with the budget penalty at 90% (lambda 10, the value the Conv4 CPU study
  selected on its validation split; not re-selected for this model), t by Adam lr 1, then the
  hard prune to exactly 90%, no fine-tuning.
- aslp: the subnetwork of the untrained network (frozen weights, logits by SGD lr 50 momentum
  0.9, smart rescale by SGD lr 1e-3); its pruning rate is whatever the logits reach, not 90%.
  Reported: the extracted (m >= 0) accuracy and the mean of 5 passes with sampled masks.

Variant ``smoke`` (any method) runs in seconds on 2,048 images for the tests.
"""

from experiments.configs.base import base_config, check_choice, parse_options, stage

METHODS = ("dense", "mp_ft", "gmp", "reparam", "aslp")
EPOCHS = 4
SPARSITY = 0.9
SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "cosine"}
DEFAULTS = {"method": "dense", "seed": "0", "budget": "default"}


REPORT = {
  "title": "Quickstart: every method on LeNet-300-100 / MNIST (4 epochs, 90% target)",
  "notes": (
    "`make run`: one run per method, same data (MNIST, 55k/5k split, seed 0), batch 128 and 4 epochs "
    "(experiments/configs/quickstart.py has every setting). Sparsity is the removed fraction of the "
    "kernels; FLOPs are per example. ASLP keeps whatever its logits reach (its rate is not a target); "
    "its sampled column is the mean of 5 test passes with freshly sampled masks, reparam's is the soft "
    "network before the hard prune. One seed and a short budget: a first impression, not a study.\n\n"
    "The full studies: `experiments/results/aslp/` (ASLP against edge-popup and supermask, Conv2/4 "
    "on CIFAR-10) and `experiments/results/reparam/` (reparam against MP, MP+FT and gradual magnitude "
    "on Conv4, 90-99%), each with its own RESULTS.md."
  ),
}


def pruner(method: str) -> dict:
  if method == "dense":
    return {"name": "dense"}
  if method == "mp_ft":
    return {
      "name": "magnitude_pruning",
      "sparsity": {"schedule": "one_shot", "sparsity": SPARSITY, "at_epoch": 3},
    }
  if method == "gmp":
    schedule = {"schedule": "polynomial", "final_sparsity": SPARSITY, "begin_epoch": 0.5, "end_epoch": 2.5}
    return {"name": "magnitude_pruning", "sparsity": {**schedule, "frequency": 50}}
  if method == "reparam":
    return {"name": "reparam", "sparsity": SPARSITY, "budget_weight": 10.0}
  return {"name": "aslp", "smart_rescale": True}


def get_config(arg: str = ""):
  o = parse_options(arg, DEFAULTS, study="quickstart", example="method=gmp,seed=0")
  check_choice("quickstart", "method", o["method"], METHODS)
  check_choice("quickstart", "budget", o["budget"], ("default", "smoke"))
  method = o["method"]
  c = base_config()
  c.study = "quickstart"
  c.method = method
  c.model = "lenet300100"
  c.dataset = "mnist"
  c.variant = f"s{SPARSITY:g}" if method not in ("dense", "aslp") else "default"
  c.seed = int(o["seed"])
  c.augment = False
  c.batch_size = 128
  c.eval_finalized = True
  c.select_best = False
  c.checkpoint_every_steps = 1000
  c.log_every_steps = 50
  weights, masks, extra = SGD, None, {}
  if method == "reparam":
    masks = {"name": "adam", "lr": 1.0}
    c.test_evaluators = [{"name": "forward"}]  # the soft network just before the hard prune
  if method == "aslp":
    weights = {"name": "frozen"}
    masks = {"name": "sgd", "lr": 50.0, "momentum": 0.9}
    extra = {"rescale": {"name": "sgd", "lr": 1e-3, "momentum": 0.9}}
    c.test_evaluators = [{"name": "forward", "passes": 5}]
  c.stages = [stage(method, EPOCHS, pruner(method), weights, masks, extra)]
  if o["budget"] == "smoke":
    c.train_subset, c.val_size, c.eval_batch_size = 2048, 512, 512
    c.stages[0].epochs = 1
    c.log_every_steps = 4
  return c


def grid(name: str) -> list[str]:
  """``main``: one run per method (dense first); ``smoke``: the same in seconds."""
  if name not in ("main", "smoke"):
    raise ValueError(f"quickstart grid {name!r} is unknown; expected 'main' or 'smoke'.")
  budget = ",budget=smoke" if name == "smoke" else ""
  return [f"method={m}{budget}" for m in METHODS]
