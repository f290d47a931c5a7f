"""The experiment runner end to end on tiny synthetic data (an .npz source, no TFDS needed)."""

import inspect
import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import write_tiny_cifar_npz

import pruning_jax as pj
from experiments import checkpoints as ckpt_lib
from experiments import data as data_lib
from experiments import train
from experiments.configs.base import base_config, stage
from pruning_jax import models as models_lib

SGD = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine"}


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
  return write_tiny_cifar_npz(tmp_path_factory.mktemp("data") / "tiny.npz", 160, 40)


def tiny_config(npz, **overrides):
  c = base_config()
  c.model = "conv2"
  c.model_kwargs = {"conv_widths": (8, 8), "dense_widths": (16, 16)}
  c.npz = npz
  c.val_size = 32
  c.batch_size = 32
  c.eval_batch_size = 32
  c.progress = False
  c.log_macs = False  # one test below turns it on
  c.checkpoint_every_steps = 2
  c.log_every_steps = 1
  c.stages = [
    stage("dense", 1, {"name": "dense"}, SGD),
    stage(
      "prune",
      1,
      {
        "name": "magnitude_pruning",
        "sparsity": {
          "schedule": "polynomial",
          "final_sparsity": 0.8,
          "begin_epoch": 0,
          "end_epoch": 0.5,
          "frequency": 1,
        },
      },
      SGD,
    ),
  ]
  for k, v in overrides.items():
    c[k] = v
  return c


def test_two_stage_run_writes_summary_and_metrics(npz, tmp_path):
  s = train.train_and_evaluate(tiny_config(npz, log_macs=True), str(tmp_path))
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  for key in (
    "study",
    "method",
    "model",
    "dataset",
    "variant",
    "seed",
    "epochs",
    "steps",
    "test_accuracy",
    "best_val_accuracy",
    "sparsity",
    "sparsity_all",
    "params_total",
    "params_nonzero",
    "flops_dense",
    "flops_effective",
    "wall_time_s",
    "device",
    "git_commit",
    "command",
    "config",
  ):
    assert key in on_disk, key
  kernels = 3 * 3 * 3 * 8 + 3 * 3 * 8 * 8 + 16 * 16 * 8 * 16 + 16 * 16 + 16 * 10
  assert s["sparsity"] == pytest.approx(round(0.8 * kernels) / kernels)
  assert s["steps"] == 2 * (128 // 32)
  assert s["flops_effective"] < s["flops_dense"]
  lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {r["split"] for r in lines} == {"train", "val"} and lines[-1]["stage"] == 1
  # training MACs: the dense stage's 4 steps at the dense count; the pruned stage ends at the
  # finalized network's count (the logged masks' MACs agree with count_flops)
  assert s["earlier_stages"]["0"]["training_macs_per_example"] == 4 * s["flops_dense"] // 2
  last = [r for r in lines if r["split"] == "train" and r["stage"] == 1][-1]
  assert last["macs"] == s["flops_effective"] // 2
  assert 4 * last["macs"] < s["training_macs_per_example"] < 4 * s["flops_dense"] // 2


def _final_params(workdir):
  """The TrainState tree of the newest checkpoint, restored without a template."""
  ck = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
  step = max(ck.mngr.all_steps())
  raw = ck.mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  ck.close()
  return raw["state"]["train"]


@pytest.mark.slow  # make test time; bit-exact resume mid-stage: test_a_shrink_stage_goes_on_... (fast)
def test_resume_is_bit_exact(npz, tmp_path):
  full = train.train_and_evaluate(tiny_config(npz), str(tmp_path / "full"))
  part = tmp_path / "part"
  first = train.train_and_evaluate(tiny_config(npz, max_steps_this_run=3), str(part))
  assert first == {"interrupted": True, "stage": 0, "step": 3}
  second = train.train_and_evaluate(tiny_config(npz, max_steps_this_run=3), str(part))
  assert second["interrupted"] and second["stage"] == 1
  resumed = train.train_and_evaluate(tiny_config(npz), str(part))
  a, b = _final_params(tmp_path / "full"), _final_params(part)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  for key in ("test_accuracy", "best_val_accuracy", "sparsity", "params_nonzero", "flops_effective"):
    assert resumed[key] == full[key], key


def _narrower_from_scratch(npz, **overrides):
  c = tiny_config(npz, **overrides)
  c.stages = [stage("dense", 1, {"name": "dense"}, SGD), stage("scratch", 1, {"name": "dense"}, SGD)]
  c.stages[1].model_kwargs = {"conv_widths": (4, 8)}
  c.stages[1].reinit = True
  return c


@pytest.mark.slow  # make test time; a rebuilt model resumes in test_a_shrink_stage_goes_on_...(fast)
def test_a_stage_trains_a_narrower_model_from_scratch_and_resumes_exactly(npz, tmp_path):
  full = train.train_and_evaluate(_narrower_from_scratch(npz), str(tmp_path / "full"))
  part = tmp_path / "part"
  steps_per_stage = full["steps"] // 2
  first = train.train_and_evaluate(
    _narrower_from_scratch(npz, max_steps_this_run=steps_per_stage + 1), str(part)
  )
  assert first == {"interrupted": True, "stage": 1, "step": 1}  # stopped inside the narrower stage
  resumed = train.train_and_evaluate(_narrower_from_scratch(npz), str(part))
  a, b = _final_params(tmp_path / "full"), _final_params(part)
  assert a["params"]["Conv3x3_0"]["kernel"].shape == (3, 3, 3, 4)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  narrow = models_lib.get_model("conv2", num_classes=10, conv_widths=(4, 8), dense_widths=(16, 16))
  example = jnp.zeros((1, 32, 32, 3))
  n = sum(x.size for x in jax.tree.leaves(narrow.init(jax.random.key(0), example)["params"]))
  assert full["params_total"] == resumed["params_total"] == n
  assert resumed["test_accuracy"] == full["test_accuracy"]


def test_a_stage_whose_model_the_hand_off_does_not_fit_is_refused_before_training(npz, tmp_path):
  c = _narrower_from_scratch(npz)
  c.stages[1].reinit = False
  with pytest.raises(
    ValueError, match=r"stages\[1\]: the model has \['Conv3x3_0'\]\['bias'\] of shape \(4,\).*reinit=True"
  ):
    train.train_and_evaluate(c, str(tmp_path))
  assert not os.path.exists(tmp_path / "metrics.jsonl")


def test_corrupted_checkpoint_falls_back_to_previous(npz, tmp_path, capsys):
  train.train_and_evaluate(tiny_config(npz, max_steps_this_run=4, checkpoint_every_steps=1), str(tmp_path))
  ckdir = tmp_path / "checkpoints"
  steps = sorted(int(p) for p in os.listdir(ckdir) if p.isdigit())
  assert steps == [3, 4]
  shutil.rmtree(ckdir / "4" / "state")  # the newest is damaged
  (ckdir / "4" / "state").write_text("garbage")
  s = train.train_and_evaluate(tiny_config(npz), str(tmp_path))
  err = capsys.readouterr().err
  assert "checkpoint 4" in err and "unreadable" in err and "resuming from stage 0 step 3" in err
  assert s["steps"] == 8


def test_a_state_that_cannot_be_built_leaves_the_checkpoint_for_a_fixed_program(tmp_path):
  ckpt = ckpt_lib.Checkpoints(str(tmp_path))
  ckpt.save(3, {"w": np.ones(2, np.float32)}, {"stage": 0})

  def broken(meta):
    raise TypeError("the template's own bug")

  with pytest.raises(RuntimeError, match=r"checkpoint 3 .*TypeError: the template's own bug.*left in place"):
    ckpt.restore(broken)
  meta, state = ckpt.restore(lambda meta: {"w": np.zeros(2, np.float32)})
  assert meta == {"stage": 0}
  np.testing.assert_array_equal(state["w"], np.ones(2, np.float32))
  ckpt.close()


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(npz, tmp_path):
  sgd = dict(SGD, lr=1e6, lr_schedule="constant")
  c = tiny_config(npz)
  c.stages = [stage("dense", 1, {"name": "dense"}, sgd)]
  c.checkpoint_every_steps = 1
  with pytest.raises(FloatingPointError, match="loss is nan.*last good checkpoint") as e:
    train.train_and_evaluate(c, str(tmp_path))
  assert "lower the learning rate" in str(e.value)


@pytest.mark.parametrize(
  "change,match",
  [
    (lambda c: setattr(c, "unknown_key", 1), "'unknown_key' is unknown"),
    (lambda c: setattr(c, "model", "resnet9000"), "'model'='resnet9000' is unknown"),
    (lambda c: setattr(c, "dataset", "imagenet"), "'dataset'='imagenet' is unknown"),
    (lambda c: setattr(c, "train_subset", "many"), "'train_subset' must be int/NoneType, got str"),
    (lambda c: setattr(c.stages[1].pruner, "name", "lottery"), r"stages\[1\].pruner.name"),
    (
      lambda c: setattr(c.stages[1].pruner, "sparsty", 0.5),
      r"stages\[1\].pruner.sparsty is not an argument of pruning_jax.methods.score.magnitude_pruning; "
      r"it takes "
      r"\['distribution', 'final_sparsity', 'normalize', 'selection', 'sparsity', 'structure'\]",
    ),
    (
      lambda c: setattr(c.stages[0].optimizer, "momentun", 0.9),
      r"stages\[0\].optimizer.momentun is not an argument of experiments.optimizers.sgd",
    ),
    (
      lambda c: setattr(c.stages[1].pruner.sparsity, "frequency", 0),
      r"stages\[1\].pruner.sparsity: frequency",
    ),
    (
      lambda c: setattr(c.stages[1].pruner.sparsity, "final_sparsity", 1.5),
      r"stages\[1\].pruner.sparsity: .*\[0, 1\)",
    ),
    (
      lambda c: setattr(c.stages[1], "rewind_to", {"stage": 1, "step": 0}),
      r"rewind_to.stage'=1: must be an earlier",
    ),
    (lambda c: setattr(c, "stages", []), "'stages' is empty"),
    (
      lambda c: (
        setattr(c.stages[1], "rewind_to", {"stage": 0, "step": 0}),
        setattr(c.stages[1], "reinit", True),
      ),
      r"stages\[1\]: reinit=True and rewind_to both",
    ),
    (
      lambda c: (
        setattr(c.stages[1], "rewind_to", {"stage": 0, "step": 0}),
        setattr(c.stages[1], "model_kwargs", {"conv_widths": (4, 8)}),
      ),
      r"stages\[1\].rewind_to: stage 0 has model_kwargs \{\}",
    ),
    (lambda c: setattr(c, "normalization", "imagenet"), "'normalization' must be list/tuple/NoneType"),
    (
      lambda c: setattr(c, "test_evaluators", [{"name": "sampled"}]),
      r"test_evaluators\[0\].name='sampled' is unknown; expected one of \['forward'\]",
    ),
    (
      lambda c: setattr(c, "test_evaluators", [{"name": "forward", "passes": 0}]),
      r"test_evaluators\[0\]: forward: passes must be an integer >= 1",
    ),
    (
      lambda c: setattr(c, "select_on", ["sampled"]),
      r"'select_on'=\['sampled'\]: expected distinct views from \['extracted', 'forward'\]",
    ),
    (lambda c: setattr(c, "select_on", ["forward", "extracted"]), "select_best=False reports the last epoch"),
    (
      lambda c: setattr(c.stages[1], "patience", 3),
      r"'stages\[1\].patience'=3: early stopping counts .* Fix: set select_best=True",
    ),
    (
      lambda c: (setattr(c, "select_best", True), setattr(c.stages[1], "patience", 0)),
      r"'stages\[1\].patience'=0: expected a number of epochs >= 1",
    ),
    (
      lambda c: setattr(c, "learned_stats", [1.0, -1.0]),
      r"'learned_stats'=\[1.0, -1.0\]: expected thresholds >= 0",
    ),
  ],
)
def test_config_errors_name_the_key(npz, tmp_path, change, match):
  c = tiny_config(npz)
  change(c)
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(c, str(tmp_path))


def test_data_errors(tmp_path, monkeypatch):
  with pytest.raises(data_lib.DataError, match=r"(?s)TFDS_DATA_DIR.*Fix"):
    data_lib.read_arrays("cifar10", data_dir=str(tmp_path / "empty"), cache_dir=str(tmp_path / "cache"))
  bad = tmp_path / "bad.npz"
  np.savez(bad, train_image=np.zeros((2, 4, 4, 3), np.uint8))
  with pytest.raises(data_lib.DataError, match="lacks keys"):
    data_lib.read_arrays("cifar10", npz=str(bad))
  with pytest.raises(data_lib.DataError, match="Unknown dataset"):
    data_lib.read_arrays("imagenet")


def test_augment_and_order_are_seeded():
  imgs = jax.numpy.asarray(np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
  a = data_lib.augment(jax.random.PRNGKey(0), imgs)
  b = data_lib.augment(jax.random.PRNGKey(0), imgs)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert a.shape == imgs.shape and a.dtype == np.uint8
  o = data_lib.epoch_order(jax.random.PRNGKey(1), 100, 32)
  assert o.shape == (3, 32) and len(set(np.asarray(o).ravel().tolist())) == 96


def _aslp_run(npz, tmp_path):
  mask_sgd = {"name": "sgd", "lr": 50.0, "momentum": 0.9}
  rescale_sgd = {"name": "sgd", "lr": 1e-3, "momentum": 0.9}
  c = tiny_config(
    npz,
    select_best=True,
    test_evaluators=[{"name": "forward", "passes": 3}],
    select_on=["forward", "extracted"],  # the reference's protocol, and ours beside it
    learned_stats=[0.5, 2.0],
  )
  c.stages = [
    stage(
      "aslp",
      2,
      {"name": "aslp", "smart_rescale": True, "signed_constant": True},
      {"name": "frozen"},
      mask_sgd,
      {"rescale": rescale_sgd},
    )
  ]
  s = train.train_and_evaluate(c, str(tmp_path))
  curve = s["val_curve"]
  assert [r["epoch"] for r in curve] == [1.0, 2.0]
  best = max(curve, key=lambda r: r["accuracy"])
  assert s["best_val_epoch"] == best["epoch"] and s["best_val_accuracy"] == pytest.approx(best["accuracy"])
  # the primary view is the sampled forward pass; each view's own checkpoint choice is reported
  assert [r["accuracy"] for r in curve] == [r["forward_accuracy"] for r in curve]
  for view in ("forward", "extracted"):
    p = s["protocols"][view]
    first_best = max(curve, key=lambda r, v=view: (r[f"{v}_accuracy"], -r["epoch"]))
    assert p["epoch"] == first_best["epoch"] and p["val_accuracy"] == pytest.approx(
      first_best[f"{view}_accuracy"]
    )
    assert 0.0 <= p["test_accuracy"] <= 1.0 and len(p["test_accuracy_sampled"]) == 3
  assert s["protocols"]["forward"]["test_accuracy"] == s["test_accuracy"]
  assert s["protocols"]["forward"]["sparsity"] == pytest.approx(s["sparsity"])
  for r in curve:  # per masked layer, the fraction of |m| above 0.5 and 2: in [0, 1], non-increasing
    fr = np.array(list(r["learned_abs_above"].values()))
    assert fr.shape == (5, 2) and np.all((0 <= fr) & (fr <= 1)) and np.all(fr[:, 0] >= fr[:, 1])
  assert len(s["test_accuracy_sampled"]) == 3
  assert s["test_accuracy_sampled_mean"] == pytest.approx(np.mean(s["test_accuracy_sampled"]))
  assert 0.0 < s["sparsity"] < 1.0  # emergent: whatever fraction of logits ended below 0
  ckpt = _final_params(str(tmp_path))
  assert float(ckpt["pruner_state"]["learned"]["rescale"]["Dense_0"]["kernel"]) != 1.0
  return c, s


def test_aslp_run_with_rescale_optimizer_reports_curve_and_sampled_test(npz, tmp_path):
  _aslp_run(npz, tmp_path)


@pytest.mark.slow  # make test time: the probe compiles a forward pass per noise scale and layer
def test_the_gap_probe_reextracts_the_reported_checkpoint(npz, tmp_path):
  from experiments import aslp_gap_probe

  c, s = _aslp_run(npz, tmp_path)
  probe = aslp_gap_probe.probe(c, str(tmp_path), passes=1, samples=4, z_examples=8)
  assert probe["val_accuracy_extracted"] == pytest.approx(s["val_accuracy"])
  assert [r["a"] for r in probe["noise_scale"]] == list(aslp_gap_probe.NOISE_SCALES)
  assert probe["noise_scale"][-1]["std"] == 0.0  # no noise: one deterministic network
  layers = probe["layers"]
  assert [r["path"] for r in layers] == [f"Conv3x3_{i}/kernel" for i in range(2)] + [
    f"Dense_{i}/kernel" for i in range(3)
  ]
  assert all(0 <= r["expected_disagreement"] <= 0.5 and r["z_extracted"] >= 0 < r["z_sample"] for r in layers)


def test_patience_stops_the_stage_and_a_rerun_resumes_the_stopped_run(npz, tmp_path):
  # frozen weights: the validation accuracy never improves after epoch 1, so patience 2 stops at 3
  c = tiny_config(npz, select_best=True)
  c.stages = [stage("frozen", 6, {"name": "dense"}, {"name": "frozen"})]
  c.stages[0].patience = 2
  s = train.train_and_evaluate(c, str(tmp_path))
  spe = 128 // 32
  assert s["early_stopping"] == {"0": {"epoch": 3.0, "step": 3 * spe, "best_epoch": 1.0}}
  assert s["steps"] == 3 * spe and s["epochs_run"] == 3.0 and s["epochs"] == 6.0
  assert [r["epoch"] for r in s["val_curve"]] == [1.0, 2.0, 3.0]
  again = train.train_and_evaluate(c, str(tmp_path))  # restores the stop; trains nothing more
  assert again["steps"] == s["steps"] and again["test_accuracy"] == s["test_accuracy"]


def test_aslp_converged_config_grid_and_matched_edge_popup(tmp_path):
  from experiments.configs import aslp_converged as cfg

  runs = cfg.grid("mnist")
  assert len(runs) == len(set(runs)) == 3 * len(cfg.HEADLINE) + len(cfg.SEED0_ONLY)
  assert all(r.endswith("seed=0") for r in runs[: len(cfg.HEADLINE) + len(cfg.SEED0_ONLY)])
  c = cfg.get_config(runs[0])
  train.validate_config(c)
  assert c.select_on == ["forward", "extracted"] and c.stages[0].patience == cfg.PATIENCE
  assert cfg.get_config("method=edge_popup,k=0.25").select_on == ["extracted"]
  with pytest.raises(ValueError, match=r"k='1.5'; expected edge-popup's kept fraction in \(0, 1\]"):
    cfg.get_config("method=edge_popup,k=1.5")
  with pytest.raises(ValueError, match="remedy='noise_anneal' anneals ASLP's Gumbel-softmax"):
    cfg.get_config("method=supermask,remedy=noise_anneal")
  remedies = [cfg.get_config(r) for r in cfg.grid("fashion_mnist_remedies")]
  assert [c.variant for c in remedies] == [f"fashion_mnist_sc_{r}" for r in cfg.REMEDIES if r != "none"]
  train.validate_config(remedies[0])  # the schedules build from the config
  with pytest.raises(ValueError, match="no ASLP 'mnist_sc' summary"):
    cfg.matched_runs("mnist", str(tmp_path))
  for seed, sparsity in ((0, 0.6123), (1, 0.5877)):  # ASLP's emergent rates -> edge-popup's k
    summary = {
      "study": "aslp_converged",
      "method": "aslp",
      "model": "lenet300100",
      "variant": "mnist_sc",
      "seed": seed,
    }
    (tmp_path / f"a{seed}.json").write_text(
      json.dumps({**summary, "sparsity": sparsity, "test_accuracy": 0.9})
    )
  assert cfg.matched_runs("mnist", str(tmp_path)) == [
    "method=edge_popup,model=lenet300100,dataset=mnist,wr=0,sc=1,k=0.388,seed=0",
    "method=edge_popup,model=lenet300100,dataset=mnist,wr=0,sc=1,k=0.412,seed=1",
  ]


def test_missing_rescale_optimizer_names_the_label(npz, tmp_path):
  c = tiny_config(npz)
  c.stages = [
    stage("aslp", 1, {"name": "aslp", "smart_rescale": True}, {"name": "frozen"}, {"name": "sgd", "lr": 50.0})
  ]
  with pytest.raises(ValueError, match="rescale"):
    train.train_and_evaluate(c, str(tmp_path))


@pytest.mark.slow  # make test time; the evaluated sparsity is also checked by the smoke e2e tests
def test_validation_records_the_sparsity_of_the_network_they_evaluate(npz, tmp_path):
  # reparam removes nothing while training; the validation accuracy is of the hard-pruned network
  c = tiny_config(npz)
  pruner = {"name": "reparam", "sparsity": 0.75, "budget_weight": 1.0, "per_layer_t": True}
  c.stages = [stage("reparam", 2, pruner, SGD, {"name": "adam", "lr": 1.0})]
  s = train.train_and_evaluate(c, str(tmp_path))
  assert s["sparsity"] == pytest.approx(0.75, abs=1e-3)
  assert [r["sparsity"] for r in s["val_curve"]] == [pytest.approx(s["sparsity"])] * 2
  with open(tmp_path / "metrics.jsonl") as f:
    train_records = [json.loads(line) for line in f if '"split": "train"' in line]
  assert train_records and all(r["sparsity"] == 0.0 for r in train_records)


def test_aslp_config_grid_and_bad_arguments():
  from experiments.configs import aslp
  from experiments.sweep import run_name

  runs = aslp.grid("cpu_conv2")
  names = [run_name(aslp.get_config(a)) for a in runs]
  assert len(names) == len(set(names)) == 20
  assert sum("edge_popup" in n for n in names) == 4 and sum("supermask" in n for n in names) == 4
  c = aslp.get_config("method=edge_popup,model=conv4,wr=1,sc=1,da=1,seed=1")
  assert c.stages[0].pruner.scale_fan and c.stages[0].mask_optimizer.lr == 0.1 and c.augment
  train.validate_config(c)
  with pytest.raises(ValueError, match="key=value"):
    aslp.get_config("method=aslp,tau=2")
  with pytest.raises(ValueError, match="budget='huge'"):
    aslp.get_config("budget=huge")
  full = [aslp.get_config(a) for a in aslp.grid("full_conv6")]
  assert [run_name(c) for c in full] == [n.replace("conv2", "conv6") for n in names]
  assert all(c.stages[0].epochs == aslp.FULL_EPOCHS and c.get("train_subset") is None for c in full)
  with pytest.raises(ValueError, match="cpu_conv4"):
    aslp.grid("conv9")
  with pytest.raises(ValueError, match="budget cpu or full"):
    aslp.grid("smoke_conv2")


def test_init_from_a_finished_run_prunes_its_model_without_training(npz, tmp_path):
  dense = tiny_config(npz)
  dense.stages = [stage("dense", 1, {"name": "dense"}, SGD)]
  train.train_and_evaluate(dense, str(tmp_path / "dense"))
  trained, _ = ckpt_lib.load_final(str(tmp_path / "dense"), *_init_params(dense))
  mp = tiny_config(npz, init_from=str(tmp_path / "dense"))
  mp.stages = [stage("prune", 0, {"name": "magnitude_pruning", "sparsity": 0.7}, SGD)]
  s = train.train_and_evaluate(mp, str(tmp_path / "mp"))
  assert s["steps"] == 0
  pruned, _ = ckpt_lib.load_final(str(tmp_path / "mp"), *_init_params(dense))
  masks = pj.masks_from_scores(pj.criteria.magnitude(trained), 0.7, scope="global")
  chex.assert_trees_all_equal(pruned, pj.apply_masks(trained, masks))
  wrong = tiny_config(
    npz, init_from=str(tmp_path / "dense"), model_kwargs={"conv_widths": (4, 4), "dense_widths": (16, 16)}
  )
  with pytest.raises(ValueError, match="init_from.*does not match"):
    train.train_and_evaluate(wrong, str(tmp_path / "wrong"))
  with pytest.raises(FileNotFoundError, match="no finished run there"):
    train.train_and_evaluate(tiny_config(npz, init_from=str(tmp_path / "nowhere")), str(tmp_path / "x"))


def _init_params(config):
  from pruning_jax import models as models_lib

  model = models_lib.get_model(config.model, num_classes=10, **config.model_kwargs)
  v = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
  return v["params"], {k: x for k, x in v.items() if k != "params"}


def test_every_method_builds_from_its_config_by_its_own_signature():
  """No table of methods or keys: a pruner config is the factory's name and keyword arguments."""
  from experiments import build

  for name in pj.methods.__all__:
    fn = getattr(pj.methods, name)
    required = [p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty]
    if any(p.name in ("score_fn", "estimator", "score") for p in required):
      continue  # generic skeletons take functions, not config values
    values = {
      "sparsity": 0.5,
      "budget_weight": 1.0,
      "amount": 0.25,
      "every_steps": 2,
      "weight": 1e-3,
      "macs_reduction": 0.5,
      "reference_macs": 10**6,
      "end_step": 100,
      "grow": "random",
    }
    cfg = {"name": name, **{p.name: values[p.name] for p in required}}
    if name in ("channel_pruning", "soft_filter_pruning"):  # one of two ways to say how much
      cfg["amount"] = 0.25
    assert isinstance(build.pruner(cfg, "pruner", steps_per_epoch=10, total_steps=100), pj.Pruner)
  with pytest.raises(ValueError, match=r"pruner.name='lottery' is unknown; expected one of \[.*'aslp'"):
    build.pruner({"name": "lottery"}, "pruner", steps_per_epoch=1, total_steps=1)
  schedule = build.convert(
    "sparsity",
    {"schedule": "one_shot", "sparsity": 0.9, "at_epoch": 1.5},
    "x",
    steps_per_epoch=10,
    total_steps=50,
  )
  assert float(schedule(14)) == 0.0 and float(schedule(15)) == pytest.approx(0.9)
  with pytest.raises(ValueError, match=r"x.at_epoch must be a number of epochs \(it stands for at_step\)"):
    build.convert(
      "sparsity",
      {"schedule": "one_shot", "sparsity": 0.9, "at_epoch": "soon"},
      "x",
      steps_per_epoch=1,
      total_steps=1,
    )


def test_a_lottery_round_prunes_the_trained_weights_and_rewinds_the_kept_ones_bit_for_bit(npz, tmp_path):
  """Stage 1 takes its masks from the weights stage 0 trained (magnitude), then restarts from the
  params stage 0 had at step 0 (the init) at the kept positions, and its masks hold from there."""
  c = tiny_config(npz)
  c.stages = [
    stage("train", 1, {"name": "dense"}, SGD),
    stage(
      "round1", 0, {"name": "magnitude_pruning", "sparsity": 0.6}, SGD, rewind_to={"stage": 0, "step": 0}
    ),
  ]
  train.train_and_evaluate(c, str(tmp_path / "lth"))
  init, state0 = _init_params(c)
  dense = tiny_config(npz)
  dense.stages = [c.stages[0]]
  train.train_and_evaluate(dense, str(tmp_path / "dense"))
  trained, _ = ckpt_lib.load_final(str(tmp_path / "dense"), init, state0)
  rewound, _ = ckpt_lib.load_final(str(tmp_path / "lth"), init, state0)
  masks = pj.masks_from_scores(pj.criteria.magnitude(trained), 0.6, scope="global")
  # the run's own init: the model initialised from the run's seed (what stage 0 started from)
  from pruning_jax import models as models_lib

  model = models_lib.get_model(c.model, num_classes=10, **c.model_kwargs)
  start = model.init(jax.random.fold_in(jax.random.PRNGKey(c.seed), 0), np.zeros((1, 32, 32, 3), np.float32))
  chex.assert_trees_all_equal(rewound, pj.apply_masks(start["params"], masks))


def test_imp_rounds_rewind_to_step_k_with_exact_nested_masks(npz, tmp_path):
  """Two rounds of 20% of the kept weights, each restarting from the params stage 0 had at step 2
  (Frankle et al. 2020's rewinding), then the ticket is reported untrained (0 epochs)."""
  c = tiny_config(npz)
  imp = {"name": "imp_round", "rate": 0.2}
  c.stages = [
    stage("train", 1, {"name": "dense"}, SGD),
    stage("round1", 1, imp, SGD, rewind_to={"stage": 0, "step": 2}),
    stage("round2", 0, imp, SGD, rewind_to={"stage": 0, "step": 2}),
  ]
  c.evaluate_stages = True  # each round's ticket tested too
  s = train.train_and_evaluate(c, str(tmp_path / "lth"))
  init, state0 = _init_params(c)
  n = sum(p.size for p in jax.tree.leaves(init) if p.ndim > 1)
  kept_1 = n - round(0.2 * n)
  assert round((1 - s["sparsity"]) * n) == kept_1 - round(0.2 * kept_1)
  rounds = s["stage_results"]
  assert sorted(rounds) == ["0", "1"] and rounds["0"]["sparsity"] == 0.0
  assert round((1 - rounds["1"]["sparsity"]) * n) == kept_1 and rounds["1"]["name"] == "round1"
  assert 0.0 <= rounds["1"]["test_accuracy"] <= 1.0
  early = tiny_config(npz, max_steps_this_run=2)
  early.stages = [c.stages[0]]
  train.train_and_evaluate(early, str(tmp_path / "early"))
  at_step_2 = _final_params(tmp_path / "early")["params"]  # the checkpoint of step 2
  ticket, _ = ckpt_lib.load_final(str(tmp_path / "lth"), init, state0)
  for w, t in zip(jax.tree.leaves(at_step_2), jax.tree.leaves(ticket), strict=True):
    w, t = np.asarray(w), np.asarray(t)
    kept = t != 0
    np.testing.assert_array_equal(t[kept], w[kept])  # rewound bit for bit where kept
    if w.ndim == 1:
      np.testing.assert_array_equal(t, w)  # biases are never pruned


def _prune_shrink_finetune(npz, **overrides):
  c = tiny_config(npz, **overrides)
  c.model = "vgg11"
  c.model_kwargs = {"cfg": (8, "M", 8, "M", 12, "M", 12, "M", 16, "M")}
  c.stages = [
    stage("dense", 1, {"name": "dense"}, SGD),
    stage("prune", 0, {"name": "channel_pruning", "criterion": "l1", "amount": 0.5, "scope": "group"}, SGD),
    stage("finetune", 1, {"name": "dense"}, SGD),
  ]
  c.stages[2].shrink = True
  return c


def test_a_shrink_stage_goes_on_with_the_smaller_model_and_resumes_exactly(npz, tmp_path):
  full = train.train_and_evaluate(_prune_shrink_finetune(npz), str(tmp_path / "full"))
  assert tuple(full["model_kwargs"]["cfg"]) == (4, "M", 4, "M", 6, "M", 6, "M", 8, "M")
  small = models_lib.get_model("vgg11", num_classes=10, cfg=(4, "M", 4, "M", 6, "M", 6, "M", 8, "M"))
  example = jnp.zeros((1, 32, 32, 3))
  v = small.init(jax.random.key(0), example)
  assert full["params_total"] == sum(x.size for x in jax.tree.leaves(v["params"]))
  assert full["macs_per_example"] == pj.count_flops(lambda v, x: small.apply(v, x), v, example).macs
  part = tmp_path / "part"
  steps = full["steps"] // 2
  first = train.train_and_evaluate(_prune_shrink_finetune(npz, max_steps_this_run=steps + 1), str(part))
  assert first == {"interrupted": True, "stage": 2, "step": 1}  # inside the shrunk stage
  resumed = train.train_and_evaluate(_prune_shrink_finetune(npz), str(part))
  a, b = _final_params(tmp_path / "full"), _final_params(part)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert resumed["test_accuracy"] == full["test_accuracy"]


@pytest.mark.slow  # its cause, a traced init of closed-over params, is tested in test_channel_methods
def test_a_macs_targeted_soft_pruning_stage_resumes_exactly(npz, tmp_path):
  # its init searches the MACs target eagerly; a resume rebuilds the state's shapes under a trace
  def config(**overrides):
    c = _prune_shrink_finetune(npz, **overrides)
    sfp = {"name": "soft_filter_pruning", "macs_reduction": 0.3, "every_steps": 2, "rtol": 0.2}
    c.stages = [stage("sfp", 2, sfp, SGD)]
    return c

  full = train.train_and_evaluate(config(), str(tmp_path / "full"))
  part = tmp_path / "part"
  assert train.train_and_evaluate(config(max_steps_this_run=full["steps"] // 2), str(part))["interrupted"]
  resumed = train.train_and_evaluate(config(), str(part))
  assert not any("unreadable" in p for p in os.listdir(part / "checkpoints"))
  for x, y in zip(
    jax.tree.leaves(_final_params(tmp_path / "full")), jax.tree.leaves(_final_params(part)), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert resumed["test_accuracy"] == full["test_accuracy"]


def _pfs(npz, rule, **overrides):
  """Gate learning on an expanded VGG-11, then its structure shrunk and trained from scratch."""
  c = tiny_config(npz, **overrides)
  c.model = "vgg11"
  c.model_kwargs = {"cfg": (12, "M", 12, "M", 16, "M", 16, "M", 20, "M"), "bn_scale_init": 0.5}
  c.eval_finalized = False  # the gate stage's validation is the gated network's, as the reference's
  standard = models_lib.get_model("vgg11", num_classes=10, cfg=(8, "M", 8, "M", 12, "M", 12, "M", 16, "M"))
  x = jnp.zeros((1, 32, 32, 3))
  reference = pj.count_flops(lambda v, x: standard.apply(v, x), standard.init(jax.random.key(0), x), x).macs
  gates = {"name": "pruning_from_scratch", "macs_reduction": 0.3, "reference_macs": reference, "rtol": 0.15}
  c.stages = [
    stage("gates", 3, gates, {"name": "frozen"}, mask_optimizer={"name": "adam", "lr": 0.05}),
    stage("scratch", 0, {"name": "dense"}, SGD),
  ]
  c.stages[0].select_best_if = rule
  c.stages[1].shrink = True
  c.stages[1].reinit = True
  return c, standard, reference


def test_pruning_from_scratch_selects_by_the_checkpoint_rule_and_trains_a_fresh_shrunk_net(npz, tmp_path):
  rule = {"metric": "gate_nonzero", "at_most": 1.0}
  c, standard, reference = _pfs(npz, rule)
  s = train.train_and_evaluate(c, str(tmp_path))
  vals = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  vals = [r for r in vals if r["split"] == "val" and r["stage"] == 0]
  assert len(vals) == 3 and all("gate_nonzero" in r for r in vals)
  eligible = [r for r in vals if r["gate_nonzero"] <= 1.0]
  best = max(eligible, key=lambda r: r["accuracy"])  # the first of equals: a later one must beat it
  chosen = s["stage_selection"]["0"]
  assert (
    chosen["epoch"] == best["epoch"] and chosen["rule_met"] and chosen["val_accuracy"] == best["accuracy"]
  )
  assert abs(1 - s["macs_per_example"] / reference - 0.3) <= 0.15 * 0.3
  gate_curve = s["earlier_stages"]["0"]["train_curve"]  # the gate curve the report plots
  assert len(gate_curve) == 3 * 4 and gate_curve[0]["gate_mean"] < 1.0
  # trained from scratch: the reported net is the shrunk model's own initialization, nothing inherited
  small = models_lib.get_model("vgg11", num_classes=10, **s["model_kwargs"])
  fresh = small.init(jax.random.fold_in(jax.random.PRNGKey(c.seed), 5000 + 1), jnp.zeros((1, 32, 32, 3)))
  state = {k: v for k, v in fresh.items() if k != "params"}
  chex.assert_trees_all_equal(
    ckpt_lib.load_final(str(tmp_path), fresh["params"], state), (fresh["params"], state)
  )


@pytest.mark.slow  # the rule's normal path is in the fast test above
def test_a_rule_no_epoch_meets_selects_the_last_epoch_and_says_so(npz, tmp_path, capsys):
  c, _, _ = _pfs(npz, {"metric": "gate_mean", "at_most": -1.0})
  c.stages[0].epochs = 2
  s = train.train_and_evaluate(c, str(tmp_path))
  assert "no epoch met select_best_if" in capsys.readouterr().err
  assert s["stage_selection"]["0"]["rule_met"] is False and s["stage_selection"]["0"]["epoch"] == 2.0


@pytest.mark.parametrize(
  "rule, match",
  [
    ({"metric": "gate_nonzero"}, r"'stages\[0\].select_best_if'.*expected \{'metric'"),
    ({"metric": "gate_nonzero", "at_most": 0.2, "at_least": 0.1}, r"'stages\[0\].select_best_if'"),
    ({"metric": "gate_nonzero", "below": 0.2}, r"'stages\[0\].select_best_if'"),
    pytest.param(  # found once the run has built the pruner: make test time
      {"metric": "nonsense", "at_most": 0.2},
      r"'stages\[0\].select_best_if.metric'='nonsense'.*'gate_mean'",
      marks=pytest.mark.slow,
    ),
  ],
)
def test_a_bad_selection_rule_names_its_key(npz, tmp_path, rule, match):
  c, _, _ = _pfs(npz, rule)
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(c, str(tmp_path))
  assert not os.path.exists(tmp_path / "summary.json")


@pytest.mark.parametrize(
  "key, value, match",
  [
    ("macs_reduction", 1.5, r"stages\[0\].pruner.*reduction must be in \(0, 1\)"),
    ("target_ratio", -0.1, r"stages\[0\].pruner.*target_ratio"),
    ("gates", 3, r"stages\[0\].pruner.gates is not an argument.*'target_ratio'"),
  ],
)
def test_a_bad_gate_argument_names_its_key(npz, tmp_path, key, value, match):
  c, _, _ = _pfs(npz, None)
  c.stages[0].pruner[key] = value
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(c, str(tmp_path))
  assert not os.path.exists(tmp_path / "metrics.jsonl")


@pytest.mark.slow  # shrunk equals masked is tested per model in test_surgery; this is the runner's path
def test_the_shrunk_hand_off_computes_what_the_masked_one_did(npz, tmp_path):
  # shrink, then evaluate without training: the same predictions as the masked network
  c = _prune_shrink_finetune(npz)
  c.stages[2].epochs = 0
  shrunk = train.train_and_evaluate(c, str(tmp_path / "shrunk"))
  c = _prune_shrink_finetune(npz)
  c.stages = c.stages[:2]
  masked = train.train_and_evaluate(c, str(tmp_path / "masked"))
  assert shrunk["test_accuracy"] == masked["test_accuracy"]
  assert abs(shrunk["test_loss"] - masked["test_loss"]) < 1e-5
  assert shrunk["flops_dense"] < masked["flops_dense"]
  assert shrunk["flops_dense"] == masked["flops_effective"]


@pytest.mark.parametrize(
  "change, match",
  [
    (lambda c: setattr(c.stages[0], "shrink", True), r"'stages\[0\].shrink': the first stage has no pruned"),
    (
      lambda c: setattr(c.stages[2], "model_kwargs", {"cfg": (4, "M")}),
      r"stages\[2\]: shrink sets the model's widths",
    ),
    (
      lambda c: setattr(c.stages[2], "rewind_to", {"stage": 0, "step": 0}),
      r"stages\[2\].rewind_to: a stage between stage 0 and this one shrinks",
    ),
  ],
)
def test_shrink_config_errors(npz, tmp_path, change, match):
  c = _prune_shrink_finetune(npz)
  change(c)
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(c, str(tmp_path))


def test_structured_config_grid_validates_every_run():
  from experiments.configs import structured
  from experiments.sweep import run_name

  for name in ("cpu", "gpu_resnet56", "gpu_vgg16"):
    configs = [structured.get_config(a) for a in structured.grid(name)]
    names = [run_name(c) for c in configs]
    assert len(names) == len(set(names)) == 11 and names[0].split("_")[1] == "dense"
    for c in configs:
      train.validate_config(c)
      assert c.stages[-1].get("shrink", False) or c.method == "dense"
  sfp = structured.get_config("method=sfp,reduction=0.3")
  assert sfp.stages[0].epochs == structured.BUDGETS["cpu"]["epochs"] + structured.BUDGETS["cpu"]["finetune"]
  with pytest.raises(ValueError, match="method='lottery'"):
    structured.get_config("method=lottery")
  with pytest.raises(ValueError, match="structured grid 'tpu' is unknown"):
    structured.grid("tpu")


@pytest.mark.slow
def test_every_structured_method_runs_end_to_end_and_reports(npz, tmp_path):
  from experiments import report
  from experiments.configs import structured

  results = tmp_path / "results"
  results.mkdir()
  runs = str(tmp_path / "runs")
  for arg in structured.grid("smoke"):
    c = structured.get_config(arg + f",runs={runs}")
    c.npz, c.val_size, c.progress, c.train_subset = npz, 32, False, None
    c.batch_size = c.eval_batch_size = 32
    workdir = os.path.join(runs, f"{c.model}_{c.method}_{c.variant}_seed{c.seed}")
    s = train.train_and_evaluate(c, workdir)
    if c.method == "dense":
      dense_macs = s["macs_per_example"]
    else:  # the shrunk network's own count meets the target the config names
      r = structured.reduction_of(s)
      assert abs(1 - s["macs_per_example"] / dense_macs - r) <= structured.rtol_of(s) * r, (
        arg,
        s["macs_per_example"],
      )
    with open(results / f"{c.method}_{c.variant}.json", "w") as f:
      json.dump(s, f)
  text = report.write_report(str(results), structured.REPORT)
  assert "l1_ft" in text and "Claims, seed-paired" in text


@pytest.mark.slow  # make test time; the PFS e2e test builds from the same config
def test_pfs_config_grid_validates_every_run_and_spends_scratch_b_epochs():
  from experiments.configs import pfs
  from experiments.sweep import run_name

  for name, n in (("cpu", 9), ("gpu_resnet56", 17), ("gpu_vgg16", 17)):
    configs = [pfs.get_config(a) for a in pfs.grid(name)]
    names = [run_name(c) for c in configs]
    assert len(names) == len(set(names)) == n and names[0].split("_")[1] == "dense"
    for c in configs:
      train.validate_config(c)
  # Scratch-B: int(1 / (1 - p) * E), the reference's budget_train
  assert [pfs.scratch_b_epochs(160, p) for p in (0.5, 0.7)] == [320, 533]
  b = pfs.get_config("method=pfs_b,reduction=0.5")
  e = pfs.get_config("method=pfs,reduction=0.5")
  assert (e.stages[1].epochs, b.stages[1].epochs) == (6, 12)
  assert pfs.get_config("method=uniform_b,reduction=0.5").stages[1].epochs == 12
  # the expanded ResNet-20: inner widths x1.25, residual standard; the MACs target is the standard model's
  assert e.model_kwargs["inner_widths"] == (20,) * 3 + (40,) * 3 + (80,) * 3
  standard = models_lib.get_model("resnet20", num_classes=10)
  x = jnp.zeros((1, 32, 32, 3))
  macs = pj.count_flops(lambda v, x: standard.apply(v, x), standard.init(jax.random.key(0), x), x).macs
  assert e.stages[0].pruner.reference_macs == macs
  assert e.stages[0].select_best_if.to_dict() == {"metric": "gate_nonzero", "at_most": 0.2}
  vgg = pfs.get_config("method=pfs,model=vgg16,budget=gpu")
  assert vgg.model_kwargs["cfg"][:3] == (80, 80, "M") and vgg.model_kwargs["bn_scale_init"] == 0.5
  with pytest.raises(ValueError, match="pfs config: method='lottery'"):
    pfs.get_config("method=lottery")
  with pytest.raises(ValueError, match="pfs config: model='lenet5'"):
    pfs.get_config("model=lenet5")
  with pytest.raises(ValueError, match="pfs grid 'tpu' is unknown"):
    pfs.grid("tpu")


@pytest.mark.slow
def test_every_pfs_method_runs_end_to_end_and_reports(npz, tmp_path):
  from experiments import report
  from experiments.configs import pfs

  results = tmp_path / "results"
  results.mkdir()
  runs = str(tmp_path / "runs")
  for arg in pfs.grid("smoke"):
    c = pfs.get_config(arg + f",runs={runs}")
    c.npz, c.val_size, c.progress, c.train_subset = npz, 32, False, None
    c.batch_size = c.eval_batch_size = 32
    workdir = os.path.join(runs, f"{c.model}_{c.method}_{c.variant}_seed{c.seed}")
    s = train.train_and_evaluate(c, workdir)
    if c.method == "dense":
      dense_macs = s["macs_per_example"]
    else:  # the shrunk network's own count meets the target against the standard model
      r = pfs.reduction_of(s)
      reached = 1 - s["macs_per_example"] / dense_macs
      assert abs(reached - r) <= pfs.rtol_of(s) * r, (arg, s["macs_per_example"])
    with open(results / f"{c.method}_{c.variant}.json", "w") as f:
      json.dump(s, f)
  text = report.write_report(str(results), pfs.REPORT)
  assert "pfs_b" in text and "Claims, seed-paired" in text and "gate" in text


def test_init_lottery_grids_validate_and_count_their_rounds():
  from experiments.configs import init_lottery as il
  from experiments.sweep import run_name

  for name, n in (("mnist", 100), ("cifar_cpu", 32), ("gpu_vgg16", 50)):
    configs = [il.get_config(a) for a in il.grid(name)]
    assert len({run_name(c) for c in configs}) == len(configs) == n
    for c in configs:
      train.validate_config(c)
  assert [il.imp_rounds(s) for s in (0.2, 0.5, 0.9, 0.995)] == [1, 4, 11, 24]  # 0.8 ** k kept
  imp = il.get_config("method=imp_rewind,sparsity=0.9")
  assert len(imp.stages) == 12 and imp.evaluate_stages
  assert imp.stages[1].rewind_to.to_dict() == {"stage": 0, "step": 500}
  assert imp.stages[3].pruner.layer_rates.to_dict() == {"^Dense_2/kernel$": 0.1}
  assert il.get_config("method=imp_lr_rewind,sparsity=0.9").stages[2].get("rewind_to") is None
  fine = il.get_config("method=imp_finetune,sparsity=0.9").stages[2].optimizer
  assert fine.lr == pytest.approx(1.2e-4) and fine.lr_schedule == "constant"
  shuffled = il.get_config("method=synflow_shuffled,sparsity=0.99").stages[0].pruner
  assert shuffled.name == "synflow" and shuffled.shuffle and shuffled.rounds == 100
  with pytest.raises(ValueError, match="init_lottery grid 'mnist_lenet7' is unknown"):
    il.grid("mnist_lenet7")


@pytest.mark.slow
def test_every_init_lottery_method_runs_end_to_end_and_reports(npz, tmp_path):
  from experiments import report
  from experiments.configs import init_lottery as il

  results = tmp_path / "results"
  results.mkdir()
  for arg in il.grid("smoke"):
    c = il.get_config(arg)
    c.npz, c.val_size, c.progress, c.train_subset = npz, 32, False, None
    c.batch_size = c.eval_batch_size = 32
    s = train.train_and_evaluate(c, str(tmp_path / f"{c.method}_{c.variant}"))
    if c.method in il.IMP:  # 4 rounds of 20% to pass 50%, each tested
      assert sorted(s["stage_results"]) == ["0", "1", "2", "3"] and s["sparsity"] > 0.5
    elif c.method != "dense":
      assert s["sparsity"] == pytest.approx(0.5, abs=1e-3)
    with open(results / f"{c.method}_{c.variant}.json", "w") as f:
      json.dump(s, f)
  text = report.write_report(str(results), il.REPORT)
  assert "Missing the mark" in text and "imp_rewind (every round" in text and "snip - snip_shuffled" in text


def test_sparse_training_grids_validate_and_match_their_budgets():
  from experiments.configs import sparse_training as st
  from experiments.sweep import run_name

  for name, n in (("cifar_cpu", 25), ("fmnist_mlp", 5), ("gpu", 13)):
    configs = [st.get_config(a) for a in st.grid(name)]
    assert len({run_name(c) for c in configs}) == len(configs) == n
    for c in configs:
      train.validate_config(c)
  # SET's epsilon = 20 on 784-1000-1000-1000-10: 20 (n_in + n_out) kept per layer, the last dense
  kept = 20 * (784 + 1000) + 2 * 20 * 2000 + 1000 * 10
  total = 784 * 1000 + 2 * 1000 * 1000 + 1000 * 10
  assert st.sparsity_of("mlp", "eps20") == pytest.approx(1 - kept / total)
  set_mlp = st.get_config("method=set,sparsity=eps20,budget=fmnist_mlp").stages[0].pruner
  assert (set_mlp.decay, set_mlp.every_epochs, set_mlp.end_epoch) == ("constant", 1, 39)
  # small-dense: the dense count of the narrowed net is the nearest to the sparse net's non-zeros
  widths = st.small_dense_widths("mlp", "fashion_mnist", 0.9)
  h = widths["widths"][0]
  count = lambda h: 784 * h + 2 * h * h + 10 * h + 3 * h + 10  # noqa: E731
  target = total + 3010 - round(0.9 * total)
  assert widths == {"widths": (h, h, h)} and abs(count(h) - target) <= min(
    abs(count(h + d) - target) for d in (-1, 1)
  )
  with pytest.raises(ValueError, match="method='l0' is not in budget 'fmnist_mlp'"):
    st.get_config("method=l0,budget=fmnist_mlp")


@pytest.mark.slow
def test_every_sparse_training_method_runs_end_to_end_and_reports(npz, tmp_path):
  from experiments import report
  from experiments.configs import sparse_training as st

  results = tmp_path / "results"
  results.mkdir()
  for arg in st.grid("smoke"):
    c = st.get_config(arg)
    c.npz, c.val_size, c.progress, c.train_subset = npz, 32, False, None
    c.batch_size = c.eval_batch_size = 32
    s = train.train_and_evaluate(c, str(tmp_path / f"{c.method}_{c.variant}"))
    if c.method in ("rigl_erk", "rigl_uniform", "set", "static", "gmp", "l1_ft"):
      assert s["sparsity"] == pytest.approx(0.8, abs=1e-4)
    with open(results / f"{c.method}_{c.variant}.json", "w") as f:
      json.dump(s, f)
  text = report.write_report(str(results), st.REPORT)
  assert "training FLOPs" in text and "rigl_erk" in text


@pytest.mark.slow
def test_l0_channel_gates_shrink_to_the_network_they_evaluate(npz, tmp_path):
  """L0 channel gates trained one epoch, then a shrink stage that trains nothing: the shrunk
  network predicts what the gated, masked one did, with fewer MACs."""

  def config():
    c = _prune_shrink_finetune(npz)
    # log-odds start at the test gate's zero, log(-gamma / zeta) = log(1 / 11), and barely move:
    # the init noise closes about half the channels
    gates = {"name": "l0_gates", "weight": 1e-3, "structure": "channel", "droprate_init": 11 / 12}
    c.stages = [
      stage("l0", 1, gates, SGD, {"name": "adam", "lr": 1e-6}),
      stage("shrink", 0, {"name": "dense"}, SGD),
    ]
    c.stages[1].shrink = True
    return c

  shrunk = train.train_and_evaluate(config(), str(tmp_path / "shrunk"))
  c = config()
  c.stages = c.stages[:1]
  gated = train.train_and_evaluate(c, str(tmp_path / "gated"))
  assert shrunk["test_accuracy"] == gated["test_accuracy"]
  assert abs(shrunk["test_loss"] - gated["test_loss"]) < 1e-5
  assert shrunk["flops_dense"] == gated["flops_effective"] < gated["flops_dense"]
