"""Logistic regression (numpy) for abstention on bench/feats-*-questions.npy; prints the
refusal rate on out-of-corpus questions at thresholds answering 95% / 97% of in-corpus ones."""
import sys
import numpy as np

Q = np.load(sys.argv[1] if len(sys.argv) > 1 else "bench/feats-s1-questions.npy")
# cols: qi in known top_dense top_bm25 sumidf nuniq bestcov bestdense bestscore [extra...]
y = Q[:, 1]
def feats(Q):
    return np.column_stack([Q[:, 2], Q[:, 3], Q[:, 7], Q[:, 8], np.log1p(Q[:, 4]) , Q[:, 4] / np.maximum(Q[:, 5], 1e-6)] + ([Q[:, 10:]] if Q.shape[1] > 10 else []))
X = feats(Q)
mu, sd = X.mean(0), X.std(0) + 1e-9
Z = (X - mu) / sd
w = np.zeros(Z.shape[1]); b = 0.0
for it in range(5000):
    p = 1 / (1 + np.exp(-(Z @ w + b)))
    g = p - y
    w -= 0.1 * (Z.T @ g / len(y) + 1e-3 * w); b -= 0.1 * g.mean()
s = Z @ w + b
def auc(s, y):
    o = np.argsort(s); r = np.empty(len(s)); r[o] = np.arange(len(s))
    n1 = y.sum(); n0 = len(y) - n1
    return (r[y == 1].sum() - n1 * (n1 - 1) / 2) / (n1 * n0)
print("AUC", auc(s, y))
for keep in (0.95, 0.97):
    t = np.quantile(s[y == 1], 1 - keep)
    print(f"answer {keep:.0%} in-corpus -> refuse {np.mean(s[y == 0] < t):.3f} out-of-corpus (z threshold {t:.3f})")
# raw-space coefficients: z = sum(w/sd * x) + (b - sum(w*mu/sd))
print("coef", (w / sd).round(4).tolist(), "intercept", round(float(b - (w * mu / sd).sum()), 4))
for i in range(X.shape[1]):
    print(i, "single AUC", round(auc(X[:, i], y), 3))
