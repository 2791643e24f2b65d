"""Fit the abstention model (numpy logistic regression) on a seeded calibration sample's
question rows; prints the Settings.abstain_model string and the threshold answering 96% in-corpus."""
import sys
import numpy as np

Q = np.load(sys.argv[1] if len(sys.argv) > 1 else "bench/feats-s1-questions.npy")
keep = float(sys.argv[2]) if len(sys.argv) > 2 else 0.96
y = Q[:, 1]
# order = qa.answering.abstain_features: known, top_dense, best_cov, best_dense, log1p(top_bm25),
# top_bm25/sum_idf, cap_unknown, rare_cov, top_score
X = np.column_stack([Q[:, 2], Q[:, 3], Q[:, 7], Q[:, 8], np.log1p(Q[:, 4]), Q[:, 4] / np.maximum(Q[:, 5], 1e-6), Q[:, 10], Q[:, 11], Q[:, 13]])
mu, sd = X.mean(0), X.std(0) + 1e-9
Z = (X - mu) / sd
w = np.zeros(Z.shape[1]); b = 0.0
for _ in range(8000):
    p = 1 / (1 + np.exp(-(Z @ w + b)))
    g = p - y
    w -= 0.2 * (Z.T @ g / len(y) + 1e-3 * w); b -= 0.2 * g.mean()
coef = w / sd; icpt = b - (w * mu / sd).sum()
z = X @ coef + icpt
prob = 1 / (1 + np.exp(-z))
t = float(np.quantile(prob[y == 1], 1 - keep))
print(f"threshold {t:.4f}: answers {np.mean(prob[y == 1] >= t):.3f} in-corpus, refuses {np.mean(prob[y == 0] < t):.3f} out-of-corpus")
print("abstain_model", ",".join(f"{v:.4g}" for v in [icpt, *coef]))
