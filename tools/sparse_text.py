"""Sparse input on a real text task: the estimators on TF-IDF features, sparse against dense.

    python tools/sparse_text.py [--max-iter 20] [--out tools/results/sparse/text.md]

The corpus is real text that ships with Python itself: the docstrings of the standard library
(``asyncio``, ``email``, ``typing``, ``tkinter``, ...), read with ``ast`` (nothing is imported), each
labelled by its top-level module or package; labels with fewer than 50 docstrings are dropped.
``TfidfVectorizer`` makes a CSR matrix; each method is fitted on it and on its dense copy
(``toarray()``), at 1 BLAS thread, interleaved, and the test accuracy, the fit time and the peak memory
of ``fit`` (``tracemalloc``, which sees NumPy's and SciPy's arrays) are reported.
"""
import argparse
import ast
import sysconfig
import time
import tracemalloc
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits


def corpus(min_words=5):
    """``(docs, labels)``: every module, class and function docstring of at least ``min_words`` words
    in the standard library, labelled by its top-level module or package."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, labels = [], []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in ("site-packages", "test", "idlelib") or "tests" in parts or "test" in parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= min_words:
                    docs.append(doc)
                    labels.append(parts[0].removesuffix(".py"))
    return docs, np.array(labels)


def measure(make, X, y, X_test, y_test):
    est = make()
    tracemalloc.start()
    t = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return est.score(X_test, y_test), seconds, peak


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-iter", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import train_test_split

    from sibp_np import SGD, SIBP, Adam
    from sibp_np.sklearn import MLPClassifier

    docs, labels = corpus()
    keep = np.isin(labels, [k for k, n in zip(*np.unique(labels, return_counts=True)) if n >= 50])
    docs, labels = [d for d, k in zip(docs, keep) if k], labels[keep]
    X = TfidfVectorizer(min_df=2, sublinear_tf=True, dtype=np.float32).fit_transform(docs)
    Xtr, Xte, ytr, yte = train_test_split(X, labels, test_size=0.25, stratify=labels, random_state=0)
    Dtr, Dte = Xtr.toarray(), Xte.toarray()
    lines = [f"corpus: {len(docs)} docstrings of {len(set(labels))} standard-library packages; TF-IDF "
             f"{X.shape[1]} terms, density {X.nnz / np.prod(X.shape):.4f}; train {Xtr.shape[0]}, "
             f"test {Xte.shape[0]}",
             f"X_train: sparse {(Xtr.data.nbytes + Xtr.indices.nbytes + Xtr.indptr.nbytes) / 2**20:.1f} MiB, "
             f"dense {Dtr.nbytes / 2**20:.1f} MiB (float32)", "",
             f"MLPClassifier(hidden_layer_sizes=(100,), max_iter={a.max_iter}, tol=0, random_state=0), "
             f"1 BLAS thread, median of {a.repeats} interleaved fits", "",
             "| method | input | test accuracy | fit s | peak MiB in fit |",
             "| --- | --- | --- | --- | --- |"]
    methods = {"SIBP()": SIBP, "Adam()": Adam, "SGD(lr=0.1)": lambda: SGD(lr=0.1)}
    with threadpool_limits(1):
        for name, method in methods.items():
            def make(method=method):
                return MLPClassifier(hidden_layer_sizes=(100,), method=method(), max_iter=a.max_iter,
                                     tol=0.0, random_state=0)
            runs = {"sparse": [], "dense": []}
            for _ in range(a.repeats):
                runs["sparse"].append(measure(make, Xtr, ytr, Xte, yte))
                runs["dense"].append(measure(make, Dtr, ytr, Dte, yte))
            for kind, rs in runs.items():
                acc, sec, peak = rs[0][0], float(np.median([r[1] for r in rs])), max(r[2] for r in rs)
                lines.append(f"| {name} | {kind} | {acc:.3f} | {sec:.2f} | {peak / 2**20:.1f} |")
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        from sibp_np._io import write_text
        write_text(a.out, text)


if __name__ == "__main__":
    main()
