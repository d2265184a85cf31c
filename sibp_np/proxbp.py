"""Proximal Back Propagation (ProxBP; Frerix, Moellenhoff, Moeller, Cremers, ICLR 2018).

One step on a minibatch, with the **batch-mean** loss as in the reference code:

1. forward pass, and plain back propagation with the **old** weights, giving ``dL/dz`` for every layer's
   pre-activation ``z = G_{i+1}``;
2. the output layer takes an explicit gradient step with step ``eta``;
3. every hidden layer moves its pre-activation to ``z^{1/2} = z - eta * dL/dz`` and updates
   ``theta = [W b]`` (shape (n_out, n_in + 1)) **jointly** to

   ``argmin_theta 1/2 ||A_bar theta^T - z^{1/2}||^2 + (lam/2) ||theta - theta^k||^2``,
   ``A_bar = [F_i, 1]`` (n_samples, n_in + 1).

   Since ``A_bar theta^k^T = z``, the minimiser is ``theta^k - Delta`` with
   ``(A_bar^T A_bar + lam I) Delta^T = eta A_bar^T dL/dz``: a layer-wise preconditioned gradient step.
   ``linear_solve="cg"`` runs ``cg_steps`` iterations of linear CG on these normal equations from
   ``Delta = 0`` (the warm start ``theta^k``), every output unit a separate column solved in parallel;
   ``linear_solve="exact"`` solves them by Cholesky.

``Delta`` is the *pseudo-gradient*. Without an optimizer it is applied with a unit step
(``theta <- theta^k - Delta``); with ``optimizer=SGD(...)`` or ``Adam(...)`` it is handed to that
optimizer in place of a gradient, for every layer, the output layer's ``eta * dL/dtheta`` included.
"""

from ._validation import check_choice, check_int, check_optimizer, check_positive
from .methods import Hyperparameter, Method, register


def block_cg(op, R, steps):
    """Linear CG from 0 on the independent systems ``X A = R``, one per output unit, all at once.

    ``op`` is the operator pair of one form: its vectors are tuples of arrays, and it gives

    * ``start(R)``: the residual at ``X = 0`` (the form's vector of ``R``);
    * ``apply(p)``: ``p A`` (as much of it as the updates need);
    * ``norm2(r)`` and ``curvature(p, q)``: ``<r, r>`` and ``<p, p A>`` per output unit;
    * ``scaled(alpha, p)``: ``alpha p`` with one ``alpha`` per output unit;
    * ``refresh(r)``: the residual's vector after ``r`` moved (the row-space form's ``K C``).

    Returns ``X`` as a tuple (:class:`_PrimalOperator`: ``(DW, Db)``; :class:`_RowSpaceOperator`:
    ``(C,)``).
    """
    r = op.start(R)
    X = tuple(op.xp.zeros_like(a) for a in R)
    p = tuple(a.copy() for a in r)
    rr = op.norm2(r)
    for _ in range(steps):
        q = op.apply(p)
        alpha = _ratio(op.xp, rr, op.curvature(p, q), R[0].dtype)
        for x, step in zip(X, op.scaled(alpha, p)):
            x += step
        for ri, step in zip(r, op.scaled(alpha, q)):
            ri -= step
        r = op.refresh(r)
        rr_new = op.norm2(r)
        beta = _ratio(op.xp, rr_new, rr, R[0].dtype)
        p = tuple(ri + bp for ri, bp in zip(r, op.scaled(beta, p)))
        rr = rr_new
    return X


def _ratio(xp, a, b, dtype):
    """``a / b`` where ``b > 0``, else 0 (a converged or vanishing direction), in ``dtype``."""
    return xp.where(b > 0, a / xp.where(b > 0, b, 1), 0).astype(dtype)


class _PrimalOperator:
    """``P -> P (A_bar^T A_bar + lam I)`` on ``P = [PW Pb]`` (rows: output units), two products with
    the batch ``F`` (n_samples, n_in) per application."""

    def __init__(self, backend, F, lam):
        self.backend, self.xp, self.F, self.lam = backend, backend.xp, F, lam

    def start(self, R):
        return tuple(a.copy() for a in R)

    def apply(self, p):
        PW, Pb = p
        V = self.F @ PW.T
        V += Pb  # A_bar P^T, shape (n_samples, n_out)
        return self.backend.t_matmul(V, self.F) + self.lam * PW, V.sum(axis=0) + self.lam * Pb

    def norm2(self, r):
        return (r[0] * r[0]).sum(axis=1) + r[1] * r[1]

    def curvature(self, p, q):
        return (p[0] * q[0]).sum(axis=1) + p[1] * q[1]

    def scaled(self, alpha, p):
        return alpha[:, None] * p[0], alpha * p[1]

    def refresh(self, r):
        return r


class _RowSpaceOperator:
    """The same CG on coefficients ``C`` (n_samples, n_out; columns: output units), ``P = C^T A_bar``:
    with ``K = A_bar A_bar^T``, ``P (A_bar^T A_bar + lam I) = (K C + lam C)^T A_bar`` and
    ``<C_1^T A_bar, C_2^T A_bar> = sum(C_1 * K C_2, axis=0)``. Vectors are pairs ``(C, K C)``; one
    ``K C`` product per iteration, for the residual."""

    def __init__(self, xp, K, lam):
        self.xp, self.K, self.lam = xp, K, lam

    def start(self, R):
        C = R[0].copy()
        return C, self.K @ C

    def apply(self, p):
        Cp, KCp = p
        return (KCp + self.lam * Cp,)  # q = p (A^T A + lam I), as coefficients

    def norm2(self, r):
        return (r[0] * r[1]).sum(axis=0)

    def curvature(self, p, q):
        Cp, KCp = p
        return (KCp * KCp).sum(axis=0) + self.lam * (Cp * KCp).sum(axis=0)

    def scaled(self, alpha, p):
        return tuple(alpha * a for a in p)

    def refresh(self, r):
        return r[0], self.K @ r[0]


def proxbp_form(n_samples, n_in, n_out, cg_steps, solve):
    """``"dual"`` when a hidden layer's solve costs fewer flops in the row space of ``A_bar``.

    Primal: ``R = eta dz^T A_bar`` (``2 B n_in n_out``), then per CG iteration two products
    (``4 B n_in n_out``), or for ``linear_solve="exact"`` the Gram matrix and a Cholesky solve
    (``2 B n_in^2 + n_in^3 / 3 + 2 n_in^2 n_out``). Dual: ``K`` (``2 B^2 n_in``), per CG iteration one
    ``K C`` (``2 B^2 n_out``) or one ``B x B`` solve, and ``C^T F`` at the end (``2 B n_in n_out``).
    """
    B, n = n_samples, n_in + 1
    if solve == "exact":
        primal = 2 * B * n * n_out + 2 * B * n * n + n ** 3 / 3 + 2 * n * n * n_out
        dual = 2 * B * B * n + B ** 3 / 3 + 2 * B * B * n_out + 2 * B * n * n_out
    else:
        primal = 2 * B * n * n_out + cg_steps * 4 * B * n * n_out
        dual = 2 * B * B * n + (cg_steps + 1) * 2 * B * B * n_out + 2 * B * n * n_out
    return "dual" if dual < primal else "primal"


@register("proxbp")
class ProxBP(Method):
    """ProxBP with the :meth:`step` protocol.

    Parameters
    ----------
    eta : float > 0
        The explicit step ``tau`` on the pre-activations (and the output layer's gradient step).
    lam : float > 0
        ``1 / tau_theta``: the proximal weight of the parameter update.
    cg_steps : int >= 1
        Linear-CG iterations per hidden layer (``linear_solve="cg"``).
    linear_solve : {"cg", "exact"}
        How the normal equations are solved: ``cg_steps`` of linear CG, or exactly by Cholesky.
        (Formerly ``solve``, accepted for one release; SIBP's option of the same name.)
    weight_form : {"auto", "primal", "dual"}
        Where a hidden layer's solve runs: on ``A_bar^T A_bar`` ((n_in+1)^2, the primal form) or on
        ``A_bar A_bar^T`` (n_samples^2, the row-space form; the same CG iterates and the same exact
        solution, by the Woodbury identity). ``"auto"`` picks the one with fewer flops per layer
        (:func:`proxbp_form`). (Formerly ``weight_solver``.)
    optimizer : SGD, Adam or RMSprop, optional
        Applies the pseudo-gradients instead of a unit step.

    Notes
    -----
    Conventions, as in the reference code (tfrerix/proxprop): the loss is the batch **mean**, so
    ``dL/dz`` carries ``1/B``, while the Gram matrix ``A_bar^T A_bar`` is a **sum** over the batch; the
    preconditioning therefore strengthens with the batch size. The reference code solves
    ``1/2 ||A_bar X - (z - dL/dz)||^2 + 1/(2 tau_theta) ||X - theta||^2`` and lets its optimizer apply
    ``theta - X`` with learning rate ``lr``; because the CG iterates from ``theta`` are linear in the
    right-hand side, that equals ``eta = lr`` and ``lam = 1/tau_theta`` here without an optimizer.
    With an optimizer, set ``eta = 1`` and give the reference ``lr`` to the optimizer.
    """

    eta = Hyperparameter(check_positive,
        help="explicit step on the pre-activations (and the output layer's gradient step)")
    lam = Hyperparameter(check_positive, help="proximal weight of the parameter update (1/tau_theta)")
    cg_steps = Hyperparameter(check_int, minimum=1, help="linear-CG iterations per hidden layer")
    linear_solve = Hyperparameter(check_choice, choices=("cg", "exact"),
        help="the normal equations: by linear CG, or exactly (Cholesky)")
    optimizer = Hyperparameter(check_optimizer,
        help="applies the pseudo-gradients instead of a unit step")
    weight_form = Hyperparameter(check_choice, choices=("auto", "primal", "dual"),
        help="where the W solves run: primal, or in the row space of the inputs (dual); auto: fewer flops")
    renamed = {"solve": "linear_solve", "weight_solver": "weight_form"}

    def __init__(self, eta=1.0, lam=1.0, cg_steps=5, linear_solve="cg", optimizer=None, weight_form="auto",
                 **renamed):
        super().__init__()
        given = dict(eta=eta, lam=lam, cg_steps=cg_steps, linear_solve=linear_solve, optimizer=optimizer,
                     weight_form=weight_form)
        for name, value in {**given, **self._renamed_arguments(renamed)}.items():
            setattr(self, name, value)
        self.last_forms = []

    def step(self, model, X, y, checked=False):
        """One ProxBP iteration on ``(X, y)``; returns the batch-mean loss before it (``checked``: ``X, y``
        come from ``model.check_Xy`` already)."""
        if not checked:
            X, y = model.check_Xy(X, y)
        G, F = model.forward_cache(X)
        L = model.n_layers
        eta = model.dtype.type(self.eta)
        # plain back propagation with the old weights: dz[i] = dL/dG_{i+1}
        dz = [None] * L
        loss, dz[L - 1] = model.loss.value_and_mean_grad(F[-1], y)
        layers = list(model.layers())
        for i in range(L - 2, -1, -1):
            dz[i] = layers[i][2].backprop(G[i + 1], dz[i + 1] @ layers[i + 1][0])
        pseudo = [None] * (2 * L)
        self.last_forms = []
        for i in range(L):
            form = "explicit" if i == L - 1 else self._form(X.shape[0], *layers[i][0].shape[::-1])
            self.last_forms.append(form)
            if form == "dual":  # the right-hand side eta dz^T A_bar is never formed
                pseudo[2 * i], pseudo[2 * i + 1] = self._prox_direction_dual(model, i + 1, F[i], eta * dz[i])
                continue
            gW, gb = model.backend.t_matmul(dz[i], F[i]), dz[i].sum(axis=0)
            if form == "explicit":  # the output layer's explicit step
                pseudo[2 * i], pseudo[2 * i + 1] = eta * gW, eta * gb
            else:
                pseudo[2 * i], pseudo[2 * i + 1] = self._prox_direction(model, i + 1, F[i], eta * gW,
                                                                        eta * gb)
        if self.optimizer is not None:
            self.optimizer.update(model.params(), pseudo, overwrite_grads=True)
        else:
            for p, d in zip(model.params(), pseudo):
                p -= d
        return loss

    def _form(self, n_samples, n_in, n_out):
        if self.weight_form != "auto":
            return self.weight_form
        return proxbp_form(n_samples, n_in, n_out, self.cg_steps, self.linear_solve)

    # ----------------------------------------------------------------------------------------
    def _prox_direction_dual(self, model, layer, F, Gc):
        """The same ``Delta`` in the row space of ``A_bar``: ``Delta = C^T A_bar`` with ``C``
        (n_samples, n_out), from ``Gc = eta dL/dz`` (the right-hand side is ``Gc^T A_bar``).

        With ``K = A_bar A_bar^T = F F^T + 1`` (n_samples x n_samples), ``P (A_bar^T A_bar + lam I)`` for
        ``P = C^T A_bar`` is ``(K C + lam C)^T A_bar``, and ``<C_1^T A_bar, C_2^T A_bar>`` row by row is
        ``sum(C_1 * K C_2, axis=0)``. So CG runs on coefficients with one ``K C`` product per
        iteration, and the exact solve is ``(K + lam I) C = Gc`` (Woodbury); ``Delta`` is formed once,
        at the end: ``DW = C^T F``, ``Db = sum(C, axis=0)``.
        """
        xp = model.xp
        dt = Gc.dtype.type
        lam = dt(self.lam)
        K = model.backend.gram(F)
        K += dt(1)  # the column of ones in A_bar
        if self.linear_solve == "exact":
            KL = K.copy()
            KL.ravel()[:: K.shape[0] + 1] += lam
            C = model.backend.solve_spd(KL, Gc, what=f"lam={self.lam}: the exact solve's matrix "
                                        f"A A^T + lam I (W_{layer}, row-space form)",
                                        hint="use a larger lam or linear_solve='cg'")
            C = xp.ascontiguousarray(C.astype(Gc.dtype, copy=False))
        else:
            C = block_cg(_RowSpaceOperator(xp, K, lam), (Gc,), self.cg_steps)[0]
        return model.backend.t_matmul(C, F), C.sum(axis=0)

    def _prox_direction(self, model, layer, F, RW, Rb):
        """``Delta = [DW Db]`` solving ``Delta (A_bar^T A_bar + lam I) = R`` with ``R = [RW Rb]``."""
        if self.linear_solve == "exact":
            return self._exact(model, layer, F, RW, Rb)
        dt = RW.dtype.type
        return block_cg(_PrimalOperator(model.backend, F, dt(self.lam)), (RW, Rb), self.cg_steps)

    def _exact(self, model, layer, F, RW, Rb):
        """``Delta`` by Cholesky on ``A_bar^T A_bar + lam I`` ((n_in+1)^2) for layer ``layer`` (W_layer)."""
        xp = model.xp
        dt = RW.dtype.type
        n, n_in = F.shape
        A = xp.empty((n_in + 1, n_in + 1), dtype=F.dtype)
        A[:n_in, :n_in] = model.backend.t_matmul(F, F)
        s = model.backend.colsum(F)
        A[:n_in, n_in] = s
        A[n_in, :n_in] = s
        A[n_in, n_in] = n
        A.ravel()[:: n_in + 2] += dt(self.lam)  # the diagonal
        R = xp.concatenate([RW, Rb[:, None]], axis=1)  # (n_out, n_in + 1)
        D = model.backend.solve_spd(A, R.T, what=f"lam={self.lam}: the exact solve's matrix A^T A + lam I "
                                    f"(W_{layer}, primal form)",
                                    hint="use a larger lam or linear_solve='cg'").T
        D = xp.ascontiguousarray(D.astype(RW.dtype, copy=False))
        return D[:, :n_in].copy(), D[:, n_in].copy()

    # checkpoints: the optimizer's state travels with ours
    def state_dict(self, backend):
        out = super().state_dict(backend)
        if self.optimizer is not None:
            out.update({f"optimizer.{k}": v for k, v in self.optimizer.state_dict(backend).items()})
        return out

    def check_state(self, model):
        if self.optimizer is not None:
            self.optimizer.check_state(model)

    def load_state_dict(self, state, backend):
        own = {k: v for k, v in state.items() if not k.startswith("optimizer.")}
        super().load_state_dict(own, backend)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(
                {k[len("optimizer."):]: v for k, v in state.items() if k.startswith("optimizer.")},
                backend)
