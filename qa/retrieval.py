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
    if settings.cross_rerank_weight > 0 and len(passages) > settings.cross_rerank_from + 1:
        passages = cross_rerank(index, passages, query, qvecs[0], settings, features)
    return Hits(passages[:k], qvecs[0], lexical.tokenize(query), features)


def cross_rerank(
    index: Index,
    passages: list[Passage],
    question: str,
    question_vector: np.ndarray,
    settings: Settings,
    features: dict[int, list],
) -> list[Passage]:
    """The results at ranks ``cross_rerank_from`` to ``cross_rerank_to`` - 1 reordered by their
    score plus ``cross_rerank_weight`` times the cross-encoder's reading of the question with
    their best sentence (``rerankers/cross.py``); the others keep their places, every score stays."""
    from .rerankers import cross

    rs = settings.replace(w_type=settings.w_rerank_type)
    lo, hi = settings.cross_rerank_from, min(settings.cross_rerank_to, len(passages))
    texts = []
    for p in passages[lo:hi]:
        if p.chunk_id not in features:  # reranking off: the sentences as it would have scored them
            terms = question_terms(question)
            features[p.chunk_id] = sentence_features(index, p.chunk_id, question, terms, question_vector, rs)
        texts.append(cross.pair_text(p.title, cross.snippet(features[p.chunk_id], rs)))
    scores = cross.scorer(settings.cross_rerank_weights, settings.cross_rerank_threads).score(question, texts)
    return cross.reorder(passages, scores, settings.cross_rerank_weight, lo, hi)


RERANK_FEATURES = 15  # must match Settings.rerank_model (see settings.RERANK_FEATURES)


def rerank_features(
    sentences: list, p: Passage, rank: int, depth: int, top_fused: float, top_bm25: float, settings: Settings
) -> list[float]:
    """What the learned rerank (``Settings.rerank_model``) weighs for one fused result, in its
    order: the best quotable sentence's score (``sentence_score`` at ``w_rerank_type``) and that
    sentence's cosine, question-term coverage, answer type, chunk coverage and focus; the best
    cosine, coverage, type and focus of any quotable sentence; the chunk's cosine; its BM25 score
    as a share of the best one's; its fused score as a share of the best one's; its fused rank as a
    share of ``depth``; log(1 + its BM25 score). ``settings`` must already carry
    ``w_type=w_rerank_type``."""
    quotable = [f for f in sentences if f.quotable] or list(sentences)
    if quotable:
        best = max(quotable, key=lambda f: sentence_score(f, settings))
        row = [
            sentence_score(best, settings),
            best.dense,
            best.coverage,
            best.typed,
            best.context,
            best.focus,
            max(f.dense for f in quotable),
            max(f.coverage for f in quotable),
            max(f.typed for f in quotable),
            max(f.focus for f in quotable),
        ]
    else:
        row = [0.0] * 10
    bm25 = p.bm25_score or 0.0
    return [
        *row,
        p.dense_score or 0.0,
        bm25 / top_bm25,
        p.score / top_fused if top_fused else 0.0,
        rank / max(1, depth),
        float(np.log1p(bm25)),
    ]


def rerank_score(features: list[float], coef: list[float]) -> float:
    """The learned rerank's score: ``coef`` is ``Settings.rerank_model`` parsed (intercept first)."""
    return coef[0] + sum(c * x for c, x in zip(coef[1:], features, strict=True))


def rerank(
    index: Index,
    passages: list[Passage],
    question: str,
    question_vector: np.ndarray,
    settings: Settings,
    features: dict[int, list] | None = None,
) -> list[Passage]:
    """Order the fused results (best first) by the learned rerank model (``Settings.rerank_model``,
    fitted by ``python -m qa fit-rerank`` on SQuAD train articles) over ``rerank_features``; with
    the model empty, by the hand weights: the best sentence's score plus the chunk's cosine and its
    BM25 score relative to the best one (``w_rerank_dense``, ``w_rerank_bm25``). The sentence
    features computed on the way are stored in ``features`` (chunk row -> list)."""
    terms = question_terms(question)
    settings = settings.replace(w_type=settings.w_rerank_type)
    top_bm25 = max((p.bm25_score or 0.0) for p in passages) or 1.0
    top_fused = max(p.score for p in passages)
    coef = [float(x) for x in settings.rerank_model.split(",")] if settings.rerank_model else None
    scored = []
    for rank, p in enumerate(passages):
        all_feats = sentence_features(index, p.chunk_id, question, terms, question_vector, settings)
        if features is not None:
            features[p.chunk_id] = all_feats
        if coef is not None:
            row = rerank_features(all_feats, p, rank, settings.rerank_depth, top_fused, top_bm25, settings)
            score = rerank_score(row, coef)
        else:
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
