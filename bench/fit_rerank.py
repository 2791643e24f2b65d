"""Grid over passage rerank weights on bench/feats-*-passages.npy: R@1/R@5 by reranking top-20."""
import sys, itertools
import numpy as np
P = np.load(sys.argv[1] if len(sys.argv) > 1 else "bench/feats-s1-passages.npy")
# cols: qi rank fused dense bm25n bm25 maxsd maxcov ctx bestscore bestdense bestcov typed label goldsent
qi = P[:, 0].astype(int); label = P[:, 13]
nq = qi.max() + 1
has = np.zeros(nq); np.maximum.at(has, qi, label)
print("questions with gold in top-20:", has.mean(), "(in corpus rows only meaningful)")
inq = has >= 0
def recall(score, depth=20):
    out1 = out5 = 0; n = 0
    for q in range(nq):
        m = (qi == q) & (P[:, 1] < depth)
        if not m.any(): continue
        s = score[m]; l = label[m]
        order = np.argsort(-s, kind="stable")
        out1 += l[order[0]] > 0; out5 += l[order[:5]].max() > 0; n += 1
    return out1 / n, out5 / n
rrf = P[:, 2] / P[:, 2].reshape(-1)[0:1].max()
print("fused:", recall(-P[:, 1]))
best = None
for depth in (10, 20):
  for a, b, c, d in itertools.product((0, 20, 40, 80), (0, 0.5, 1), (0, 0.3, 0.6), (0.5, 1.0)):
    score = a * P[:, 2] + b * P[:, 4] + c * P[:, 3] + d * P[:, 9]
    r = recall(score, depth)
    if best is None or r[0] > best[0][0]: best = (r, depth, a, b, c, d)
    print(depth, a, b, c, d, r)
print("best", best)
