"""Command line: ``sibp-np train`` (the default command) and the experiment commands."""
import argparse
import inspect
import sys

from . import __version__

DEFAULT_METHOD = "sibp"


def _floats(text):
    return tuple(float(v) for v in text.split(","))


def _layers(text):
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers, got {text!r}")
    return sizes


def add_method_options(p):
    g = p.add_argument_group("method hyperparameters (each method takes the ones it knows)")
    g.add_argument("--lr", type=float, help="learning rate (sgd, adam, rmsprop)")
    g.add_argument("--momentum", type=float, help="momentum (sgd, rmsprop)")
    g.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (sgd)")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay (sgd, adam, rmsprop)")
    g.add_argument("--betas", type=_floats, help="Adam's beta1,beta2, e.g. 0.9,0.999")
    g.add_argument("--alpha", type=float, help="RMSprop smoothing constant")
    g.add_argument("--eps", type=float, help="Adam/RMSprop epsilon")
    g.add_argument("--eta", type=float, help="step on the neurons (sibp, proxbp)")
    g.add_argument("--lam", type=float, help="proximal weight lambda (sibp, proxbp)")
    g.add_argument("--cg-steps", type=int, help="inner CG iterations (sibp, proxbp)")
    g.add_argument("--cg-variant", choices=("fr", "pr+"), help="nonlinear CG beta (sibp)")
    g.add_argument("--output-solve", choices=("ncg", "exact"), help="SIBP's output-layer solver")
    g.add_argument("--safeguard", choices=("trust-region", "none"),
                   help="SIBP's safeguard (default trust-region; none = plain Algorithm 1)")
    g.add_argument("--trust-radius", type=float, help="SIBP's kappa: gain growth <= e^kappa per step (2)")
    g.add_argument("--compat", choices=("matlab",), help="SIBP: the authors' own inner solver")
    g.add_argument("--solve", choices=("cg", "exact"), help="ProxBP's solver")


_OPTION_TO_PARAM = {"lr": "lr", "momentum": "momentum", "nesterov": "nesterov",
                    "weight_decay": "weight_decay", "betas": "betas", "alpha": "alpha", "eps": "eps",
                    "eta": "eta", "lam": "lam", "cg_steps": "cg_steps", "cg_variant": "cg_variant",
                    "output_solve": "output_solve", "solve": "solve", "safeguard": "safeguard",
                    "trust_radius": "trust_radius", "compat": "compat"}


def method_from_args(name, args):
    """Build the method ``name`` from the parsed options it accepts; an option it does not take is an
    error, not silently ignored."""
    from .methods import METHODS, get_method
    from ._validation import check_choice
    key = check_choice("--method", name, tuple(sorted(METHODS)))
    accepted = inspect.signature(METHODS[key].__init__).parameters
    kw = {}
    for opt, param in _OPTION_TO_PARAM.items():
        v = getattr(args, opt, None)
        if v is None:
            continue
        if param not in accepted:
            raise ValueError(f"--{opt.replace('_', '-')} does not apply to method {key!r} (it takes "
                             f"{', '.join(p for p in accepted if p != 'self')})")
        kw[param] = v
    if key in ("sgd",) and "lr" not in kw:
        kw["lr"] = 0.1
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
    from . import experiments
    experiments.add_commands(sub)
    return parser


def add_train_options(p):
    p.add_argument("--dataset", default="mnist-5k",
                   help="mnist-5k (embedded, default), mnist, fashion-mnist, cifar10, or an .h5 path")
    p.add_argument("--data-root", default=None, help="folder searched first for dataset files")
    p.add_argument("--download", action="store_true", help="download a missing dataset")
    p.add_argument("--layers", type=_layers, default=None,
                   help="layer widths, e.g. 784,500,10 (default: inputs,500,classes)")
    p.add_argument("--activation", default="relu", help="relu (default), sigmoid or tanh")
    p.add_argument("--loss", default="cross_entropy", help="cross_entropy (default) or squared_error")
    p.add_argument("--init-std", type=float, default=0.01, help="std of the N(0, std^2) init (0.01)")
    p.add_argument("--init", default="normal", help="normal (paper, default), he or xavier")
    p.add_argument("--method", default=DEFAULT_METHOD,
                   help="sibp (default), proxbp, sgd, adam or rmsprop")
    add_method_options(p)
    p.add_argument("--epochs", type=int, default=5, help="passes over the training set (5)")
    p.add_argument("--batch-size", type=int, default=100, help="minibatch size (100)")
    p.add_argument("--seed", type=int, default=0, help="seeds init and shuffling (0)")
    p.add_argument("--split-seed", type=int, default=0, help="seeds the train/validation split (0)")
    p.add_argument("--backend", default=None, help="numpy or cupy (default: $SIBP_NP_BACKEND or numpy)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    p.add_argument("--stationarity", action="store_true", help="record ||dJ/dtheta|| per epoch")
    p.add_argument("--on-divergence", default="stop", choices=("stop", "raise"))
    p.add_argument("--out", default=None, help="save the history to FILE.json or FILE.h5")
    p.add_argument("--checkpoint", default=None, help="write a resumable HDF5 checkpoint here")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (1)")
    p.add_argument("--resume", default=None, help="resume the run saved in this checkpoint")
    p.add_argument("--quiet", action="store_true", help="no per-epoch table")


def run_train(args):
    from .datasets import load_dataset
    from .model import MLP
    from .train import fit
    data = load_dataset(args.dataset, root=args.data_root, download=args.download,
                        split_seed=args.split_seed, dtype=args.dtype)
    layers = args.layers or [data.n_features, 500, data.n_classes]
    if layers[0] != data.n_features:
        raise ValueError(f"--layers starts with {layers[0]} inputs but {data.name} has "
                         f"{data.n_features} features")
    method = method_from_args(args.method, args)
    model = MLP(layers, activation=args.activation, init_std=args.init_std, init=args.init,
                seed=args.seed, dtype=args.dtype, backend=args.backend, loss=args.loss)
    if not args.quiet:
        print(f"sibp_np {__version__}: {data!r}")
        print(f"model {model}, method {method}")
    val = data.val if len(data.y_val) else None
    history = fit(model, method, *data.train, val=val, epochs=args.epochs, batch_size=args.batch_size,
                  seed=args.seed, verbose=0 if args.quiet else 1, on_divergence=args.on_divergence,
                  stationarity=args.stationarity, checkpoint=args.checkpoint,
                  checkpoint_every=args.checkpoint_every, resume=args.resume,
                  config={"dataset": data.name, "split_seed": args.split_seed})
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
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"sibp-np: error: {exc}", file=sys.stderr)
        return 2
