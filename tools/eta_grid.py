"""Train one method over a grid of step sizes and print a table (train/val accuracy, divergence).

Example (the SIBP stability check of the paper's central claim):

    python tools/eta_grid.py --dataset mnist-5k --epochs 5 --method sibp --grid 100,10,1,0.1,0.01
    python tools/eta_grid.py --dataset fashion-mnist --epochs 2 --method sgd --grid 100,10

``--param`` names the swept hyperparameter (default: ``eta`` for sibp/proxbp, ``lr`` otherwise). Every
run starts from the same initial weights (``--seed``) and sees the same minibatches.
"""
import argparse
import json
import time

from threadpoolctl import threadpool_limits

from sibp_np import MLP, fit, get_method, load_dataset


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--layers", default=None, help="default: inputs,500,classes")
    p.add_argument("--method", default="sibp")
    p.add_argument("--param", default=None)
    p.add_argument("--grid", default="100,10,1,0.1,0.01")
    p.add_argument("--fixed", default="{}", help='other hyperparameters as JSON, e.g. \'{"lam": 1}\'')
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (1)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    data = load_dataset(a.dataset, dtype=a.dtype)
    layers = [int(v) for v in a.layers.split(",")] if a.layers else [data.n_features, 500, data.n_classes]
    param = a.param or ("eta" if a.method in ("sibp", "proxbp") else "lr")
    fixed = json.loads(a.fixed)
    rows = []
    print(f"{a.method} on {data!r}, layers {layers}, {a.epochs} epochs, batch {a.batch_size}, "
          f"{a.dtype}, seed {a.seed}, fixed {fixed}")
    print(f"{param:>8} {'train_acc':>9} {'val_acc':>8} {'train_loss':>11} {'s/epoch':>8}  diverged")
    with threadpool_limits(a.threads):
        for v in [float(x) for x in a.grid.split(",")]:
            model = MLP(layers, seed=a.seed, dtype=a.dtype)
            method = get_method(a.method, **{param: v}, **fixed)
            t = time.perf_counter()
            h = fit(model, method, *data.train, val=data.val, epochs=a.epochs,
                    batch_size=a.batch_size, seed=a.seed, verbose=0)
            last = h.last
            div = h.diverged
            row = {param: v, "train_acc": last["train_acc"], "val_acc": last["val_acc"],
                   "train_loss": last["train_loss"], "diverged": div,
                   "sec_per_epoch": (last["elapsed_seconds"] / max(last["epoch"], 1)),
                   "wall": time.perf_counter() - t}
            rows.append(row)
            dtxt = "-" if div is None else f"epoch {div['epoch']} it {div['iteration']}"
            print(f"{v:>8g} {last['train_acc']:>9.4f} {last['val_acc']:>8.4f} {last['train_loss']:>11.4g} "
                  f"{row['sec_per_epoch']:>8.2f}  {dtxt}", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
