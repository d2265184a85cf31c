"""Methods (sibp_np.methods): hyperparameters read from the signatures, checked on every assignment and
stored as given, the registry, subclasses, renamed names, and the CLI options built from them."""
import inspect

import pytest
from _helpers import small_problem

import sibp_np
from sibp_np import (
    METHODS,
    SGD,
    SIBP,
    Method,
    fit,
    register,
)
from sibp_np.methods import Hyperparameter


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
