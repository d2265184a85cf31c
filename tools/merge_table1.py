"""Merge table1.json files made with ``--rows`` (e.g. two processes) into one table1.md/json.

    python tools/merge_table1.py OUT_DIR IN_DIR [IN_DIR ...]
"""
import json
import os
import sys

from sibp_np.experiments import TABLE1_ROWS, format_table1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out, ins = argv[0], argv[1:]
    parts = [json.load(open(os.path.join(d, "table1.json"))) for d in ins]
    meta = dict(parts[0]["meta"])
    meta["seconds"] = sum(p["meta"]["seconds"] for p in parts)
    for p in parts[1:]:
        for k in ("dataset", "layers", "runs", "epochs", "batch_size", "seed", "grid", "sibp_eta_scale"):
            if p["meta"][k] != meta[k]:
                raise SystemExit(f"{k} differs between the parts: {p['meta'][k]!r} vs {meta[k]!r}")
    order = [r[0] for r in TABLE1_ROWS]
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: order.index(r["label"]))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "table1.json"), "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    text = format_table1(meta, rows)
    with open(os.path.join(out, "table1.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
