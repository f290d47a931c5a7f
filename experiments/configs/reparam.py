"""Budget-aware pruning by weight reparametrization (PAPERS.md 2) and its magnitude baselines.

    python -m experiments.main --workdir runs/reparam/X \\
      --config 'experiments/configs/reparam.py:method=reparam,rate=0.95,lam=100,seed=0'

Keys of the argument (comma-separated ``key=value``):
  method  reparam | dense | mp | mp_ft | gmp
  model   conv4 (default) | vgg19 | resnet18 | any registered model
  rate    removed fraction of the prunable weights (0.9, 0.95, 0.97, 0.99)
  lam     reparam's lambda (budget weight); default: the one selected for (model, budget) in
          ``LAMBDA``, an error where none has been selected yet
  seed    the run's seed
  budget  cpu (default) | gpu | smoke
  runs    where the dense run lives for mp / mp_ft (default runs/reparam)

Methods, all on the same data, seed and weight optimizer:
- dense: E epochs of SGD (lr 0.01 Conv4 / 0.1 VGG19 and ResNet18, momentum 0.9, weight decay
  5e-4, cosine), random crop + flip, batch 128.
- mp: the dense run's final weights, global magnitude pruning to the rate, no training.
- mp_ft: mp, then F epochs of fine-tuning with the pruned weights held at zero (the same SGD).
- gmp: gradual magnitude pruning from scratch (Zhu & Gupta cubic schedule, global, masks updated
  every 50 steps from 10% to 70% of the E epochs), E epochs: the modern baseline at equal budget.
- reparam: E epochs from scratch of w * h_t(w) with the budget penalty, then the effective
  pruning (exactly the rate, smallest gates removed), no fine-tuning. Weights use the dense SGD;
  t (one per layer, init 100, n = 4) uses Adam lr 1.0 because its scale (~100) is four orders
  above the weights' and plain SGD at the weights' rate leaves it where it started.

Choices the paper does not give:
- lambda: chosen per (model, budget) on the validation split among {10, 100, 1000} at 95% (the
  grid's middle rate, grid ``select_<budget>[_<model>]``), reused for every rate; the criterion
  is the validation accuracy of the hard-pruned network at the end of training (the network the
  study reports), ties to the smaller lambda. The report prints the winner; ``LAMBDA`` below
  records it.
- The hard-prune rule (see pruning_jax.methods.reparam): global, by gate value h_t(w), exactly
  the target count.
- Model selection: the last epoch (the paper reports the trained network); the test split is
  evaluated once.

Budgets: ``cpu``: Conv4, 15,000 training images (seeded subset of the 45k split, validation
keeps its 5,000), E = 4 epochs, F = 1 (a CPU budget far below any paper's). ``gpu``: all 45k,
E = 160, F = 40.
"""

from experiments.configs.base import base_config, check_choice, parse_options, stage

# (model, budget) -> lambda selected on validation (see the docstring); lam= overrides.
# Conv4 / cpu: the winner of experiments/results/reparam/selection/ (its RESULTS.md table).
LAMBDA: dict[tuple[str, str], float] = {("conv4", "cpu"): 10.0}
SELECTION_LAMBDAS = (10.0, 100.0, 1000.0)
BUDGETS = {
  "cpu": {"epochs": 4, "finetune": 1, "train_subset": 15_000},
  "gpu": {"epochs": 160, "finetune": 40, "train_subset": None},
  "smoke": {"epochs": 1, "finetune": 1, "train_subset": 256},
}
DEFAULTS = {
  "method": "reparam",
  "model": "conv4",
  "rate": "0.9",
  "lam": "selected",
  "seed": "0",
  "budget": "cpu",
  "runs": "runs/reparam",
}
METHODS = ("reparam", "dense", "mp", "mp_ft", "gmp")
T_ADAM = {"name": "adam", "lr": 1.0, "lr_schedule": "constant"}


def parse(arg: str) -> dict[str, str]:
  o = parse_options(arg, DEFAULTS, study="reparam", example="method=reparam,rate=0.95,lam=100,seed=0")
  check_choice("reparam", "method", o["method"], METHODS)
  check_choice("reparam", "budget", o["budget"], BUDGETS)
  if o["lam"] == "selected":
    if o["method"] != "reparam":
      o["lam"] = "0"  # unused by the baselines
    elif (o["model"], o["budget"]) in LAMBDA:
      o["lam"] = repr(LAMBDA[(o["model"], o["budget"])])
    else:
      raise ValueError(
        f"reparam config: no lambda selected yet for model={o['model']}, budget={o['budget']}; run the grid "
        f"select_{o['budget']}_{o['model']} and record the winner in LAMBDA, or pass lam=<value>."
      )
  return o


def sgd(model: str) -> dict:
  lr = 0.01 if model.startswith("conv") else 0.1
  return {"name": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine"}


def variant_name(o: dict[str, str]) -> str:
  if o["method"] == "dense":
    return o["budget"]
  lam = f"_lam{float(o['lam']):g}" if o["method"] == "reparam" else ""
  return f"s{float(o['rate']):.2f}{lam}_{o['budget']}"


def dense_workdir(o: dict[str, str]) -> str:
  return f"{o['runs']}/{o['model']}_dense_{o['budget']}_seed{o['seed']}"


def get_config(arg: str = ""):
  o = parse(arg)
  b = BUDGETS[o["budget"]]
  rate = float(o["rate"])
  c = base_config()
  c.study = "reparam"
  c.method = o["method"]
  c.model = o["model"]
  c.variant = variant_name(o)
  c.seed = int(o["seed"])
  c.train_subset = b["train_subset"]
  c.batch_size = 128
  c.select_best = False
  c.eval_finalized = True
  c.checkpoint_every_steps = 200
  opt = sgd(o["model"])
  magnitude = {"name": "magnitude_pruning", "sparsity": rate}
  if o["method"] == "dense":
    c.stages = [stage("dense", b["epochs"], {"name": "dense"}, opt)]
  elif o["method"] == "mp":
    c.init_from = dense_workdir(o)
    c.stages = [stage("prune", 0, magnitude, opt)]
  elif o["method"] == "mp_ft":
    c.init_from = dense_workdir(o)
    c.stages = [stage("finetune", b["finetune"], magnitude, opt)]
  elif o["method"] == "gmp":
    schedule = {"schedule": "polynomial", "final_sparsity": rate, "begin_epoch": 0.1 * b["epochs"]}
    schedule.update(end_epoch=0.7 * b["epochs"], frequency=50)
    c.stages = [stage("gradual", b["epochs"], {"name": "magnitude_pruning", "sparsity": schedule}, opt)]
  else:
    pruner = {"name": "reparam", "sparsity": rate, "budget_weight": float(o["lam"]), "per_layer_t": True}
    c.stages = [stage("reparam", b["epochs"], pruner, opt, T_ADAM)]
    c.sampled_test_passes = 1  # the accuracy just before the hard prune (the soft network)
  if o["budget"] == "smoke":
    c.val_size, c.batch_size, c.eval_batch_size = 128, 64, 128
    c.checkpoint_every_steps = 2
    if o["method"] == "gmp":
      c.stages[0].pruner.sparsity.frequency = 1
  return c


def grid(name: str) -> list[str]:
  """``<budget>[_<model>]``: the study (model default conv4; dense first: mp and mp_ft start from
  it); ``select_<budget>[_<model>]``: the lambda selection runs."""
  kind, rest = ("select", name.removeprefix("select_")) if name.startswith("select_") else ("study", name)
  budget, _, model = rest.partition("_")
  if budget not in BUDGETS:
    raise ValueError(
      f"reparam grid {name!r} is unknown; expected [select_]<budget>[_<model>] with budget in "
      f"{sorted(BUDGETS)} (e.g. cpu, select_cpu, gpu_vgg19)."
    )
  where = f"model={model or DEFAULTS['model']},budget={budget}"
  if kind == "select":
    return [f"method=reparam,rate=0.95,lam={lam:g},{where}" for lam in SELECTION_LAMBDAS]
  runs = [f"method=dense,{where}"]
  for method in ("mp", "mp_ft", "gmp", "reparam"):
    runs += [f"method={method},rate={r},{where}" for r in (0.9, 0.95, 0.97, 0.99)]
  return runs
