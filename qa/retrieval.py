"""Dense (FAISS) and BM25 search over the chunks, fused into Passages, best first."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import lexical
from .corpus import page_of
from .embedding import Embedder
from .index import Index, top_positive
from .reading.features import question_terms, sentence_features, sentence_score
from .settings import Settings
from .types import Passage


@dataclass(frozen=True)
class Hits:
    """The result of one search, with what answer scoring needs besides the passages."""

    passages: list[Passage]
    query_vector: np.ndarray
    query_terms: list[str]
    # chunk row -> its sentences' features for this question, as reranking computed them
    sentence_features: dict[int, list] = dataclasses.field(default_factory=dict)


def dense_search(
    index: Index, query_vector: np.ndarray, n: int, ef_search: int = 128, allowed: np.ndarray | None = None
) -> dict[int, float]:
    """Chunk row -> cosine, for the ``n`` nearest live chunks of every segment (among ``allowed``)."""
    if n <= 0:
        return {}
    return index.dense_search(query_vector, n, ef_search, allowed)


def bm25_scores(index: Index, terms: list[str]) -> np.ndarray:
    """BM25 score of every chunk row for the query terms (zeros when no term is known)."""
    return index.bm25_scores(terms)


def bm25_search(scores: np.ndarray, n: int) -> dict[int, float]:
    """Chunk row -> BM25 score, for the ``n`` best chunks with a positive score."""
    return top_positive(scores, n)


def lexical_search(index: Index, query: str, n: int, allowed: np.ndarray | None = None) -> dict[int, float]:
    """Chunk row -> BM25 score, for the ``n`` best chunks for the question text ``query``."""
    return index.lexical_search(query, n, allowed)


def fuse(dense: dict[int, float], bm25: dict[int, float], settings: Settings) -> dict[int, float]:
    """Chunk row -> fused score (higher is better)."""
    if settings.fusion == "rrf":
        fused: dict[int, float] = {}
        for ranking in (dense, bm25):
            for rank, row in enumerate(sorted(ranking, key=ranking.get, reverse=True)):
                fused[row] = fused.get(row, 0.0) + 1.0 / (settings.rrf_k + rank + 1)
        return fused
    if settings.fusion == "weighted":
        top_bm25 = max(bm25.values(), default=0.0) or 1.0
        w = settings.dense_weight
        rows = set(dense) | set(bm25)
        return {r: w * dense.get(r, 0.0) + (1 - w) * bm25.get(r, 0.0) / top_bm25 for r in rows}
    raise ValueError(f"fusion must be 'rrf' or 'weighted'. Currently, it is {settings.fusion!r}.")


def search(
    index: Index,
    embedder: Embedder,
    settings: Settings,
    query: str,
    k: int,
    also: tuple[str, ...] = (),
    allowed: np.ndarray | None = None,
) -> Hits:
    """The ``k`` best passages for ``query``. With ``also`` (other phrasings, such as a follow-up
    question before and after its rewrite), every phrasing's dense and BM25 rankings are fused.
    With ``allowed`` (a bool per chunk row: ``Index.allowed_rows``), only those chunks are found."""
    queries = [query, *[q for q in also if q and q != query]]
    qvecs = embedder.embed(queries)
    dense_best: dict[int, float] = {}
    fused: dict[int, float] = {}
    for q, qvec in zip(queries, qvecs, strict=True):
        dense = dense_search(index, qvec, settings.candidates, settings.hnsw_ef_search, allowed)
        lexical_top = lexical_search(index, q, settings.candidates, allowed)
        for row, score in fuse(dense, lexical_top, settings).items():
            fused[row] = fused.get(row, 0.0) + score
        for row, score in dense.items():
            dense_best[row] = max(score, dense_best.get(row, -1.0))
    depth = max(k, settings.rerank_depth)
    best = sorted(fused, key=lambda r: (-fused[r], r))[:depth]
    # every phrasing's best scores of the passages kept (those outside a top list asked for)
    bm25_best: dict[int, float] = dict.fromkeys(best, 0.0)
    missing_dense = [r for r in best if r not in dense_best]
    for q, qvec in zip(queries, qvecs, strict=True):
        for row, score in index.lexical_scores(q, best).items():
            bm25_best[row] = max(score, bm25_best[row])
        for row, score in index.dense_scores(qvec, missing_dense).items():
            dense_best[row] = max(score, dense_best.get(row, -1.0))
    passages = []
    for row in best:
        c = index.chunks[row]
        meta = index.documents.get(c.source, {})
        dense_score = dense_best.get(row, 0.0)
        passages.append(
            Passage(
                text=c.text,
                score=float(fused[row]),
                source=c.source,
                title=meta.get("title", c.source),
                date=meta.get("date"),
                start=c.start,
                end=c.end,
                dense_score=float(dense_score),
                bm25_score=float(bm25_best[row]),
                chunk_id=row,
                url=meta.get("url"),
                outlet=meta.get("outlet"),
                page=page_of(meta, c.start),
            )
        )
    features: dict[int, list] = {}
    if settings.rerank_depth > 0 and passages:
        passages = rerank(index, passages, query, qvecs[0], settings, features)
    return Hits(passages[:k], qvecs[0], lexical.tokenize(query), features)


def rerank(
    index: Index,
    passages: list[Passage],
    question: str,
    question_vector: np.ndarray,
    settings: Settings,
    features: dict[int, list] | None = None,
) -> list[Passage]:
    """Order passages by their best sentence's score (answers live in sentences), plus the
    chunk's cosine and its BM25 score relative to the best one (weights in Settings). The
    sentence features computed on the way are stored in ``features`` (chunk row -> list)."""
    terms = question_terms(question)
    settings = settings.replace(w_type=settings.w_rerank_type)
    top_bm25 = max((p.bm25_score or 0.0) for p in passages) or 1.0
    scored = []
    for p in passages:
        all_feats = sentence_features(index, p.chunk_id, question, terms, question_vector, settings)
        if features is not None:
            features[p.chunk_id] = all_feats
        feats = [f for f in all_feats if f.quotable]
        best = max((sentence_score(f, settings) for f in feats), default=0.0)
        score = (
            best
            + settings.w_rerank_dense * (p.dense_score or 0.0)
            + settings.w_rerank_bm25 * (p.bm25_score or 0.0) / top_bm25
        )
        scored.append(dataclasses.replace(p, score=float(score)))
    scored.sort(key=lambda p: (-p.score, p.chunk_id))
    return scored
