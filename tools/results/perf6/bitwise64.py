import hashlib
import numpy as np
from sibp_np import MLP, get_method, load_dataset
from threadpoolctl import threadpool_limits
data = load_dataset("mnist-5k"); X, y = data.train
with threadpool_limits(1):
    for sizes, std in (([784, 500, 10], None), ([784, 600, 600, 10], 0.05), ([64, 100, 10], None)):
        model = MLP(sizes, seed=1, dtype="float64", **({"init_std": std} if std else {}))
        m = get_method("sibp", eta=10.0, jit=True)
        Xs = X[:, :sizes[0]]
        for k in range(15):
            Xc, yc = model.check_Xy(Xs[k*100:(k+1)*100], y[k*100:(k+1)*100])
            m.step(model, Xc, yc, checked=True)
        h = hashlib.sha256(b"".join(np.ascontiguousarray(p).tobytes() for p in model.params())).hexdigest()[:16]
        print(sizes, h)
