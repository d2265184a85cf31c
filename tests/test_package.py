"""The package's structure: only backend/ tells NumPy from CuPy, nothing touches an MLP's private
attributes, and no module imports another in a cycle."""
import ast
import importlib.util
from pathlib import Path

import pytest

import sibp_np

PKG = Path(sibp_np.__file__).parent


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def test_only_backend_tells_numpy_from_cupy():
    for path, tree in _modules():
        if "backend" in path.parts:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                assert not names & {"np", "numpy", "cupy"}, f"{path.name}:{node.lineno} compares modules"
            if isinstance(node, ast.Constant) and node.value == "cupy" and path.name != "cli.py":
                pytest.fail(f"{path.name}:{node.lineno} names cupy")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(m.split(".")[0] == "cupy" for m in mods), f"{path.name} imports cupy"


def _private_uses(name, tree):
    """Where module ``name`` reaches into an MLP's private attributes: ``._W``/``._b`` on anything but
    MLP's own ``self`` (in model.py and persist.Persistent), and ``model._anything``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        base = node.value.id if isinstance(node.value, ast.Name) else None
        params = node.attr in ("_W", "_b") and not (base == "self" and name in ("model.py", "persist.py"))
        if params or (base == "model" and name != "model.py"):
            yield f"{name}:{node.lineno} uses {ast.unparse(node)}"


def test_no_module_but_model_touches_the_models_private_attributes():
    found = [use for path, tree in _modules() for use in _private_uses(path.name, tree)]
    assert found == []


def test_the_private_attribute_guard_sees_any_name():
    code = "def f(net, model, self):\n    return net._b, model._cache, self._W, model.layers()\n"
    assert list(_private_uses("sibp.py", ast.parse(code))) == [
        "sibp.py:2 uses net._b", "sibp.py:2 uses model._cache", "sibp.py:2 uses self._W"]
    assert list(_private_uses("model.py", ast.parse(code))) == ["model.py:2 uses net._b"]


def test_the_package_has_no_import_cycles():
    spec = importlib.util.spec_from_file_location("codestats", PKG.parent / "tools" / "codestats.py")
    codestats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codestats)
    assert codestats.cycles(codestats.import_graph(PKG)) == []
    assert codestats.cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]  # it can see one
