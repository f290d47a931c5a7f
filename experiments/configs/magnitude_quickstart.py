"""Magnitude pruning of Conv4 on CIFAR-10 in a short CPU budget (`make run` until the ASLP
quickstart replaced it; its result, experiments/results/magnitude_quickstart/, was produced when
this file was experiments/configs/quickstart.py).

    python -m experiments.main --config experiments/configs/magnitude_quickstart.py \\
      --workdir runs/magnitude_quickstart

Budget (documented, not the papers'): 15,000 training images (seeded subset after carving the
5,000-image validation split), one epoch of dense SGD training, then one epoch in which the
weights are pruned to 90% (global magnitude, cubic Zhu & Gupta schedule over the first half of
the epoch, masks updated every 20 steps) while training continues. Variants: `smoke` (seconds).
"""

from experiments.configs.base import base_config, stage

SGD = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine"}


def get_config(arg: str = ""):
  c = base_config()
  c.study = "quickstart"
  c.method = "gradual_magnitude"
  c.model = "conv4"
  c.dataset = "cifar10"
  c.train_subset = 15_000
  c.variant = arg or "default"
  c.stages = [
    stage("dense", 1, {"name": "dense"}, SGD),
    stage(
      "prune",
      1,
      {
        "name": "magnitude_pruning",
        "sparsity": {
          "schedule": "polynomial",
          "final_sparsity": 0.9,
          "begin_epoch": 0.0,
          "end_epoch": 0.5,
          "frequency": 20,
        },
      },
      SGD,
    ),
  ]
  if arg == "smoke":
    c.train_subset = 512
    c.val_size = 256
    c.batch_size = 64
    c.eval_batch_size = 256
    c.stages[1].pruner.sparsity.frequency = 2
  return c


# python -m experiments.report experiments/results/magnitude_quickstart \\
#   --config experiments/configs/magnitude_quickstart.py
REPORT = {
  "title": "Quickstart: Conv4 / CIFAR-10, magnitude pruning to 90% (make run)",
  "notes": (
    "Budget (CPU, documented in experiments/configs/quickstart.py): 15,000 training images, 1 "
    "epoch dense SGD then 1 epoch pruning to 90% with a cubic schedule while training. A "
    "smoke-level budget: the accuracy shows the pipeline works, not what magnitude pruning "
    "reaches."
  ),
}
