"""Dense baselines (the reference for later studies).

    python -m experiments.main --config experiments/configs/dense.py:conv4 --workdir runs/dense_conv4

Conv4 on CIFAR-10, 10 epochs (a CPU budget, documented; the LTH recipe uses 34 epochs of Adam
without augmentation, hidden-networks 100 epochs of SGD), SGD lr 0.01 momentum 0.9, weight decay
5e-4, cosine decay, batch 128, random crop + flip, 45k/5k train/val split (seed 0); the test split
is evaluated once with the last epoch's weights. Variant `smoke` runs in seconds.
"""

from experiments.configs.base import base_config, stage


def get_config(arg: str = "conv4"):
  c = base_config()
  model, _, extra = arg.partition(",")
  c.study = "dense"
  c.method = "dense"
  c.variant = arg
  c.model = model if model != "smoke" else "conv2"
  c.dataset = "cifar10"
  sgd = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine"}
  c.stages = [stage("dense", 10, {"name": "dense"}, sgd)]
  c.checkpoint_every_steps = 350
  if model == "smoke" or extra == "smoke":
    c.train_subset, c.val_size, c.batch_size, c.eval_batch_size = 256, 128, 64, 128
    c.stages[0].epochs = 1
  return c


# python -m experiments.report experiments/results/dense --config experiments/configs/dense.py
REPORT = {
  "title": "Dense baselines",
  "notes": (
    "Conv4 on CIFAR-10 (the shared JPEG-approximated copy), 10 epochs of SGD (lr 0.01, momentum "
    "0.9, wd 5e-4, cosine), batch 128, crop+flip, 45k/5k split, last-epoch weights; command and "
    "config in the JSON. The reference for later Conv4 studies."
  ),
}
