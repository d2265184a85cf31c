"""Command line: ``sibp-np train`` (the default command) and the experiment commands."""
import argparse
import inspect
import math
import sys
from pathlib import Path

from . import __version__

DEFAULT_METHOD = "sibp"


def _floats(text):
    """argparse type: comma-separated finite numbers (argparse names the option in the message)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _ints(text):
    """argparse type: comma-separated integers."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _option_type(hp, default):
    """``(type, choices)`` of the command-line option for a :class:`~sibp_np.methods.Hyperparameter`,
    from its check (or, for a check of its own, the type of its default); None when the value cannot be
    given on a command line (an object, such as ProxBP's ``optimizer``)."""
    from . import _validation as v
    if hp is not None and hp.options.get("choices") is not None:
        return str, tuple(hp.options["choices"])
    kinds = {v.check_positive: float, v.check_open_unit: float, v.check_fraction: float, v.check_int: int,
             v.check_bool: bool, v.check_optional_bool: bool, v.check_pair: _floats}
    kind = kinds.get(getattr(hp, "check", None))
    if kind is None and isinstance(default, (bool, int, float, str)):
        kind = type(default)
    return (kind, None) if kind else None


def _shown(value):
    """A default as a user types it: ``None`` (resolved at use) is ``auto``, a pair ``0.9,0.999``."""
    if value is None:
        return "auto"
    if isinstance(value, tuple):
        return ",".join(f"{x:g}" for x in value)
    return str(value)


def _defaults(cls):
    """The defaults as a run records them (``None`` resolved where it can be), from an instance."""
    sig = inspect.signature(cls.__init__).parameters
    try:
        return cls().hyperparameters()
    except Exception:  # noqa: BLE001 - a method that needs arguments: its signature's defaults
        return {n: sig[n].default for n in cls.hyperparameter_names()}


def method_options():
    """One command-line option per hyperparameter of the registered methods, built from their
    :class:`~sibp_np.methods.Hyperparameter` objects: ``{name: {"kind", "choices", "helps": {method:
    help}, "defaults": {method: default}}}``. A name two methods give different types is an error."""
    from .methods import METHODS
    options = {}
    for method, cls in sorted(METHODS.items()):
        sig, objects, defaults = inspect.signature(cls.__init__).parameters, cls.hyperparameter_objects(), \
            _defaults(cls)
        for name in cls.hyperparameter_names():
            hp = objects.get(name)
            kind = _option_type(hp, sig[name].default)
            if kind is None:
                continue
            opt = options.setdefault(name, {"kind": kind[0], "choices": kind[1], "helps": {}, "defaults": {}})
            if opt["kind"] is not kind[0]:
                raise TypeError(f"hyperparameter {name!r} has type {kind[0].__name__} in {method} but "
                                f"{opt['kind'].__name__} elsewhere: one option cannot take both")
            if kind[1]:
                opt["choices"] = tuple(dict.fromkeys((opt["choices"] or ()) + kind[1]))
            opt["helps"][method] = getattr(hp, "help", "")
            text = getattr(hp, "default_text", None)
            opt["defaults"][method] = text if text is not None and defaults[name] in (None, "auto") else \
                defaults[name]
    return options


def _per_method(values, show=str):
    """``text`` when every method has the same, else ``sibp: text; proxbp: text``."""
    shown = {m: show(v) for m, v in values.items() if v != ""}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{m}: {v}" for m, v in shown.items())


def add_method_options(p):
    from .methods import METHODS
    g = p.add_argument_group("method hyperparameters (each applies to the methods named in its default)")
    options = method_options()
    for name, opt in options.items():
        flag = "--" + name.replace("_", "-")
        text = f"{_per_method(opt['helps'])} (default: {_per_method(opt['defaults'], _shown)})"
        if len(opt["defaults"]) < len(METHODS):
            text = f"{text}; {', '.join(opt['defaults'])} only"
        text = text.replace("%", "%%")
        if opt["kind"] is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            g.add_argument(flag, type=opt["kind"], choices=opt["choices"], default=None, help=text,
                           metavar=None if opt["choices"] else name.upper())
    for old, new in _renamed().items():  # deprecated names: the method's constructor warns
        p.add_argument("--" + old.replace("_", "-"), dest=old, default=None,
                       type=options[new]["kind"], help=argparse.SUPPRESS)


def _renamed():
    """``{old name: new name}`` of the registered methods' renamed hyperparameters."""
    from .methods import METHODS
    return {old: new for cls in METHODS.values() for old, new in cls.renamed.items()}


def method_from_args(name, args):
    """Build the method ``name`` from the parsed options it accepts; an option it does not take is an
    error, not silently ignored."""
    from ._validation import check_choice
    from .methods import METHODS, get_method
    key = check_choice("--method", name, tuple(sorted(METHODS)))
    accepted = METHODS[key].hyperparameter_names() + list(METHODS[key].renamed)
    kw = {}
    for param in [*method_options(), *_renamed()]:
        v = getattr(args, param, None)
        if v is None:
            continue
        if param not in accepted:
            raise ValueError(f"--{param.replace('_', '-')} does not apply to method {key!r} (it takes "
                             f"{', '.join(METHODS[key].hyperparameter_names())})")
        kw[param] = v
    return get_method(key, **kw)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sibp-np", description="Train fully connected networks with Semi-Implicit Back Propagation "
        "(Liu & Zhang) or its baselines (SGD, Adam, RMSprop, ProxBP). With no command: `train`.")
    parser.add_argument("--version", action="version", version=f"sibp_np {__version__}")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("train", help="train one network and print a per-epoch table",
                       description="Train one network and print a per-epoch table.")
    add_train_options(p)
    add_experiment_commands(sub)
    return parser


def add_train_options(p):
    _common(p, epochs=5)
    p.add_argument("--download", action="store_true", help="download a missing dataset")
    p.add_argument("--layers", type=_ints, default=None,
                   help="layer widths, e.g. 784,500,10 (default: inputs,500,classes)")
    p.add_argument("--activation", default="relu", help="relu (default), sigmoid or tanh")
    p.add_argument("--loss", default=None, help="cross_entropy (the default for labels), squared_error "
                   "(on one-hot labels), or mse (real targets; the default for a regression .h5 file)")
    p.add_argument("--init-std", type=float, default=0.01, help="std of the N(0, std^2) init (0.01)")
    p.add_argument("--init", default="normal", help="normal (paper, default), he or xavier")
    p.add_argument("--method", default=DEFAULT_METHOD,
                   help="sibp (default), proxbp, sgd, adam or rmsprop")
    add_method_options(p)
    p.add_argument("--split-seed", type=int, default=0, help="seeds the train/validation split (0)")
    p.add_argument("--stationarity", action="store_true", help="record ||dJ/dtheta|| per epoch")
    p.add_argument("--test", action="store_true", help="report the test split's loss and accuracy (or MSE "
                   "and R^2) once, after training")
    p.add_argument("--schedule", default=None, choices=("constant", "inverse", "cosine"),
                   help="step-size schedule over the epochs (lr or eta)")
    p.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop once the validation loss has not improved for PATIENCE epochs, and "
                        "restore the best epoch's parameters")
    p.add_argument("--save-model", default=None, metavar="FILE.h5",
                   help="save the trained network (load it with sibp_np.MLP.load)")
    p.add_argument("--on-divergence", default="stop", choices=("stop", "raise"),
                   help="when the loss overflows: stop the run and keep its history (default), or raise")
    p.add_argument("--out", default=None, help="save the history to FILE.json or FILE.h5")
    p.add_argument("--checkpoint", default=None, help="write a resumable HDF5 checkpoint here")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (1)")
    p.add_argument("--resume", default=None, help="resume the run saved in this checkpoint")


def _json_dict(text):
    import json
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _common(p, epochs):
    """The options that ``train`` and the experiment commands share."""
    p.add_argument("--dataset", default="mnist-5k", help="mnist-5k (embedded, default), mnist, "
                   "fashion-mnist, cifar10, or an .h5 path")
    p.add_argument("--data-root", default=None, help="folder searched first for dataset files")
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs per run ({epochs})")
    p.add_argument("--batch-size", type=int, default=100, help="minibatch size (100)")
    p.add_argument("--seed", type=int, default=0, help="seeds init and shuffling (0)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $SIBP_NP_BACKEND or numpy)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch table or progress lines")


def _executors(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="run the sweep's runs on N local processes")
    g.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run them on a Dask cluster: a scheduler address (tcp://host:8786) or local:N for "
                        "N single-threaded local workers (needs sibp_np[dask])")


def add_experiment_commands(sub):
    """``table1``, ``merge-table1``, ``eta-grid`` and ``figure``: thin wrappers of
    :mod:`sibp_np.experiments`."""
    from .experiments import FIGURES, GRID
    grid = ",".join(f"{g:g}" for g in GRID)
    p = sub.add_parser("table1", help="the paper's Table 1: every method over the step-size grid",
                       description="Reproduce Table 1: train/validation accuracy (mean ± std over runs) "
                       "for SGD, ProxBP and SIBP over the step sizes 100, 10, 1, 0.1, 0.01.")
    _common(p, epochs=2)
    p.add_argument("--layers", type=_ints, default=None, help="default: inputs,500,classes")
    p.add_argument("--runs", type=int, default=5, help="runs per cell (5)")
    p.add_argument("--grid", type=_floats, default=GRID, help=f"step sizes ({grid})")
    p.add_argument("--sibp-eta-scale", type=float, default=1.0,
                   help="multiply the SIBP rows' eta by this (e.g. 0.01 = 1/batch: SIBP's eta is a "
                        "per-sample step, SGD's lr a batch-mean step)")
    p.add_argument("--rows", type=_ints, default=None, help="comma-separated row numbers (1-5); all")
    p.add_argument("--out", default="table1_out", help="folder for table1.md/.json/.h5, and runs/ with "
                   "one file per finished run (a rerun skips those)")
    _executors(p)
    p.set_defaults(handler=run_table1)

    m = sub.add_parser("merge-table1", help="merge Table 1 parts run separately (--rows) into one",
                       description="Merge table1 folders (table1.json and table1.h5) made with --rows.")
    m.add_argument("out", help="folder for the merged table1.md/.json/.h5")
    m.add_argument("parts", nargs="+", help="the table1 folders to merge")
    m.set_defaults(handler=run_merge_table1)

    g = sub.add_parser("eta-grid", help="one method over a grid of step sizes",
                       description="Train one method once per step size, from the same initial weights "
                       "and minibatches; print and save the final accuracies.")
    _common(g, epochs=5)
    g.add_argument("--method", default="sibp", help="sibp (default), proxbp, sgd, adam or rmsprop")
    g.add_argument("--param", default=None, help="the swept hyperparameter (eta for sibp/proxbp, "
                   "else lr)")
    g.add_argument("--grid", type=_floats, default=GRID, help=f"its values ({grid})")
    g.add_argument("--fixed", type=_json_dict, default={},
                   help='other hyperparameters as JSON, e.g. \'{"lam": 1}\'')
    g.add_argument("--layers", type=_ints, default=None, help="default: inputs,500,classes")
    g.add_argument("--out", default=None, help="folder for eta_grid.md/.json/.h5 (and runs/)")
    _executors(g)
    g.set_defaults(handler=run_eta_grid)

    f = sub.add_parser("figure", help="analogues of the paper's Figures 2-5 (PNG plots + histories)",
                       description="Train the methods of one of the paper's figures and plot training "
                       "loss, training accuracy and validation accuracy against epochs and seconds.")
    f.add_argument("number", choices=sorted(FIGURES), help="which figure")
    _common(f, epochs=3)
    f.add_argument("--widths", type=_ints, default=None,
                   help="hidden widths, e.g. 1000,250 (default: the paper's); the input width always "
                        "follows the data")
    f.add_argument("--time-budget", type=float, default=None,
                   help="seconds of training per method (figures 4 and 5 plot against time)")
    f.add_argument("--eval-every", type=int, default=None, help="iterations between records")
    f.add_argument("--train-eval-size", type=int, default=None,
                   help="training metrics on a fixed subset of this size (cheaper curves)")
    f.add_argument("--init-std", type=float, default=0.01, help="std of the N(0, std^2) init (0.01)")
    f.add_argument("--tune", action="store_true",
                   help="choose each method's step (SIBP's too; not figure 5's) on a held-out split "
                        "(1 epoch on up to 10,000 training samples, judged on the last 20%% of them)")
    f.add_argument("--out", default=None, help="folder (default figureN_out)")
    _executors(f)
    f.set_defaults(handler=run_figure)
    return sub


def _settings(args):
    return dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, dtype=args.dtype,
                backend=args.backend, data_root=args.data_root, verbose=0 if args.quiet else 1,
                jobs=args.jobs, dask=args.dask)


def run_table1(args):
    from .experiments import table1
    result = table1(args.dataset, runs=args.runs, rows=args.rows, grid=args.grid, out=args.out,
                    layers=args.layers, sibp_eta_scale=args.sibp_eta_scale, **_settings(args))
    print(result.to_markdown(), end="")
    return 0


def run_merge_table1(args):
    from .experiments import merge_table1
    print(merge_table1(args.parts, out=args.out).to_markdown(), end="")
    return 0


def run_eta_grid(args):
    from .experiments import eta_grid
    result = eta_grid(args.method, args.dataset, param=args.param, grid=args.grid, fixed=args.fixed,
                      layers=args.layers, out=args.out, **_settings(args))
    print(result.to_markdown(), end="")
    return 0


def run_figure(args):
    from .experiments import figure
    settings = _settings(args)
    result = figure(args.number, dataset=args.dataset, widths=args.widths, time_budget=args.time_budget,
                    eval_every=args.eval_every, train_eval_size=args.train_eval_size,
                    init_std=args.init_std, tune=args.tune, out=args.out or f"figure{args.number}_out",
                    **settings)
    if settings["verbose"]:
        print(result.to_markdown(), end="")
    return 0


def check_train_paths(args):
    """Before any work: every output can be written, and none of them is an input or another output."""
    from ._validation import check_output_path
    h5 = (".h5", ".hdf5")
    outputs = {"--out": (args.out, (".json",) + h5), "--checkpoint": (args.checkpoint, h5),
               "--save-model": (args.save_model, h5)}
    paths = {opt: check_output_path(opt, p, suffixes) for opt, (p, suffixes) in outputs.items() if p}
    inputs = {"--resume": args.resume}
    if str(args.dataset).lower().endswith(h5):
        inputs["--dataset"] = args.dataset
    named = [(opt, Path(p).resolve()) for opt, p in paths.items()]
    named += [(opt, Path(p).resolve()) for opt, p in inputs.items() if p]
    for i, (a, pa) in enumerate(named):
        for b, pb in named[i + 1:]:
            if pa == pb and {a, b} != {"--checkpoint", "--resume"}:  # resuming into it is the point
                raise ValueError(f"{a} and {b} are the same file ({pa}): it would be overwritten")


def run_train(args):
    from .callbacks import EarlyStopping
    from .datasets import load_dataset
    check_train_paths(args)
    from .model import MLP
    from .train import fit
    data = load_dataset(args.dataset, root=args.data_root, download=args.download,
                        split_seed=args.split_seed, dtype=args.dtype)
    layers = args.layers or [data.n_features, 500, data.n_outputs]
    if layers[0] != data.n_features:
        raise ValueError(f"--layers starts with {layers[0]} inputs but {data.name} has "
                         f"{data.n_features} features")
    test = data.test if args.test else None
    if args.test and (test[0] is None or not len(test[0])):
        raise ValueError(f"--test: {data.name} has no test split")
    loss = args.loss or ("mse" if data.task == "regression" else "cross_entropy")
    method = method_from_args(args.method, args)
    model = MLP(layers, activation=args.activation, init_std=args.init_std, init=args.init,
                seed=args.seed, dtype=args.dtype, backend=args.backend, loss=loss)
    if model.task != data.task:
        raise ValueError(f"--loss {loss} is a {model.task} loss but {data.name} is a {data.task} dataset")
    if not args.quiet:
        print(f"sibp_np {__version__}: {data!r}")
        print(f"model {model}, method {method}")
    val = data.val if len(data.y_val) else None
    history = fit(model, method, *data.train, val=val, epochs=args.epochs, batch_size=args.batch_size,
                  seed=args.seed, verbose=0 if args.quiet else 1, on_divergence=args.on_divergence,
                  stationarity=args.stationarity, checkpoint=args.checkpoint,
                  checkpoint_every=args.checkpoint_every, resume=args.resume, test=test,
                  schedule=args.schedule, config={"dataset": data.name, "split_seed": args.split_seed},
                  callbacks=[] if args.early_stopping is None else [EarlyStopping(
                      patience=args.early_stopping)])
    stopping = history.summary.get("early_stopping")
    if stopping and not args.quiet:
        print(f"early stopping: best val_loss {stopping['best']:.4f} at epoch {stopping['best_epoch']}"
              + (f", stopped after epoch {stopping['stopped_epoch']}" if stopping["stopped_epoch"] else "")
              + ("; its parameters restored" if stopping["restored"] else ""))
    if args.save_model:
        model.save(args.save_model)
        if not args.quiet:
            print(f"model written to {args.save_model}")
    if args.test:
        print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in history.summary["test"].items()))
    if args.out:
        history.save(args.out)
        if not args.quiet:
            print(f"history written to {args.out}")
    return 0 if history.diverged is None else 3


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["train"] + argv
    args = parser.parse_args(argv)
    try:
        return args.handler(args) if hasattr(args, "handler") else run_train(args)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as exc:
        # a user error, or a file that cannot be read or written: one line, no traceback
        print(f"sibp-np: error: {exc}", file=sys.stderr)
        return 2
