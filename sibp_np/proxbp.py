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
import numpy as np

from ._validation import check_choice, check_int, check_optimizer, check_positive
from .methods import Hyperparameter, Method, register


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

    def step(self, model, X, y):
        """One ProxBP iteration on ``(X, y)``; returns the batch-mean loss before it."""
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
                pseudo[2 * i], pseudo[2 * i + 1] = self._prox_direction_dual(model, F[i], eta * dz[i])
                continue
            gW, gb = dz[i].T @ F[i], dz[i].sum(axis=0)
            if form == "explicit":  # the output layer's explicit step
                pseudo[2 * i], pseudo[2 * i + 1] = eta * gW, eta * gb
            else:
                pseudo[2 * i], pseudo[2 * i + 1] = self._prox_direction(model, F[i], eta * gW, eta * gb)
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
    def _prox_direction_dual(self, model, F, Gc):
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
        K = F @ F.T
        K += dt(1)  # the column of ones in A_bar
        if self.linear_solve == "exact":
            KL = K.copy()
            KL.ravel()[:: K.shape[0] + 1] += lam
            try:
                C = model.backend.solve_spd(KL, Gc)
            except np.linalg.LinAlgError as exc:
                raise ValueError(f"lam={self.lam}: the exact solve's matrix A A^T + lam I is not "
                                 f"numerically positive definite in {K.dtype} ({exc}); use a larger lam "
                                 f"or linear_solve='cg'") from exc
            C = xp.ascontiguousarray(C.astype(Gc.dtype, copy=False))
        else:
            C = self._block_cg_dual(xp, K, Gc, lam)
        return C.T @ F, C.sum(axis=0)

    def _block_cg_dual(self, xp, K, Gc, lam):
        """:meth:`_block_cg` on coefficients: the same iterates, one ``K @ C`` per iteration."""
        dt = Gc.dtype
        Cx = xp.zeros_like(Gc)
        Cr = Gc.copy()
        KCr = K @ Cr
        Cp, KCp = Cr.copy(), KCr.copy()
        rr = (Cr * KCr).sum(axis=0)
        for _ in range(self.cg_steps):
            Cq = KCp + lam * Cp  # q = p (A^T A + lam I), as coefficients
            pq = (KCp * KCp).sum(axis=0) + lam * (Cp * KCp).sum(axis=0)
            alpha = xp.where(pq > 0, rr / xp.where(pq > 0, pq, 1), 0).astype(dt)
            Cx += alpha * Cp
            Cr -= alpha * Cq
            KCr = K @ Cr
            rr_new = (Cr * KCr).sum(axis=0)
            beta = xp.where(rr > 0, rr_new / xp.where(rr > 0, rr, 1), 0).astype(dt)
            Cp = Cr + beta * Cp
            KCp = KCr + beta * KCp
            rr = rr_new
        return Cx

    def _prox_direction(self, model, F, RW, Rb):
        """``Delta = [DW Db]`` solving ``Delta (A_bar^T A_bar + lam I) = R`` with ``R = [RW Rb]``."""
        if self.linear_solve == "exact":
            return self._exact(model, F, RW, Rb)
        return self._block_cg(model, F, RW, Rb)

    def _apply(self, F, PW, Pb, lam):
        """``P (A_bar^T A_bar + lam I)`` for ``P = [PW Pb]``: two products with the batch."""
        V = F @ PW.T
        V += Pb  # A_bar P^T, shape (n_samples, n_out)
        return V.T @ F + lam * PW, V.sum(axis=0) + lam * Pb

    def _block_cg(self, model, F, RW, Rb):
        """Linear CG from ``Delta = 0``, one independent CG per output unit (row), in parallel."""
        xp = model.xp
        dt = RW.dtype.type
        lam = dt(self.lam)
        XW, Xb = xp.zeros_like(RW), xp.zeros_like(Rb)
        rW, rb = RW.copy(), Rb.copy()  # residual R - X A at X = 0
        pW, pb = rW.copy(), rb.copy()
        rr = (rW * rW).sum(axis=1) + rb * rb
        for _ in range(self.cg_steps):
            qW, qb = self._apply(F, pW, pb, lam)
            pq = (pW * qW).sum(axis=1) + pb * qb
            alpha = xp.where(pq > 0, rr / xp.where(pq > 0, pq, 1), 0).astype(RW.dtype)
            XW += alpha[:, None] * pW
            Xb += alpha * pb
            rW -= alpha[:, None] * qW
            rb -= alpha * qb
            rr_new = (rW * rW).sum(axis=1) + rb * rb
            beta = xp.where(rr > 0, rr_new / xp.where(rr > 0, rr, 1), 0).astype(RW.dtype)
            pW = rW + beta[:, None] * pW
            pb = rb + beta * pb
            rr = rr_new
        return XW, Xb

    def _exact(self, model, F, RW, Rb):
        xp = model.xp
        dt = RW.dtype.type
        n, n_in = F.shape
        A = xp.empty((n_in + 1, n_in + 1), dtype=F.dtype)
        A[:n_in, :n_in] = F.T @ F
        s = F.sum(axis=0)
        A[:n_in, n_in] = s
        A[n_in, :n_in] = s
        A[n_in, n_in] = n
        A.ravel()[:: n_in + 2] += dt(self.lam)  # the diagonal
        R = xp.concatenate([RW, Rb[:, None]], axis=1)  # (n_out, n_in + 1)
        try:
            D = model.backend.solve_spd(A, R.T).T
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"lam={self.lam}: the exact solve's matrix A^T A + lam I is not numerically "
                             f"positive definite in {A.dtype} ({exc}); use a larger lam or "
                             f"linear_solve='cg'") from exc
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
