"""A worked example for teaching: one SIBP step (Algorithm 1) on a tiny network, every quantity printed.

    python -m sibp_np.worked_example

Network 3-4-3-2 (ReLU, float64), 4 samples, eta = 0.5, lam = 1, the plain algorithm
(``safeguard="none"``). Read it beside the paper:

* the forward pass (eq. 1) gives ``F_4`` (the logits);
* the output error is per sample, ``delta_4 = softmax(F_4) - Y`` (eq. 6), and the target
  ``T_4 = F_4 - eta delta_4``;
* going down, each layer solves (7) for ``W`` then ``b`` (objective printed before and after), and the
  error goes down with the *new* weights and the forward-pass derivative (eq. 9):
  ``delta_i = (sigma'(G_{i+1}) * delta_{i+1}) W_i^new``, target ``T_i = F_i - eta delta_i``.

Layers are numbered as in the paper (``W_1`` is the first weight matrix; ``F_1 = X``); in the code the
same matrix is ``model.weights[0]``.
"""
import numpy as np

from .model import MLP
from .sibp import SIBP


def main(verbose=True):
    """Run the step; print it when ``verbose``; return every quantity (for the tests)."""
    X = np.array([[1.0, 0.5, -0.2], [0.3, -1.0, 0.8], [-0.7, 0.2, 0.4], [0.9, 0.9, -0.9]])
    y = np.array([0, 1, 1, 0])
    model = MLP([3, 4, 3, 2], init_std=0.5, seed=3, dtype="float64")
    method = SIBP(eta=0.5, lam=1.0, safeguard="none", weight_form="primal")  # the reference form
    method.record_stats = True
    G, F = model.forward_cache(model.check_X(X))
    before = [W.copy() for W in model.weights]
    method.step(model, X, y)
    out = {"X": X, "Y": np.eye(2)[y], "F_N": F[-1], "eta": method.eta, "G": G, "F": F,
           "targets": method.last_targets, "deltas": method.last_deltas, "weights_before": before,
           "weights_after": [W.copy() for W in model.weights], "stats": method.stats[-1]}
    if verbose:
        _show(out, method)
    return out


def _show(out, method):
    np.set_printoptions(precision=4, suppress=True)
    L = len(out["weights_after"])
    print(f"One SIBP step, eta = {method.eta}, lam = {method.lam}, network 3-4-3-2, 4 samples\n")
    print(f"F_{L + 1} (logits, eq. 1):\n{out['F_N']}\nY (one-hot):\n{out['Y']}\n")
    stats = {(r["layer"], r["param"]): r for r in out["stats"]}
    for i in range(L - 1, -1, -1):  # code layer i is the paper's W_{i+1}, from F_{i+1} to F_{i+2}
        k = i + 2
        if i == L - 1:
            eq = f"eq. 6: softmax(F_{k}) - Y"
        else:
            linear = " (the output layer is linear: sigma' = 1)" if i == L - 2 else ""
            eq = f"eq. 9: (sigma'(G_{k + 1}) * delta_{k + 1}) W_{k}^new{linear}"
        print(f"delta_{k} ({eq}):\n{out['deltas'][k]}")
        print(f"T_{k} = F_{k} - eta delta_{k}:\n{out['targets'][k]}")
        for p in ("W", "b"):
            r = stats[(i, p)]
            print(f"  subproblem (7) for {p}_{i + 1}: objective {r['f0']:.6f} -> {r['f']:.6f} "
                  f"({r['iterations']} NCG iterations)")
        change = np.linalg.norm(out["weights_after"][i] - out["weights_before"][i])
        print(f"  ||W_{i + 1}^new - W_{i + 1}|| = {change:.4f}\n")


if __name__ == "__main__":
    main()
