"""Defaults shared by every study config (each study overrides what it needs)."""

import ml_collections


def stage(name, epochs, pruner, optimizer, mask_optimizer=None, variable_optimizers=None, rewind_to=None):
  """One stage; ``variable_optimizers`` maps further pruner labels (e.g. ASLP's ``"rescale"``) to
  optimizer configs; ``rewind_to={"stage": i, "step": k}`` starts it from the params stage i had
  at step k (kept positions; the masks are this stage's)."""
  s = ml_collections.ConfigDict()
  s.name = name
  s.epochs = epochs
  s.pruner = ml_collections.ConfigDict(pruner)
  s.optimizer = ml_collections.ConfigDict(optimizer)
  s.mask_optimizer = ml_collections.ConfigDict(mask_optimizer) if mask_optimizer else None
  s.variable_optimizers = dict(variable_optimizers or {})
  s.rewind_to = ml_collections.ConfigDict(rewind_to) if rewind_to else None
  return s


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.study = "adhoc"
  c.method = "dense"
  c.variant = "default"
  c.model = "conv4"
  c.model_kwargs = {}
  c.dataset = "cifar10"
  c.data_dir = None  # None: $TFDS_DATA_DIR
  c.npz = None  # an .npz with train_image/train_label/test_image/test_label instead of TFDS
  c.val_size = 5000
  c.train_subset = None
  c.normalization = None  # ((mean per channel), (std per channel)); None: experiments.data.NORMALIZATION
  c.augment = True
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.seed = 0
  c.stages = []
  c.checkpoint_every_steps = 500
  c.log_every_steps = 50
  c.select_best = False
  c.eval_finalized = True
  c.max_steps_this_run = None  # stop (with a checkpoint) after this many steps: for tests
  c.progress = True
  # test evaluations besides the extracted subnetwork's (experiments/evaluators.py), e.g.
  # [{"name": "forward", "passes": 10}]: the method's own forward pass before extraction
  # (train=False): sampled masks (supermask, ASLP), the soft reparametrized net
  c.test_evaluators = []
  c.init_from = None  # a finished run's workdir: start from its reported (extracted) model
  c.init_batches = 1  # training batches a data-dependent pruner (SNIP, GraSP) scores at init
  c.evaluate_stages = False  # also test each earlier stage's hand-off (lottery rounds): stage_results
  # log the forward MACs of the masks each step trains with (training-FLOPs accounting: the
  # summary's training_macs_per_example); costs one traced forward pass per stage
  c.log_macs = True
  return c


def parse_options(
  arg: str, defaults: dict[str, str], *, study: str, example: str, optional=()
) -> dict[str, str]:
  """``"k1=v1,k2=v2"`` over ``defaults`` (keys in ``optional`` have no default), naming a bad item."""
  known = (*defaults, *optional)
  opts = dict(defaults)
  for item in filter(None, arg.split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in known:
      raise ValueError(
        f"{study} config argument {item!r}: expected key=value with key in {sorted(known)}, e.g. {example!r}."
      )
    opts[key] = value
  return opts


def check_choice(study: str, key: str, value: str, choices) -> None:
  if value not in choices:
    raise ValueError(f"{study} config: {key}={value!r}; expected one of {sorted(choices)}.")
