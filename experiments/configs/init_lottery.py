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
