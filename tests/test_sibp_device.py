"""SIBP's device-resident control (``control="device"``), run on NumPy: the same iterates as the host
path, at most two reads from the device per step, and no read hidden in the solver's code."""
import ast
import inspect

import numpy as np
import pytest

import sibp_np
from sibp_np import MLP, SIBP
from sibp_np.backend import count_host_syncs, get_backend
from sibp_np.worked_example import main as worked_example

BE = get_backend("numpy")
CONFIGS = [{}, {"safeguard": "none"}, {"weight_form": "dual"}, {"weight_form": "primal"},
           {"cg_variant": "pr+"}, {"eta": 10.0}, {"linear_solve": "exact"}]


def problem(seed, sizes=(6, 9, 7, 3), loss="cross_entropy", n=25, backend="numpy"):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, sizes[0]))
    y = r.integers(0, sizes[-1], n) if loss == "cross_entropy" else r.normal(size=(n, sizes[-1]))
    return MLP(sizes, seed=seed, dtype="float64", init_std=0.3, loss=loss, backend=backend), X, y


def run_both(model, X, y, steps=3, **kw):
    """The same steps with control="host" and "device"; the device tries as many steps per search as
    the host may, so every search accepts where the host's does."""
    twin = model.copy()
    host = SIBP(control="host", **kw)
    host.record_stats = True
    device = SIBP(control="device", device_trials=kw.get("max_trials", 20), **kw)
    for _ in range(steps):
        lh, ld = host.step(model, X, y), device.step(twin, X, y)
        assert ld == pytest.approx(lh, rel=1e-12)
    return model, twin, host


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("seed,loss,sizes", [(0, "cross_entropy", (6, 9, 7, 3)), (1, "mse", (4, 12, 12, 2)),
                                             (2, "cross_entropy", (30, 20, 10))])
def test_device_control_gives_the_host_iterates(kw, seed, loss, sizes, backend):
    model, X, y = problem(seed, sizes, loss, backend=backend)
    host, device, _ = run_both(model, X, y, **kw)
    for p, q in zip(host.params(), device.params()):
        np.testing.assert_allclose(model.backend.to_host(q), model.backend.to_host(p), rtol=1e-12, atol=1e-13)


def test_device_control_on_the_worked_example():
    out = worked_example(verbose=False)
    model = MLP([3, 4, 3, 2], init_std=0.5, seed=3, dtype="float64")
    device = SIBP(eta=0.5, lam=1.0, safeguard="none", weight_form="primal", control="device")
    device.step(model, out["X"], out["Y"].argmax(1))
    for W, expected in zip(model.weights, out["weights_after"]):
        np.testing.assert_allclose(W, expected, rtol=1e-12, atol=1e-14)


def test_with_few_trials_the_iterates_agree_wherever_every_search_accepts_within_them():
    # the paper's small init: every host search accepts within 2 trials here (checked, so the
    # comparison is not vacuous), and the device with M = 2 gives the same iterates
    r = np.random.default_rng(4)
    X, y = r.normal(size=(40, 20)), r.integers(0, 5, 40)
    model = MLP([20, 30, 5], seed=4, dtype="float64", init_std=0.01)
    twin = model.copy()
    host, device = SIBP(control="host"), SIBP(control="device", device_trials=2)
    host.record_stats = True
    for _ in range(3):
        host.step(model, X, y)
        device.step(twin, X, y)
    trials = [t for step in host.stats for s in step for (_, alpha, t) in s["steps"]]
    assert trials and max(trials) <= 2
    for p, q in zip(model.params(), twin.params()):
        np.testing.assert_allclose(q, p, rtol=1e-12, atol=1e-13)




@pytest.mark.parametrize("loss,sizes", [("cross_entropy", (30, 40, 40, 10)), ("mse", (5, 16, 16, 2))])
def test_a_device_step_reads_at_most_two_scalars(loss, sizes):
    model, X, y = problem(0, sizes, loss, n=50)
    counts = {}
    for control in ("host", "device"):
        method = SIBP(control=control)
        method.step(model.copy(), X, y)
        with count_host_syncs() as c:
            method.step(model.copy(), X, y)
        counts[control] = c.count
    # the two: the minibatch's checks (one read for X and y together) and the loss that step returns
    assert counts["device"] <= 2 < 20 < counts["host"]


def test_the_counter_sees_every_read_through_the_backend():
    with count_host_syncs() as outer:
        BE.to_float(np.float64(1.0))
        with count_host_syncs() as inner:
            BE.to_bool(np.True_)
            BE.to_host(np.zeros(2))
    assert (outer.count, inner.count) == (3, 2)


def test_multi_trial_op_matches_single_trials():
    r = np.random.default_rng(0)
    z, p, t = r.normal(size=(3, 17, 9))
    z[0, :3] = 0.0
    alphas = np.array([0.0, 0.5, -1.75, 3.0])
    got = BE.masked_residual_sqnorm_multi(z, p, t, alphas)
    want = [BE.masked_residual_sqnorm(z, p, t, a) for a in alphas]
    np.testing.assert_allclose(got, want, rtol=1e-13)
    d = r.normal(size=9)  # a bias direction: one row
    np.testing.assert_allclose(BE.masked_residual_sqnorm_multi(z, d[None, :], t, alphas),
                               [BE.masked_residual_sqnorm(z, d[None, :], t, a) for a in alphas], rtol=1e-13)


def test_control_is_checked_and_resolved():
    assert SIBP()._control_in_use(BE) == "host"
    assert SIBP(control="device")._control_in_use(BE) == "device"
    with pytest.raises(ValueError, match="control='bus' is not"):
        SIBP(control="bus")
    with pytest.raises(ValueError, match=r"compat='matlab'.*control='device'"):
        SIBP(compat="matlab", control="device")


# ------------------------------------------------------------------ no hidden reads in the solver
READS = {"float", "bool", "int"}
SOLVER_FILES = ("sibp.py", "ncg.py", "linesearch.py")


def hidden_reads(source):
    """Calls that would read a device array on the host outside the backend: ``float(x)``,
    ``bool(x)``, ``int(x)`` and ``x.item()``, except on what is already a host value (the result of a
    backend read, or NumPy's ``finfo``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "item":
            found.append(node.lineno)
        if isinstance(f, ast.Name) and f.id in READS and node.args:
            arg = ast.unparse(node.args[0])
            if not any(ok in arg for ok in ("read(", "to_float(", "to_bool(", "finfo(")):
                found.append(node.lineno)
    return found


def test_the_solver_reads_device_values_only_through_the_backend():
    root = inspect.getfile(sibp_np).rsplit("/", 1)[0]
    for name in SOLVER_FILES:
        with open(f"{root}/{name}") as fh:
            assert hidden_reads(fh.read()) == [], name
    # the check itself finds them
    assert hidden_reads("x = float(xp.vdot(a, b))\ny = a.sum().item()\nz = bool(a > 0)") == [1, 2, 3]


# ------------------------------------------------------------------ graph replay, with a stand-in
class RecordingBackend(type(BE)):
    """NumPy with a stand-in for graphs: ``capture`` keeps the step and its input buffers, ``replay``
    runs it on them (what a CUDA graph does, minus the speed); it counts the captures."""

    device_resident = supports_graphs = True

    def __init__(self, fail=False):
        super().__init__()
        self.captures, self.fail = 0, fail

    def capture(self, fn, X, y):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captures += 1
        backend = self

        class Replay:
            def __init__(self):
                self.X, self.y = X.copy(), y.copy()

            def replay(self, Xn, yn):
                self.X[...] = Xn
                self.y[...] = yn
                backend.replays = getattr(backend, "replays", 0) + 1
                return fn(self.X, self.y)
        return Replay()


def graph_run(backend, batches, method, sizes=(20, 30, 5), seed=0):
    model = MLP(sizes, seed=seed, dtype="float64", init_std=0.1, backend=backend)
    losses = [method.step(model, X, y) for X, y in batches]
    return model, losses


def batches(n=6, B=16, sizes=(20, 30, 5)):
    r = np.random.default_rng(0)
    return [(r.normal(size=(B, sizes[0])), r.integers(0, sizes[-1], B)) for _ in range(n)]


def test_steps_are_captured_once_per_shape_and_replayed_with_the_same_numbers():
    data = batches() + batches(2, B=9)  # a last, smaller batch is a second shape
    plain, plain_losses = graph_run(RecordingBackend(), data, SIBP(cuda_graph=False))
    backend = RecordingBackend()
    model, losses = graph_run(backend, data, SIBP())
    assert backend.captures == 2 and backend.replays == (6 - 1) + (2 - 1)
    assert losses == plain_losses
    for p, q in zip(plain.params(), model.params()):
        np.testing.assert_array_equal(q, p)


def test_a_changed_hyperparameter_or_state_drops_the_captured_steps():
    backend = RecordingBackend()
    method = SIBP()
    model = MLP((20, 30, 5), seed=0, dtype="float64", init_std=0.1, backend=backend)
    for X, y in batches(3):
        method.step(model, X, y)
    assert backend.captures == 1
    method.eta = 0.5  # a schedule does this every epoch: the graph held the old eta
    for X, y in batches(3):
        method.step(model, X, y)
    assert backend.captures == 2
    method.load_state_dict(method.state_dict(backend), backend)
    for X, y in batches(3):
        method.step(model, X, y)
    assert backend.captures == 3


def test_a_failed_capture_warns_once_and_the_steps_go_on():
    data = batches()
    plain, plain_losses = graph_run(RecordingBackend(), data, SIBP(cuda_graph=False))
    with pytest.warns(UserWarning, match="CUDA-graph capture failed") as record:
        model, losses = graph_run(RecordingBackend(fail=True), data, SIBP())
    assert len(record) == 1 and losses == plain_losses


def test_no_graph_on_the_host_path_with_statistics_or_when_switched_off():
    recording = SIBP()
    recording.record_stats = True
    for method in (SIBP(control="host"), recording, SIBP(cuda_graph=False)):
        backend = RecordingBackend()
        graph_run(backend, batches(4), method)
        assert backend.captures == 0


def test_a_method_with_graphs_pickles_without_them():
    import pickle
    method = SIBP()
    graph_run(RecordingBackend(), batches(3), method)
    again = pickle.loads(pickle.dumps(method))
    assert again.hyperparameters() == method.hyperparameters() and again._graphs.graphs == {}
