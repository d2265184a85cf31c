"""Every public entry point against wrong types, shapes, dtypes, values and files (one table), and a
property test: random small problems through every method either train with finite numbers or raise
one of the documented errors."""
import contextlib
import inspect
import io
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sibp_np import METHODS, MLP, SGD, SIBP, Adam, ProxBP, RMSprop, experiments, fit, get_method, load_dataset
from sibp_np.checkpoint import CheckpointError, load_checkpoint
from sibp_np.cli import main
from sibp_np.datasets import read_cifar10_batch, read_idx, save_h5, write_idx

R = np.random.default_rng(0)
X = R.random((20, 6))
Y = R.integers(0, 3, size=20)


def model():
    return MLP([6, 5, 3], seed=0)


def idx_file(tmp, data):
    p = tmp / "f.idx"
    p.write_bytes(data)
    return p


def cifar_file(tmp, d):
    p = tmp / "b"
    with open(p, "wb") as fh:
        pickle.dump(d, fh)
    return p


def cli(*argv):
    """Run the CLI; exit status 2 becomes ``ValueError("cli exit 2: <stderr>")`` (so cases can match the
    one-line message), and a traceback on stderr fails the case."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
    assert "Traceback" not in err.getvalue(), err.getvalue()
    if rc == 2:
        raise ValueError(f"cli exit 2: {err.getvalue()}")
    return rc


def h5_data(t, name="d.h5", **arrays):
    save_h5(t / name, **arrays)
    return str(t / name)


def trained_checkpoint(t, method=None):
    fit(model(), method or Adam(), X, Y, epochs=2, batch_size=5, verbose=0, checkpoint=t / "c.h5")
    return t / "c.h5"


def edit_checkpoint(t, edit):
    """A checkpoint changed by ``edit(h5py.File)`` and re-sealed with a valid checksum: the structural
    checks, not the checksum, must catch it."""
    import h5py

    from sibp_np.checkpoint import digest
    path = trained_checkpoint(t)
    with h5py.File(path, "a") as f:
        edit(f)
        f.attrs["sha256"] = digest(f)
    return path


def resume(t, path):
    return fit(model(), Adam(), X, Y, epochs=3, batch_size=5, verbose=0, resume=path)


def big_idx_header(t):
    return idx_file(t, b"\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00")


def mnist_folder(t, images, labels):
    folder = t / "mnist"
    folder.mkdir()
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    for name, a in zip(names, (images, labels, images, labels)):
        write_idx(folder / name, a)
    return t


# (id, callable taking tmp_path, exception, message pattern)
CASES = [
    # MLP
    ("mlp-one-layer", lambda t: MLP([6]), ValueError, "at least 2 entries"),
    ("mlp-zero-width", lambda t: MLP([6, 0, 3]), ValueError, r"layer_sizes\[1\] must be a positive width"),
    ("mlp-negative-width", lambda t: MLP([6, -2, 3]), ValueError, r"layer_sizes\[1\] must be a positive"),
    ("mlp-float-width", lambda t: MLP([6, 5.0, 3]), TypeError, r"layer_sizes\[1\] must be an integer"),
    ("mlp-string-sizes", lambda t: MLP("6,5,3"), TypeError, "sequence of ints"),
    ("mlp-activation", lambda t: MLP([6, 3], activation="elu"), ValueError, "activation='elu'"),
    ("mlp-identity", lambda t: MLP([6, 3], activation="identity"), ValueError, "linear"),
    ("mlp-dtype", lambda t: MLP([6, 3], dtype="int32"), ValueError, "dtype must be 'float32' or 'float64'"),
    ("mlp-float16", lambda t: MLP([6, 3], dtype=np.float16), ValueError, "got <class 'numpy.float16'>"),
    ("mlp-init-std", lambda t: MLP([6, 3], init_std=-1), ValueError, "init_std must be a finite number > 0"),
    ("mlp-init", lambda t: MLP([6, 3], init="orthogonal"), ValueError, "init='orthogonal'"),
    ("mlp-backend", lambda t: MLP([6, 3], backend="tpu"), ValueError, "backend='tpu'"),
    ("mlp-loss", lambda t: MLP([6, 3], loss="hinge"), ValueError, "loss='hinge'"),
    ("mlp-assign-shape", lambda t: model().weights.__setitem__(0, np.ones((6, 5))), ValueError,
     r"weights\[0\] must have shape \(5, 6\)"),
    ("mlp-assign-index", lambda t: model().biases.__setitem__(5, np.ones(3)), IndexError, "has 2 layers"),
    ("predict-features", lambda t: model().predict(np.ones((2, 5))), ValueError, "X has 5 features"),
    ("evaluate-nan", lambda t: model().evaluate(np.full((2, 6), np.nan), [0, 1]), ValueError, "NaN or inf"),
    ("predict-proba-3d", lambda t: model().predict_proba(np.ones((2, 6, 1))), ValueError, "must be 2-D"),
    # fit
    ("fit-float16", lambda t: fit(model(), SGD(lr=0.1), X.astype(np.float16), Y, epochs=1, verbose=0),
     TypeError, "X has dtype float16"),
    ("fit-onehot-wrong-width", lambda t: fit(model(), SGD(lr=0.1), X, np.eye(4)[Y], epochs=1, verbose=0),
     ValueError, "one-hot targets are not accepted"),
    ("fit-labels-range", lambda t: fit(model(), SGD(lr=0.1), X, Y + 3, epochs=1, verbose=0), ValueError,
     r"labels in \[3, 5\] but the model has 3 classes"),
    ("fit-lengths", lambda t: fit(model(), SGD(lr=0.1), X, Y[:5], epochs=1, verbose=0), ValueError,
     "different lengths: 20 and 5"),
    ("fit-empty", lambda t: fit(model(), SGD(lr=0.1), X[:0], Y[:0], epochs=1, verbose=0), ValueError,
     "X is empty"),
    ("fit-batch-too-large", lambda t: fit(model(), SGD(lr=0.1), X, Y, epochs=1, batch_size=21, verbose=0),
     ValueError, "batch_size=21 is larger than the training set"),
    ("fit-batch-zero", lambda t: fit(model(), SGD(lr=0.1), X, Y, epochs=1, batch_size=0, verbose=0),
     ValueError, "batch_size must be >= 1"),
    ("fit-epochs-negative", lambda t: fit(model(), SGD(lr=0.1), X, Y, epochs=-3, verbose=0), ValueError,
     "epochs must be >= 0"),
    ("fit-epochs-str", lambda t: fit(model(), SGD(lr=0.1), X, Y, epochs="2", verbose=0), TypeError,
     "epochs must be an integer"),
    ("fit-val-shape", lambda t: fit(model(), SGD(lr=0.1), X, Y, val=X, epochs=1, batch_size=5,
                                    verbose=0), TypeError, "val must be a pair"),
    ("fit-not-a-method", lambda t: fit(model(), "sgd", X, Y, epochs=1, verbose=0), TypeError,
     "method must have a step"),
    ("fit-checkpoint-every", lambda t: fit(model(), SGD(lr=0.1), X, Y, epochs=1, verbose=0,
                                           batch_size=5, checkpoint_every=0), ValueError,
     "checkpoint_every must be >= 1"),
    ("fit-resume-missing", lambda t: fit(model(), SGD(lr=0.1), X, Y, epochs=1, verbose=0,
                                         batch_size=5, resume=t / "none.h5"), FileNotFoundError,
     "does not exist"),
    # method constructors
    ("sgd-lr-zero", lambda t: SGD(lr=0), ValueError, "lr must be a finite number > 0, got 0"),
    ("sgd-lr-nan", lambda t: SGD(lr=float("nan")), ValueError, "lr must be a finite number > 0, got nan"),
    ("sgd-momentum-negative", lambda t: SGD(lr=0.1, momentum=-0.5), ValueError, "momentum must be"),
    ("adam-lr-inf", lambda t: Adam(lr=float("inf")), ValueError, "lr must be a finite number > 0, got inf"),
    ("adam-betas", lambda t: Adam(betas=(1.2, 0.9)), ValueError, r"betas\[0\] must lie in \[0, 1\)"),
    ("adam-eps", lambda t: Adam(eps=0), ValueError, "eps must be a finite number > 0"),
    ("rmsprop-alpha", lambda t: RMSprop(alpha=1.0), ValueError, r"alpha must lie in \[0, 1\)"),
    ("rmsprop-lr-list", lambda t: RMSprop(lr=[0.1]), TypeError, "lr must be a real number, got list"),
    ("sibp-eta", lambda t: SIBP(eta=-1), ValueError, "eta must be a finite number > 0, got -1"),
    ("sibp-lam-bool", lambda t: SIBP(lam=True), TypeError, "lam must be a real number, got bool"),
    ("sibp-cg", lambda t: SIBP(cg_steps=0), ValueError, "cg_steps must be >= 1"),
    ("sibp-weight-solver", lambda t: SIBP(weight_form="qr"), ValueError, "weight_form='qr'"),
    ("proxbp-solve", lambda t: ProxBP(linear_solve="lsqr"), ValueError, "linear_solve='lsqr'"),
    ("proxbp-optimizer", lambda t: ProxBP(optimizer=object()), TypeError, "optimizer must be"),
    ("get-method", lambda t: get_method("lbfgs"), ValueError, "method='lbfgs' is not known"),
    ("get-method-kwarg", lambda t: get_method("sgd", lr=0.1, eta=1), TypeError, "eta"),
    # method steps
    ("step-sgd-features", lambda t: SGD(lr=0.1).step(model(), X[:, :4], Y), ValueError, "X has 4 features"),
    ("step-sibp-labels", lambda t: SIBP().step(model(), X, Y.astype(float) + 0.5), TypeError,
     "integer class labels"),
    ("step-proxbp-inf", lambda t: ProxBP().step(model(), np.full((3, 6), np.inf), [0, 1, 2]), ValueError,
     "NaN or inf"),
    ("step-adam-strings", lambda t: Adam().step(model(), "X", Y), TypeError, "X must be an array"),
    ("step-rmsprop-2d-y", lambda t: RMSprop().step(model(), X, Y[:, None]), ValueError, "must be 1-D"),
    # datasets and readers
    ("dataset-name", lambda t: load_dataset("svhn"), ValueError, "dataset='svhn' is not known"),
    ("dataset-type", lambda t: load_dataset(None), TypeError, "name must be a dataset name"),
    ("dataset-split-seed", lambda t: load_dataset("mnist-5k", split_seed=-1), ValueError, "split_seed"),
    ("dataset-dtype", lambda t: load_dataset("mnist-5k", dtype="float16"), ValueError, "dtype"),
    ("dataset-missing", lambda t: load_dataset("mnist", root=t), FileNotFoundError, "not found: need"),
    ("dataset-h5-missing", lambda t: load_dataset(str(t / "none.h5")), FileNotFoundError, "does not exist"),
    ("dataset-h5-keys", lambda t: (save_h5(t / "k.h5", X=X), load_dataset(str(t / "k.h5"))), ValueError,
     "missing dataset"),
    ("idx-empty", lambda t: read_idx(idx_file(t, b"")), ValueError, "bad magic number"),
    ("idx-type", lambda t: read_idx(idx_file(t, b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")), ValueError,
     "unknown IDX element type 0x07"),
    ("idx-header", lambda t: read_idx(idx_file(t, b"\x00\x00\x08\x03\x00\x00")), ValueError,
     "header is truncated"),
    ("idx-long", lambda t: read_idx(idx_file(t, b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06")), ValueError,
     "1 bytes of data"),
    ("cifar-keys", lambda t: read_cifar10_batch(cifar_file(t, {b"data": np.zeros((1, 3072), np.uint8)})),
     ValueError, r"missing key\(s\) \['labels'\]"),
    ("cifar-shape", lambda t: read_cifar10_batch(cifar_file(t, {b"data": np.zeros((2, 10)),
                                                                b"labels": [0, 1]})), ValueError,
     r"expected data of shape \(n, 3072\)"),
    ("cifar-not-dict", lambda t: read_cifar10_batch(cifar_file(t, [1, 2])), ValueError, "is a dict"),
    # checkpoint loader
    ("ckpt-text", lambda t: load_checkpoint(idx_file(t, b"not hdf5")), CheckpointError,
     "not a readable HDF5 file"),
    ("ckpt-missing", lambda t: load_checkpoint(t / "nope.h5"), FileNotFoundError, "does not exist"),
    # CLI (exit status 2 with one line on stderr)
    ("cli-method", lambda t: cli("--method", "newton"), ValueError, "cli exit 2"),
    ("cli-lr", lambda t: cli("--method", "sgd", "--lr", "nan"), ValueError, "cli exit 2"),
    ("cli-batch", lambda t: cli("--batch-size", "0"), ValueError, "cli exit 2"),
    ("cli-dataset", lambda t: cli("--dataset", "mnist", "--data-root", str(t)), ValueError, "cli exit 2"),
    ("cli-resume", lambda t: cli("--resume", str(t / "x.h5")), ValueError, "cli exit 2"),
    ("cli-dtype", lambda t: cli("--dtype", "float16"), ValueError, "cli exit 2"),
    # --- files, paths, labels and arrays at their limits ------------------------------------------
    # code from data files
    ("cifar-crafted-pickle", lambda t: read_cifar10_batch(cifar_file(t, {b"data": np.zeros((1, 3072)),
                                                                          b"labels": [0], b"x": print})),
     ValueError, "references builtins.print.*refused"),
    ("cifar-pixels-range", lambda t: read_cifar10_batch(cifar_file(t, {b"data": np.full((1, 3072), 300),
                                                                       b"labels": [0]})), ValueError,
     r"pixels must lie in 0..255; found 300..300"),
    ("cifar-pixels-float", lambda t: read_cifar10_batch(cifar_file(t, {b"data": np.full((1, 3072), 0.5),
                                                                       b"labels": [0]})), ValueError,
     "pixels must be whole numbers"),
    ("cifar-labels-float", lambda t: read_cifar10_batch(cifar_file(
        t, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1.0]})), ValueError,
     r"labels must be whole numbers; found non-integral values such as \[0.5\]"),
    # lost files: an output that is an input or another output is refused before anything runs
    ("cli-out-is-dataset", lambda t: cli("--dataset", h5_data(t, X_train=X, y_train=Y), "--out",
                                         str(t / "d.h5")), ValueError,
     "--out and --dataset are the same file"),
    ("cli-out-is-checkpoint", lambda t: cli("--checkpoint", str(t / "c.h5"), "--out", str(t / "c.h5")),
     ValueError, "--out and --checkpoint are the same file"),
    ("cli-model-is-resume", lambda t: cli("--resume", str(t / "c.h5"), "--save-model", str(t / "c.h5")),
     ValueError, "--save-model and --resume are the same file"),
    # corrupt or incomplete checkpoints
    ("ckpt-state-entry-deleted", lambda t: resume(t, edit_checkpoint(
        t, lambda f: f["method_state"].pop("m0"))),
     CheckpointError, r"c\.h5: the method state is incomplete: missing \['m0'\]"),
    ("ckpt-negative-epoch", lambda t: resume(t, edit_checkpoint(
        t, lambda f: f.attrs.__setitem__("epoch", -3))),
     CheckpointError, "epoch -3 and iteration 8 do not agree"),
    ("ckpt-param-shape", lambda t: resume(t, edit_checkpoint(
        t, lambda f: (f["model"].pop("W1"), f["model"].create_dataset("W1", data=np.zeros((2, 2)))))),
     CheckpointError, r"parameter W1 must be a float array of shape \(3, 5\)"),
    ("ckpt-unsealed-edit", lambda t: resume(t, _unsealed(t)), CheckpointError, "checksum does not match"),
    ("ckpt-other-architecture", lambda t: fit(MLP([6, 4, 3]), Adam(), X, Y, epochs=3, batch_size=5,
                                              verbose=0, resume=trained_checkpoint(t)), CheckpointError,
     "layer_sizes is"),
    # outputs checked before the first step
    ("fit-checkpoint-missing-folder", lambda t: fit(model(), SGD(), X, Y, epochs=1, batch_size=5, verbose=0,
                                                    checkpoint=t / "no" / "c.h5"), ValueError,
     "folder .* does not exist"),
    ("fit-checkpoint-is-folder", lambda t: fit(model(), SGD(), X, Y, epochs=1, batch_size=5, verbose=0,
                                               checkpoint=_folder(t, "c.h5")), ValueError, "is a folder"),
    ("fit-checkpoint-under-file", lambda t: fit(model(), SGD(), X, Y, epochs=1, batch_size=5, verbose=0,
                                                checkpoint=_file(t, "plain") / "c.h5"), ValueError,
     "is not a folder"),
    ("fit-checkpoint-extension", lambda t: fit(model(), SGD(), X, Y, epochs=1, batch_size=5, verbose=0,
                                               checkpoint=t / "c.ckpt"), ValueError, r"ending in \.h5"),
    ("cli-out-missing-folder", lambda t: cli("--out", str(t / "no" / "h.json")), ValueError,
     "--out=.*does not exist"),
    ("cli-out-extension", lambda t: cli("--out", str(t / "h.txt")), ValueError, r"--out=.*\.json or \.h5"),
    ("cli-checkpoint-folder", lambda t: cli("--checkpoint", str(_folder(t, "c.h5"))), ValueError,
     "--checkpoint=.*is a folder"),
    ("history-save-extension", lambda t: fit(model(), SGD(), X, Y, epochs=0, batch_size=5,
                                             verbose=0).save(t / "h.csv"),
     ValueError, "use a .json or .h5"),
    ("model-save-missing-folder", lambda t: model().save(t / "no" / "m.h5"), ValueError, "does not exist"),
    ("table1-out-is-file", lambda t: experiments.table1(out=_file(t, "f")), ValueError, "is a file"),
    # datasets: pairs, lengths, widths, whole-number labels
    ("h5-x-without-y", lambda t: load_dataset(h5_data(t, X_train=X, y_train=Y, X_val=X)), ValueError,
     "X_val and y_val come together"),
    ("h5-lengths", lambda t: load_dataset(h5_data(t, X_train=X, y_train=Y[:7])), ValueError,
     r"X_train has 20 rows but y_train has shape \(7,\)"),
    ("h5-val-width", lambda t: load_dataset(h5_data(t, X_train=X, y_train=Y, X_val=X[:, :4], y_val=Y)),
     ValueError, "X_val has 4 features but X_train has 6"),
    ("h5-label-fraction", lambda t: load_dataset(h5_data(t, X_train=X, y_train=Y, X_val=X,
                                                         y_val=Y + 0.5)), ValueError,
     "y_val labels must be whole numbers"),
    ("h5-negative-label", lambda t: load_dataset(h5_data(t, X_train=X, y_train=Y - 1)), ValueError,
     r"y_train labels must lie in 0..\d+; found -1"),
    ("idx-corrupt-gzip", lambda t: read_idx(_gz_garbage(t)), ValueError, "truncated or corrupt"),
    ("idx-dims-overflow", lambda t: read_idx(big_idx_header(t)), ValueError, "truncated or corrupt"),
    ("idx-not-28x28", lambda t: load_dataset("mnist", root=mnist_folder(
        t, np.zeros((24, 14, 56), np.uint8), np.zeros(24, np.uint8))), ValueError,
     r"expected images of shape \(n, 28, 28\), got \(24, 14, 56\)"),
    ("idx-float-labels", lambda t: load_dataset("mnist", root=mnist_folder(
        t, np.zeros((24, 28, 28), np.uint8), np.full(24, 1.5, np.float32))), ValueError,
     "labels must be whole numbers"),
    ("idx-label-range", lambda t: load_dataset("mnist", root=mnist_folder(
        t, np.zeros((24, 28, 28), np.uint8), np.full(24, 12, np.uint8))), ValueError,
     r"labels must lie in 0..9; found 12..12"),
    # values that would be silently wrong
    ("evaluate-chunk", lambda t: model().evaluate(X, Y, chunk=-1), ValueError, "chunk must be >= 1"),
    ("fit-config-override", lambda t: fit(model(), SGD(), X, Y, epochs=1, batch_size=5, verbose=0,
                                          config={"layer_sizes": [1, 2]}), ValueError,
     r"config may not set \['layer_sizes'\]"),
    ("weights-nan", lambda t: model().weights.__setitem__(0, np.full((5, 6), np.nan)), ValueError,
     r"weights\[0\] contains NaN or inf"),
    ("weights-complex", lambda t: model().weights.__setitem__(0, np.ones((5, 6), complex)), TypeError,
     "must hold real numbers"),
    ("weights-none", lambda t: model().biases.__setitem__(0, None), TypeError,
     r"biases\[0\] must be an array"),
    ("weights-float-index", lambda t: model().weights.__setitem__(0.0, np.ones((5, 6))), TypeError,
     "index must be an integer"),
    ("sibp-eta-overflows-float32", lambda t: fit(model(), SIBP(eta=1e39), X, Y, epochs=1, batch_size=5,
                                                 verbose=0), ValueError,
     "eta=1e.39 becomes inf in the model's float32"),
    ("adam-eps-underflows-float32", lambda t: fit(model(), Adam(eps=1e-300), X, Y, epochs=1, batch_size=5,
                                                  verbose=0), ValueError,
     "eps=1e-300 becomes 0.0 in the model's float32"),
    # foreign exceptions, now named
    ("mlp-seed-negative", lambda t: MLP([6, 3], seed=-1), ValueError, "seed must be >= 0, got -1"),
    ("mlp-seed-float", lambda t: MLP([6, 3], seed=1.5), TypeError, "seed must be None, a non-negative int"),
    ("fit-seed-string", lambda t: fit(model(), SGD(), X, Y, epochs=1, batch_size=5, verbose=0, seed="0"),
     TypeError, "seed must be None"),
    ("sibp-exact-singular", lambda t: SIBP(linear_solve="exact", lam=1e-300).step(
        MLP([6, 5, 3], seed=0, dtype="float64"), SINGULAR, Y), ValueError,
     r"lam=1e-300: the exact output solve's matrix 2 F\^T F \+ lam I \(W_2\) is not numerically positive"),
    ("proxbp-exact-singular", lambda t: ProxBP(linear_solve="exact", lam=1e-300).step(
        MLP([6, 5, 3], seed=0, dtype="float64"), SINGULAR, Y), ValueError,
     r"lam=1e-300: the exact solve's matrix .* \(W_1, (primal|row-space) form\) is not numerically positive"),
    ("optimizer-other-model", lambda t: _reused(SGD(momentum=0.9)), ValueError,
     "SGD was used on another model: its state buf0 has shape"),
    ("proxbp-optimizer-class", lambda t: ProxBP(optimizer=SGD), TypeError,
     r"an instance such as SGD\(lr=0.1\)"),
    ("fit-val-names", lambda t: fit(model(), SGD(), X, Y, val=(X[:, :2], Y), epochs=1, batch_size=5,
                                    verbose=0), ValueError, "X_val has 2 features"),
    ("fit-val-label-names", lambda t: fit(model(), SGD(), X, Y, val=(X, Y[:3]), epochs=1, batch_size=5,
                                          verbose=0), ValueError, "y_val has 3 entries for 20 samples"),
    ("cli-table1-rows", lambda t: cli("table1", "--rows", "6", "--out", str(t / "o")), ValueError,
     r"rows=\[6\]: row numbers run from 1 to 5"),
    ("cli-table1-grid", lambda t: cli("table1", "--grid", "abc"), ValueError,
     "argument --grid: expected comma-separated numbers, got 'abc'"),
    ("cli-layers-empty-width", lambda t: cli("--layers", "784,,10"), ValueError,
     "argument --layers: expected comma-separated integers, got '784,,10'"),
    ("cli-figure-widths", lambda t: cli("figure", "2", "--widths", "a,b"), ValueError,
     "argument --widths: expected comma-separated integers"),
]

SINGULAR = np.repeat(np.random.default_rng(0).normal(size=(20, 1)), 6, axis=1) * 1e8  # rank 1


def _folder(t, name):
    (t / name).mkdir()
    return t / name


def _file(t, name):
    (t / name).write_text("x")
    return t / name


def _gz_garbage(t):
    p = t / "g.idx.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage that is not deflate")
    return p


def _unsealed(t):
    import h5py
    path = trained_checkpoint(t)
    with h5py.File(path, "a") as f:
        f.attrs["epoch"] = 1
    return path


def _reused(opt):
    opt.step(model(), X, Y)
    opt.step(MLP([6, 4, 3]), X, Y)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tmp_path, capsys):
    _, call, exc, match = case
    with pytest.raises(exc, match=match):
        call(tmp_path)
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_the_table_is_large():
    assert len(CASES) >= 127


@pytest.mark.parametrize("make", [np.asfortranarray, lambda a: a.tolist(),
                                  lambda a: np.repeat(a, 2, axis=1)[:, ::2], lambda a: a.astype(np.int64)])
def test_inputs_that_work_correctly(make):
    Xi = (X * 10).round()
    m1, m2 = model(), model()
    SGD(lr=0.1).step(m1, Xi, Y)
    SGD(lr=0.1).step(m2, make(Xi), list(Y) if isinstance(make(Xi), list) else Y)
    for a, b in zip(m1.params(), m2.params()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def make_method(name, h):
    """Every registered method at ``h`` times its default step (``eta`` or ``lr``), with ``lam = 1/h``
    where it has one: one knob from tiny to huge steps."""
    cls = METHODS[name]
    names = cls.hyperparameter_names()
    step = "eta" if "eta" in names else "lr"
    kw = {step: h * inspect.signature(cls.__init__).parameters[step].default}
    if "lam" in names:
        kw["lam"] = 1.0 / h
    return cls(**kw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(METHODS)),
       sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       n=st.integers(1, 12), batch=st.integers(1, 12), h=st.floats(1e-3, 1e3),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 10))
def test_property_every_method_trains_finite_or_reports(name, sizes, n, batch, h, dtype, seed):
    r = np.random.default_rng(seed)
    Xp = r.normal(size=(n, sizes[0])) * 3
    yp = r.integers(0, sizes[-1], size=n)
    m = MLP(sizes, seed=seed, dtype=dtype, init_std=0.5)
    try:
        hist = fit(m, make_method(name, h), Xp, yp, epochs=2, batch_size=batch, verbose=0)
    except ValueError as exc:
        assert batch > n and "larger than the training set" in str(exc)
        return
    if hist.diverged is None:
        assert all(np.isfinite(hist["train_loss"])) and m.params_finite()
    else:
        assert hist.diverged["method"] == name and hist.diverged["epoch"] in (1, 2)


def test_more_inputs_that_gave_raw_errors_or_garbage():
    from sibp_np.model import _memory_bytes
    m = MLP([3, 4, 2], seed=0)
    X = np.zeros((5, 3))
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        fit(m, SGD(), X, np.array([0, 1, np.inf, 0, 1]), epochs=1, batch_size=5, verbose=0)
    with pytest.raises(ValueError, match="X is ragged: each row must have 3 values"):
        m.predict([[1, 2, 3], [1, 2]])
    with pytest.raises(TypeError, match="X is a masked array with masked entries"):
        m.predict(np.ma.masked_array(X, mask=np.eye(5, 3, dtype=bool)))
    np.testing.assert_array_equal(m.predict(np.ma.masked_array(X)), m.predict(X))  # nothing masked
    with pytest.raises(ValueError, match=r"init_std=1e\+39 overflows float32"):
        MLP([3, 4, 2], init_std=1e39)
    MLP([3, 4, 2], init_std=1e39, dtype="float64")  # float64 holds it
    if not _memory_bytes():
        pytest.skip("this platform does not tell its memory size")
    with pytest.raises(ValueError, match=r"layer_sizes=\[3, 1000000000000, 2\] has 6,000,000,000,002 "
                                         r"parameters: .* GiB in float32, more than this machine's"):
        MLP([3, 10 ** 12, 2])


def test_history_files_are_checked_and_named(tmp_path):
    import json

    import h5py

    from sibp_np import History
    bad = {"list.json": "[1, 2]", "garbage.json": "{not json", "deep.json": "[" * 100000,
           "table1.json": json.dumps({"meta": {}, "rows": []}),
           "strings.json": json.dumps({"config": {}, "records": [{"epoch": 0, "train_loss": [1, 2]}]}),
           "epoch.json": json.dumps({"config": {}, "records": [{"epoch": float("inf")}]})}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=name):
            History.load(tmp_path / name)
    with h5py.File(tmp_path / "cols.h5", "w") as f:  # columns of different lengths were cut silently
        g = f.create_group("history")
        g["epoch"], g["train_loss"] = np.arange(3.0), np.ones(1)
        g.attrs["config"], g.attrs["diverged"] = "{}", "null"
    with pytest.raises(ValueError, match="cols.h5: a history's columns are 1-D numbers of one length"):
        History.load(tmp_path / "cols.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="other.h5 is not a sibp_np history"):
        History.load(tmp_path / "other.h5")


def test_upper_case_h5_and_float32_overflow_on_load(tmp_path):
    from sibp_np._io import hdf5_digest
    from sibp_np.datasets import save_h5
    r = np.random.default_rng(0)
    save_h5(tmp_path / "D.H5", X_train=r.random((20, 4)), y_train=r.integers(0, 2, 20))
    assert load_dataset(str(tmp_path / "D.H5")).X_train.shape == (20, 4)
    MLP([3, 4, 2], dtype="float64").save(tmp_path / "m.h5")
    with h5py_file(tmp_path / "m.h5") as f:
        f["params/W0"][0, 0] = 1e39  # finite in float64, inf in float32
        f.attrs["sha256"] = hdf5_digest(f)
    model = MLP.load(tmp_path / "m.h5")
    with pytest.raises(ValueError, match="parameter W0 is not finite in float32"):
        model.astype("float32")


@contextlib.contextmanager
def h5py_file(path):
    import h5py
    with h5py.File(path, "a") as f:
        yield f


@pytest.mark.parametrize("t_value", ['"abc"', "null", "1e999", "[1, 2]"])
def test_a_resealed_checkpoint_with_a_bad_method_state_is_a_checkpoint_error(tmp_path, t_value):
    def edit(f):  # Adam's step counter edited, the checksum recomputed
        f["method_state"].attrs["scalars"] = '{"t": ' + t_value + "}"
    path = edit_checkpoint(tmp_path, edit)
    with pytest.raises(CheckpointError, match="cannot be resumed: Adam's state 't' must be a finite number"):
        resume(tmp_path, path)


def test_merge_table1_names_the_part_it_cannot_read(tmp_path):
    from sibp_np.cli import main
    for name, text in (("garbage", "not json"), ("empty", "{}"), ("rows", '{"meta": {"seconds": 1}, '
                                                                          '"rows": [{"label": "x"}]}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "table1.json").write_text(text)
        with pytest.raises(ValueError, match=f"{name}/table1.json is not a table1 result"):
            experiments.merge_table1([tmp_path / name])
        assert main(["merge-table1", str(tmp_path / "out"), str(tmp_path / name)]) != 0
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match="none is not a table1 folder"):
        experiments.merge_table1([tmp_path / "none"])


@pytest.mark.parametrize("suffix", [".json", ".h5"])
def test_a_history_file_with_a_changed_number_is_refused(tmp_path, suffix):
    import json

    import h5py

    from sibp_np import History
    h = fit(model(), Adam(), X, Y, epochs=2, batch_size=5, verbose=0)
    path = tmp_path / f"h{suffix}"
    h.save(path)
    assert History.load(path).records == h.records
    if suffix == ".json":
        d = json.loads(path.read_text())
        d["records"][-1]["train_loss"] *= 0.5  # a plausible number, silently wrong
        path.write_text(json.dumps(d))
    else:
        with h5py.File(path, "a") as f:
            f["history/train_loss"][-1] *= 0.5
    with pytest.raises(ValueError, match="is corrupt: its SHA-256 checksum does not match"):
        History.load(path)
