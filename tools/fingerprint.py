"""A fingerprint of the algorithms' numbers, for refactors that must not change them.

    python tools/fingerprint.py OUT.json        # at 1 BLAS thread

Runs the mnist-5k step-size grid (784-500-10, 5 epochs, seed 0; SIBP and ProxBP at lam = 1 over eta,
SGD over lr, each over 100, 10, 1, 0.1, 0.01) and writes, per run, every history column and the first
16 hex digits of the SHA-256 of the final parameters. Two fingerprints from the same machine and thread
count are equal iff every run gave the same numbers, bit for bit (`cmp before.json after.json`).
"""
import hashlib
import json
import sys

from threadpoolctl import threadpool_limits

from sibp_np import MLP, fit, get_method, load_dataset
from sibp_np._io import write_text

GRID = (100.0, 10.0, 1.0, 0.1, 0.01)
RUNS = (("sibp", "eta", {"lam": 1.0}), ("sgd", "lr", {}), ("proxbp", "eta", {"lam": 1.0}))
COLUMNS = ("train_acc", "val_acc", "train_loss", "val_loss", "batch_loss")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(__doc__)
    data = load_dataset("mnist-5k")
    rows = []
    with threadpool_limits(1):
        for name, param, fixed in RUNS:
            for v in GRID:
                model = MLP([784, 500, 10], seed=0)
                h = fit(model, get_method(name, **{param: v}, **fixed), *data.train, val=data.val,
                        epochs=5, seed=0, verbose=0)
                digest = hashlib.sha256(b"".join(a.tobytes() for a in model.get_params().values()))
                rows.append({"method": name, param: v, "diverged": h.diverged,
                             "params_sha": digest.hexdigest()[:16], **{k: h[k] for k in COLUMNS}})
                print(name, v, h.last["train_acc"], h.last["val_acc"], rows[-1]["params_sha"], flush=True)
    write_text(argv[0], json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
