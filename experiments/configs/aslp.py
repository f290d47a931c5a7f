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
  budget  cpu (default) | full (the reference's 1000-epoch cap; GPU only) | smoke (seconds)

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
- Selection: the validation accuracy of the deterministic extracted subnetwork (m >= 0 for ASLP
  and supermask, top-k for edge-popup) after every epoch picks the reported checkpoint; the
  reference selects on the stochastic accuracy. The test split is evaluated once, on that
  checkpoint: the deterministic accuracy, and for supermask (and ASLP at the full budget) also
  the mean of 10 passes with freshly sampled masks (supermask's published protocol).
- CPU budget (``budget=cpu``): 10,000 training images (a seeded subset of the 45k split; the
  validation split keeps its 5,000) and 5 epochs (195 steps of 256) for every method and net;
  the reference trains up to 1000 epochs with patience 100 on 45k, so absolute accuracies sit
  far below the published ones. A Conv2 step takes ~2 s on the 2-core CPU, Conv4 ~3 s.
"""

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


def pruner(o: dict[str, str]) -> dict:
  wr, sc = o["wr"] == "1", o["sc"] == "1"
  if o["method"] == "aslp":
    return {
      "name": "aslp",
      "temperature": 1.0,
      "smart_rescale": wr,
      "signed_constant": sc,
      "signed_constant_layers": "conv",
    }
  if o["method"] == "supermask":
    return {"name": "supermask", "dynamic_rescale": wr, "signed_constant": sc}
  return {
    "name": "edge_popup",
    "keep_fraction": 0.5,
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
  c.sampled_test_passes = 10 if sampled else 0
  epochs = {"cpu": CPU_EPOCHS, "full": FULL_EPOCHS, "smoke": 1}[o["budget"]]
  if o["budget"] == "cpu":
    c.train_subset = CPU_TRAIN_IMAGES
  epochs = float(o.get("epochs", epochs))
  mask_opt = SCORES_SGD if o["method"] == "edge_popup" else MASK_SGD
  extra = {"rescale": RESCALE_SGD} if (o["method"] == "aslp" and o["wr"] == "1") else {}
  c.stages = [stage(o["method"], epochs, pruner(o), FROZEN, mask_opt, extra)]
  c.checkpoint_every_steps = 100
  c.log_every_steps = 25
  if o["budget"] == "smoke":
    c.train_subset, c.val_size, c.batch_size, c.eval_batch_size = 512, 256, 64, 256
    c.sampled_test_passes = min(c.sampled_test_passes, 2)
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
