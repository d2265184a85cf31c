"""Sparse inputs (scipy.sparse CSR/CSC): they stay sparse, only the first layer's products see them, and
every method's iterates equal the dense ones in float64 (the sums run in another order: to rounding)."""
import numpy as np
import pytest
import scipy.sparse as sp

from sibp_np import MLP, SGD, SIBP, Adam, ProxBP, RMSprop, fit, get_backend
from sibp_np.backend import count_host_syncs

METHODS = {
    "sibp": SIBP, "sibp-primal": lambda: SIBP(weight_form="primal"),
    "sibp-dual": lambda: SIBP(weight_form="dual"),
    "sibp-exact": lambda: SIBP(linear_solve="exact"), "sibp-device": lambda: SIBP(control="device"),
    "proxbp": ProxBP, "proxbp-primal": lambda: ProxBP(weight_form="primal"),
    "proxbp-exact": lambda: ProxBP(linear_solve="exact"), "sgd": lambda: SGD(momentum=0.9), "adam": Adam,
    "rmsprop": RMSprop,
}


def sparse_problem(seed=0, n=40, n_features=50, density=0.15):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, n_features)) * (r.random((n, n_features)) < density)
    return X, r.integers(0, 3, n)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("sizes", [(50, 9, 3), (50, 3)])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_and_dense_inputs_give_the_same_iterates(name, sizes, fmt):
    X, y = sparse_problem()
    Xs = sp.csr_array(X) if fmt == "csr" else sp.csc_matrix(X)
    dense, sparse = MLP(sizes, seed=0, dtype="float64", init_std=0.3), MLP(sizes, seed=0, dtype="float64",
                                                                          init_std=0.3)
    md, ms = METHODS[name](), METHODS[name]()
    for k in range(4):
        rows = slice(10 * k, 10 * k + 10)
        ld, ls = md.step(dense, X[rows], y[rows]), ms.step(sparse, Xs[rows], y[rows])
        assert ls == pytest.approx(ld, rel=1e-12)
    for p, q in zip(dense.params(), sparse.params()):
        np.testing.assert_allclose(q, p, rtol=1e-11, atol=1e-13)
    assert not np.allclose(dense.params()[0], MLP(sizes, seed=0, dtype="float64", init_std=0.3).params()[0])


def test_a_sparse_input_stays_sparse_through_fit_and_predict(monkeypatch):
    X, y = sparse_problem(n=60)
    be = get_backend("numpy")
    seen = []
    real = be.t_matmul

    def spy(A, F):
        seen.append(sp.issparse(F))
        return real(A, F)
    monkeypatch.setattr(type(be), "t_matmul", lambda self, A, F: spy(A, F))
    model = MLP([50, 8, 3], seed=0, dtype="float64", init_std=0.3)
    h = fit(model, SGD(lr=0.5), sp.csr_matrix(X), y, val=(sp.csr_matrix(X[:20]), y[:20]), epochs=2,
            batch_size=10, verbose=0, seed=0)
    assert any(seen) and len(h) == 3  # the first layer's gradient was taken from the sparse minibatch
    dense_model = MLP([50, 8, 3], seed=0, dtype="float64", init_std=0.3)
    fit(dense_model, SGD(lr=0.5), X, y, val=(X[:20], y[:20]), epochs=2, batch_size=10, verbose=0, seed=0)
    np.testing.assert_allclose(model.predict_proba(sp.csr_matrix(X)), dense_model.predict_proba(X),
                               rtol=1e-10)
    assert (model.predict(sp.csc_matrix(X)) == dense_model.predict(X)).all()


def test_a_sparse_input_is_checked_like_a_dense_one():
    X, y = sparse_problem()
    model = MLP([50, 3], seed=0, dtype="float64")
    bad = sp.csr_matrix(X)
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        SIBP().step(model, bad, y[:40])
    with pytest.raises(ValueError, match="X has 49 features but the model expects 50"):
        model.predict(sp.csr_matrix(X[:, :49]))
    with pytest.raises(TypeError, match="must be numeric"):
        model.predict(sp.csr_matrix(X.astype(np.complex128)))
    with count_host_syncs() as c:  # one read for the values of X and y together, as for dense input
        model.check_Xy(sp.csr_matrix(X), y)
    assert c.count == 1


def test_the_estimators_take_sparse_text_features():
    text = pytest.importorskip("sklearn.feature_extraction.text")
    from sibp_np.sklearn import MLPClassifier
    r = np.random.default_rng(0)
    topics = [["goal", "match", "team", "score", "league"], ["vote", "party", "minister", "law", "election"],
              ["cell", "gene", "protein", "virus", "trial"]]
    common = ["the", "a", "of", "and", "new", "said", "year", "people", "time", "report"]
    docs, labels = [], []
    for i in range(300):
        k = i % 3
        words = list(r.choice(topics[k], 4)) + list(r.choice(common, 12)) + list(r.choice(sum(topics, []), 2))
        docs.append(" ".join(r.permutation(words)))
        labels.append(["sport", "politics", "science"][k])
    X = text.TfidfVectorizer().fit_transform(docs)
    assert sp.issparse(X)
    clf = MLPClassifier(hidden_layer_sizes=(16,), method=SIBP(), max_iter=10, random_state=0)
    clf.fit(X[:200], labels[:200])
    assert clf.score(X[200:], labels[200:]) > 0.9  # the topic words separate the classes widely
    np.testing.assert_allclose(clf.predict_proba(X[200:]), clf.predict_proba(X[200:].toarray()), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_unsorted_sparse_input_is_never_changed_and_its_duplicates_count(dtype):
    # a CSR matrix with unsorted indices and a duplicate entry, as text vectorizers and COO sums make
    # them: the conversion may share index arrays, and sorting them in place once corrupted the input
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0, 4.0], dtype=dtype), np.array([3, 0, 2, 2]),
                       np.array([0, 2, 4])), shape=(2, 5))
    assert not X.has_sorted_indices
    before = X.indices.copy(), X.data.copy()
    model = MLP([5, 2], seed=0, dtype=dtype)
    np.testing.assert_allclose(model.forward(X), model.forward(X.toarray()), rtol=1e-6)
    SIBP().step(model, X, np.array([0, 1]))
    np.testing.assert_array_equal(X.indices, before[0])
    np.testing.assert_array_equal(X.data, before[1])
    be = get_backend("numpy")
    assert float(be.sqnorm(be.as_sparse(X, dtype))) == pytest.approx((X.toarray() ** 2).sum())  # 1 + 4 + 49
