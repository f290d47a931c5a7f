"""The public surface: exactly each module's ``__all__``, one name per thing, and every public
function and class documented in the Google style with a runnable example."""

import importlib
import inspect
import pkgutil

import pytest

import pruning_jax as pj
import pruning_jax.models


def _modules():
  names = ["pruning_jax"]
  for pkg in (pj, pj.methods, pj.models):
    prefix = pkg.__name__ + "."
    names += [prefix + m.name for m in pkgutil.iter_modules(pkg.__path__)]
  return sorted(set(names))


MODULES = _modules()


def _defined(module):
  """Public functions and classes the module itself defines."""
  return {
    n
    for n, o in vars(module).items()
    if not n.startswith("_")
    and (inspect.isfunction(o) or inspect.isclass(o))
    and getattr(o, "__module__", None) == module.__name__
  }


@pytest.mark.parametrize("name", MODULES)
def test_the_public_surface_is_exactly_all(name):
  module = importlib.import_module(name)
  assert hasattr(module, "__all__"), f"{name} has no __all__"
  exported = set(module.__all__)
  missing = [n for n in exported if not hasattr(module, n)]
  assert not missing, f"{name}.__all__ names {missing}, which do not exist"
  undeclared = sorted(_defined(module) - exported)
  assert not undeclared, (
    f"{name} defines public {undeclared} outside __all__ (export them or make them private)"
  )


def _documented_objects():
  for name in MODULES:
    module = importlib.import_module(name)
    for n in module.__all__:
      o = getattr(module, n)
      if (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == name:
        yield f"{name}.{n}", o


DOCUMENTED = dict(_documented_objects())


@pytest.mark.parametrize("qualname", sorted(DOCUMENTED))
def test_every_public_function_and_class_has_a_google_docstring(qualname):
  o = DOCUMENTED[qualname]
  doc = inspect.getdoc(o) or ""
  assert doc, f"{qualname} has no docstring"
  if inspect.isclass(o):
    assert "Attributes:" in doc or ">>>" in doc, (
      f"{qualname}: document its fields (Attributes:) or give an example"
    )
    return
  sig = inspect.signature(o)
  if sig.parameters:
    assert "Args:" in doc, f"{qualname}: no Args section"
    for p in sig.parameters.values():
      label = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(p.kind, "")
      assert f"{label}{p.name}:" in doc, f"{qualname}: argument {label}{p.name} is not in Args"
  if sig.return_annotation not in (None, "None", inspect.Signature.empty):
    assert "Returns:" in doc, f"{qualname}: no Returns section"
  assert ">>>" in doc, f"{qualname}: no example"


USER_NAMESPACES = (
  "pruning_jax",
  "pruning_jax.methods",
  "pruning_jax.criteria",
  "pruning_jax.estimators",
  "pruning_jax.transforms",
  "pruning_jax.schedules",
)


def test_one_public_name_per_thing():
  """A name that two user-facing namespaces export means one thing (e.g. the estimator
  ``straight_through`` is not also a method)."""
  seen = {}
  clashes = []
  for name in USER_NAMESPACES:
    module = importlib.import_module(name)
    for n in module.__all__:
      o = getattr(module, n)
      if not callable(o):
        continue
      if n in seen and seen[n][1] is not o:
        clashes.append(f"{n}: {seen[n][0]} and {name}")
      seen.setdefault(n, (name, o))
  assert not clashes, clashes
