import sys, json
sys.path.insert(0, "/work/main/tools")
import numpy as np
from threadpoolctl import threadpool_limits
import fingerprint as fp
from sibp_np import MLP, get_method, load_dataset
import sibp_np.ncg_jit as nj
mode = sys.argv[1]
if mode == "nolayer":
    nj.supports_layer = lambda *a: False
data = load_dataset("mnist-5k")
out = []
with threadpool_limits(1):
    for s in range(int(sys.argv[2]), int(sys.argv[3])):
        jit = mode != "default"
        r = fp._final(MLP(fp.DEEP, seed=s, init_std=0.05), get_method("sibp", eta=10.0, jit=jit), data, 2, s)
        out.append(r); print(mode, s, r, flush=True)
print(mode, "val mean", np.mean([r[1] for r in out]), "sd", np.std([r[1] for r in out], ddof=1))
