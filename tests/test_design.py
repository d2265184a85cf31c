"""The design's contracts: callbacks, histories, hyperparameters from signatures, the registry, the
backend as the only NumPy/CuPy switch, and the module structure."""
import ast
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest
from conftest import small_problem

import sibp_np
from sibp_np import (
    METHODS,
    SGD,
    SIBP,
    Callback,
    EvalEvery,
    History,
    Method,
    TimeBudget,
    fit,
    get_backend,
    register,
)
from sibp_np.methods import Hyperparameter

PKG = Path(sibp_np.__file__).parent


# ---------------------------------------------------------------------------------------- callbacks
class Counter(Callback):
    def __init__(self, stop_at=None):
        self.calls = {"begin": 0, "step": 0, "record": 0, "epoch": 0}
        self.stop_at = stop_at

    def on_train_begin(self, run):
        self.calls["begin"] += 1

    def on_step_end(self, run):
        self.calls["step"] += 1
        if run.iteration == self.stop_at:
            run.stop()

    def on_record(self, run, record):
        self.calls["record"] += 1

    def on_epoch_end(self, run):
        self.calls["epoch"] += 1


def test_callback_hooks_run_as_documented():
    model, X, y = small_problem()
    c = Counter()
    h = fit(model, SGD(lr=0.1), X, y, epochs=3, batch_size=10, verbose=0, seed=0, callbacks=[c])
    assert c.calls == {"begin": 1, "step": 12, "record": 4, "epoch": 3}
    assert h["epoch"] == [0, 1, 2, 3]


def test_a_callback_stops_the_loop_cleanly():
    model, X, y = small_problem()
    c = Counter(stop_at=6)
    h = fit(model, SGD(lr=0.1), X, y, epochs=5, batch_size=10, verbose=0, seed=0, callbacks=[c])
    assert c.calls["step"] == 6 and h.diverged is None
    assert h.last["iterations"] == 4  # the stop came mid-epoch 2: the last record is epoch 1's
    # the parameters are those after 6 steps: the same as a 2-epoch run stopped after 6 steps
    m2, _, _ = small_problem()
    fit(m2, SGD(lr=0.1), X, y, epochs=5, batch_size=10, verbose=0, seed=0, callbacks=[Counter(6)])
    for a, b in zip(model.params(), m2.params()):
        np.testing.assert_array_equal(a, b)


def test_callbacks_must_be_callback_objects():
    model, X, y = small_problem()
    with pytest.raises(TypeError, match="callbacks must be sibp_np.Callback instances"):
        fit(model, SGD(), X, y, epochs=1, batch_size=10, verbose=0, callbacks=[print])


def test_eval_every_and_time_budget_take_one_record_per_iteration():
    model, X, y = small_problem()
    h = fit(model, SGD(lr=0.1), X, y, epochs=2, batch_size=10, verbose=0, seed=0,
            callbacks=[EvalEvery(2), TimeBudget(1e-12)])
    assert h["iterations"] == [0, 1]  # the budget ends the run at the first step, with one record
    h = fit(small_problem()[0], SGD(lr=0.1), X, y, epochs=2, batch_size=10, verbose=0, seed=0,
            eval_every=2)
    assert h["iterations"] == [0, 2, 4, 6, 8]  # epoch ends coincide with eval points: no duplicates


# ---------------------------------------------------------------------------------------- histories
@pytest.mark.parametrize("suffix", [".json", ".h5", ".HDF5"])
def test_history_load_reads_what_save_wrote(tmp_path, suffix):
    model, X, y = small_problem()
    h = fit(model, SIBP(eta=0.5), X, y, val=(X, y), epochs=2, batch_size=10, verbose=0, seed=0)
    path = tmp_path / f"run{suffix}"
    h.save(path)
    back = History.load(path)
    assert back.records == h.records and back.config == h.config and back.diverged == h.diverged
    assert back.environment == h.environment and back.environment["numpy"] == np.__version__


def test_history_format_follows_the_name(tmp_path):
    with pytest.raises(ValueError, match="out='run.txt': use a .json or .h5"):
        History().save("run.txt")
    with pytest.raises(ValueError, match="path='x.csv'"):
        History.load("x.csv")


# ---------------------------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("name", sorted(METHODS))
def test_hyperparameters_are_the_signature_and_rebuild_the_method(name):
    cls = METHODS[name]
    m = cls()
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [p.name for p in params if p.kind != p.VAR_KEYWORD]  # **renamed: deprecated names only
    assert list(m.hyperparameters()) == names
    again = cls(**m.hyperparameters())
    assert again.hyperparameters() == m.hyperparameters() and repr(again) == repr(m)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_trains(name):
    model, X, y = small_problem()
    h = fit(model, METHODS[name](), X, y, epochs=1, batch_size=10, verbose=0, seed=0)
    assert h.config["method"] == name and h.config["hyperparameters"] == METHODS[name]().hyperparameters()
    assert len(h) == 2


def test_setting_a_hyperparameter_is_checked_like_init():
    m = SIBP()
    with pytest.raises(ValueError, match="eta must be a finite number > 0, got -1"):
        m.eta = -1
    assert m.eta == 1.0
    m.eta = 3
    assert m.eta == 3.0 and "eta=3.0" in repr(m)
    s = SGD(momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        s.momentum = 0.0
    assert s.momentum == 0.9  # the failed assignment is undone


def test_repr_and_history_show_the_value_in_use_and_attributes_keep_what_was_given():
    assert SIBP().safeguard is None and "safeguard='trust-region'" in repr(SIBP())
    assert SIBP().hyperparameters()["safeguard"] == "trust-region"
    assert SIBP(compat="matlab").hyperparameters()["safeguard"] == "none"
    m = SIBP(safeguard="none")
    m.safeguard = None  # back to the default
    assert m.safeguard is None and m.hyperparameters()["safeguard"] == "trust-region"


def test_defaults_do_not_depend_on_the_order_of_assignment():
    a = SIBP(safeguard="none")
    a.safeguard = "trust-region"
    b = SIBP(safeguard="trust-region")
    assert a.hyperparameters() == b.hyperparameters()
    assert a.hyperparameters()["prox_metric"] == "output"
    c = SIBP()
    c.compat = "matlab"  # refused before: the resolved prox_metric was already "output"
    assert c.hyperparameters() == SIBP(compat="matlab").hyperparameters()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_can_be_subclassed_with_any_signature(name):
    base = METHODS[name]

    class Passing(base):
        def __init__(self, **kw):
            super().__init__(**kw)

    class Extended(base):
        def __init__(self, scale=2.0, **kw):
            super().__init__(**kw)
            self.scale = scale

        def step(self, model, X, y):
            self.steps = getattr(self, "steps", 0) + 1
            return super().step(model, X, y)

    assert Passing().hyperparameters() == base().hyperparameters()
    assert Extended().hyperparameter_names() == ["scale"] + base.hyperparameter_names()
    assert Extended(scale=3.0).hyperparameters() == {"scale": 3.0, **base().hyperparameters()}
    model, X, y = small_problem()
    method = Extended()
    fit(model, method, X, y, epochs=2, batch_size=10, verbose=0, seed=0)
    assert method.steps == 2 * -(-len(X) // 10)


def test_a_method_without_hyperparameters_works_and_a_misnamed_one_is_named():
    class Plain(Method):
        def step(self, model, X, y):
            return 0.0
    model, X, y = small_problem()
    h = fit(model, Plain(), X, y, epochs=1, batch_size=10, verbose=0)
    assert h.config["hyperparameters"] == {} and repr(Plain()) == "Plain()"

    class Misnamed(Plain):
        def __init__(self, rate=0.1):
            super().__init__()
            self.lr = rate
    with pytest.raises(TypeError, match="takes 'rate', but the instance has no attribute 'rate'"):
        repr(Misnamed())


def test_register_adds_a_method_everywhere(monkeypatch):
    monkeypatch.setattr(sibp_np.methods, "METHODS", dict(METHODS))

    @register("halfsgd")
    class HalfSGD(SGD):
        """SGD at half the step.

        Parameters
        ----------
        lr : float > 0
            Twice the step taken.
        """

        lr = Hyperparameter(lambda name, v: float(v))

    from sibp_np.cli import build_parser
    args = build_parser().parse_args(["train", "--method", "halfsgd", "--lr", "0.5"])
    from sibp_np.cli import method_from_args
    assert isinstance(method_from_args(args.method, args), HalfSGD)


# ---------------------------------------------------------------------------------------- backend
def test_solve_spd_solves(rng):
    A = rng.normal(size=(6, 6))
    A = A @ A.T + 6 * np.eye(6)
    B = rng.normal(size=(6, 3))
    np.testing.assert_allclose(get_backend("numpy").solve_spd(A, B), np.linalg.solve(A, B), rtol=1e-12)


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


def test_no_module_but_model_touches_the_models_private_attributes():
    for path, tree in _modules():
        if path.name == "model.py":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                    and node.value.id in ("model", "run.model")):
                pytest.fail(f"{path.name}:{node.lineno} uses model.{node.attr}")


def test_the_package_has_no_import_cycles():
    spec = importlib.util.spec_from_file_location("codestats", PKG.parent / "tools" / "codestats.py")
    codestats = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codestats)
    assert codestats.cycles(codestats.import_graph(PKG)) == []
    assert codestats.cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]  # it can see one


def test_cli_options_come_from_the_hyperparameter_objects(monkeypatch):
    from sibp_np.cli import build_parser, method_options
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps at hyphens too
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(sub.format_help().split())
    options = method_options()
    for name, cls in METHODS.items():
        in_use = cls().hyperparameters()
        for param, hp in cls.hyperparameter_objects().items():
            if param == "optimizer":  # an object: not a command-line value
                assert param not in options
                continue
            assert "--" + param.replace("_", "-") in text, (name, param)
            assert hp.help and " ".join(hp.help.split()) in text, (name, param)  # one help line each
            shown = options[param]["defaults"][name]
            assert shown == in_use[param] or (in_use[param] in (None, "auto") and shown == hp.default_text)
            if "choices" in hp.options:
                assert set(hp.options["choices"]) <= set(options[param]["choices"])
    # the defaults a run resolves, not the None that the constructor stores
    assert "--safeguard" in text and "(default: trust-region)" in text and "(default: output)" in text
    for name in METHODS:  # within a method, no two options share a help text (as --c1/--shrink did)
        helps = [o["helps"][name] for o in options.values() if name in o["helps"]]
        assert len(set(helps)) == len(helps), name


def test_renamed_hyperparameters_are_accepted_for_one_release_with_a_warning():
    from sibp_np import SIBP, ProxBP
    with pytest.warns(FutureWarning, match="'weight_solver' is renamed 'weight_form'"):
        m = SIBP(weight_solver="dual")
    assert m.weight_form == "dual" and "weight_solver" not in m.hyperparameters()
    with pytest.warns(FutureWarning, match="'output_solve' is renamed 'linear_solve'"):
        m.output_solve = "exact"
    assert m.linear_solve == "exact"
    with pytest.warns(FutureWarning, match="'solve' is renamed 'linear_solve'"):
        assert ProxBP(solve="exact").linear_solve == "exact"
    with pytest.warns(FutureWarning):
        assert ProxBP().solve == "cg"
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr'.*hyperparameters are"):
        SIBP(lr=1.0)
    with pytest.warns(FutureWarning, match="record_stats"):
        assert SIBP(record_stats=True).record_stats is True
    assert "record_stats" not in SIBP().hyperparameters()


def test_cli_takes_the_renamed_options_with_a_warning():
    from sibp_np.cli import build_parser, method_from_args
    args = build_parser().parse_args(["train", "--weight-solver", "dual"])
    with pytest.warns(FutureWarning, match="weight_form"):
        assert method_from_args("sibp", args).weight_form == "dual"
    args = build_parser().parse_args(["train", "--solve", "exact"])
    with pytest.raises(ValueError, match="--solve does not apply to method 'sibp'"):
        method_from_args("sibp", args)
