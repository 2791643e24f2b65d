"""Embedding a big build on Ray: the chunks' planned batches mapped over a pool of embedder actors
with Ray Data (``python -m qa index --ray [ADDRESS]``).

Usage::

    embedder = RayEmbedder(base)                      # a local Ray, started on first need
    embedder = RayEmbedder(base, "auto")              # on a node of a running cluster
    embedder = RayEmbedder(base, "ray://head:10001")  # from outside, through the Ray client
    vectors = embedder.embed(texts, progress=True)    # exactly what base.embed(texts) returns
    embedder.close()

Same vectors as the single-process build. The onnx embedder quantizes activations per run, so a
text's vector depends a little on its batch-mates (cosine 0.97-0.99 across batchings). The batches
are therefore planned here by ``base.plan`` (the ones ``base.embed`` runs: like lengths, at most
``batch_tokens`` padded tokens) and each actor runs each planned batch as one run of the same
checked graph with the same session options (one intra-op thread): the vectors are bit-identical
to ``base.embed``'s on machines of one CPU type. Across CPU types onnxruntime may pick other int8
kernels: expect cosine >= 0.999 there.

The sentence-transformers reference embedder is supported too: its batches (``batch_size`` texts,
longest first, as its ``embed`` makes them) run in actors built from the same model id and path,
with one torch thread each instead of every core, so vectors match within float tolerance (cosine
> 0.99999; bit-identical on 300 texts on a 2-core machine, but not guaranteed). Any other embedder
is refused (``InputError``).

Small calls (fewer than ``min_texts`` texts, or one planned batch) are embedded by ``base`` itself:
no Ray round trip, and Ray is not even started.

Local Ray (no address): started on first need with every core of this machine (``num_cpus`` =
``os.cpu_count()``), and shut down by ``close()``. With an address, the driver connects to that
cluster; ``close()`` disconnects and leaves the cluster running. A Ray already initialized in this
process (by the caller) is used as it is and left alone. Actors: one per CPU of the cluster unless
``actors`` says, each reserving one CPU.

On a cluster, every node needs this package and the model package installed in its Python
(``pip install -e .`` on every node, or the same image), since actors import ``qa.embedders``
and load the model from their own installation; give the head's address: ``auto`` on a cluster
node (the driver runs Ray Data's executor itself), or ``ray://<head>:10001`` from another machine
(the Ray client). Ray Data cannot run its executor through the Ray client (ray-project/ray#48682),
so there the same pipeline runs in a small coordinator actor on the cluster (``Pipeline``, no CPU
reserved), polled for finished batches. Ray 2.60 may turn on token authentication (it did for
``ray start --head`` here): a client then needs ``RAY_AUTH_MODE=token`` and the cluster's token
(``~/.ray/auth_token``). Ray itself is the ``ray`` extra: ``pip install -e ".[ray]"``. A
``model_path`` other than the packaged model must exist at the same path on every node.

Ray Data's actors restart after a lost node (its defaults, kept): Ray prints one
"constructor arguments in the object store and max_restarts > 0" line at the start of a run for
it. Failures are raised as one ModelError naming the root cause; Ray may still print its own
notes of them on stdout/stderr.

Ray is imported only when a RayEmbedder is made, never when this module is.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelError, QAError, shorten, show

RAY_MISSING = 'python -m qa index --ray needs Ray: pip install -e ".[ray]"'
MIN_TEXTS = 64  # fewer texts are embedded in this process: a Ray round trip costs seconds
# Planned batches per actor call (one Ray Data block each): at most this many, and few enough for
# every actor to get about CALLS_PER_ACTOR calls (the load stays balanced). 3,000 chunks, 2 actors
# on a shared 2-core machine (noisy): 4 per call 83 s, 16 72 s, 32 51-56 s (one run 88 s), 64 73 s.
MAX_BATCHES_PER_CALL = 32
CALLS_PER_ACTOR = 4


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or the InputError telling how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the ray[data] extra
    except ImportError as e:
        raise InputError(RAY_MISSING) from e
    return ray


# ---------------------------------------------------------------- what the actors run


def embedder_spec(base: Any) -> tuple[str, dict[str, Any]]:
    """(kind, constructor arguments) of an embedder giving ``base``'s vectors in another process;
    InputError for an embedder this module cannot rebuild."""
    from .onnx import OnnxEmbedder
    from .sentence_transformers import SentenceTransformerEmbedder

    if isinstance(base, OnnxEmbedder):
        return "onnx", base.init_kwargs()
    if isinstance(base, SentenceTransformerEmbedder):
        path = getattr(base, "_model_path", None)
        return "sentence-transformers", {
            "model_id": base.model_id,
            "model_path": Path(path) if path else None,
            "batch_size": base.batch_size,
        }
    raise InputError(
        f"python -m qa index --ray embeds with the 'onnx' or 'sentence-transformers' embedder, "
        f"not {show(type(base).__name__)}"
    )


def build_embedder(kind: str, kwargs: dict[str, Any]) -> Any:
    """The embedder ``embedder_spec`` describes, loaded now, running one batch on one core."""
    if kind == "onnx":
        from .onnx import OnnxEmbedder

        embedder = OnnxEmbedder(**kwargs, workers=1)
        embedder.load()
        return embedder
    if kind == "sentence-transformers":
        import torch

        from .sentence_transformers import SentenceTransformerEmbedder

        torch.set_num_threads(1)  # one actor per core
        embedder = SentenceTransformerEmbedder(**kwargs)
        embedder.model  # noqa: B018 - load now, not on the first batch
        return embedder
    raise InputError(f"unknown embedder kind {show(kind)}: expected 'onnx' or 'sentence-transformers'")


def embed_one_batch(embedder: Any, texts: list[str]) -> np.ndarray:
    """``texts`` as one batch (one run), in this order, as ``embedder.embed`` runs a planned batch."""
    if hasattr(embedder, "embed_batch"):
        return embedder.embed_batch(texts)
    vectors = embedder.model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
    return np.ascontiguousarray(vectors, dtype=np.float32)


class BatchEmbedder:
    """A Ray Data actor: builds its embedder once, then embeds each planned batch as one run.

    A Ray Data batch holds a few planned batches: ``rows`` (the texts' indices in the caller's
    list) and ``texts``; it gives back one row per text: ``row`` and ``vector``."""

    def __init__(self, kind: str, kwargs: dict[str, Any]) -> None:
        self.embedder = build_embedder(kind, kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, vectors = [], []
        for r, texts in zip(batch["rows"], batch["texts"], strict=True):
            rows.append(np.asarray(r, dtype=np.int64))
            vectors.append(embed_one_batch(self.embedder, [str(t) for t in texts]))
        return {"row": np.concatenate(rows), "vector": np.concatenate(vectors).astype(np.float32, copy=False)}


# ---------------------------------------------------------------- the driver side


def positive_or_none(name: str, value: Any) -> int | None:
    """``value`` if None or a positive int, else an InputError naming it."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise InputError(f"{name} must be a positive integer, not {show(value)}")


class RayEmbedder:
    """An Embedder (``qa.protocols``) giving ``base``'s vectors, computed by Ray actors for big calls."""

    def __init__(
        self,
        base: Any,
        address: str | None = None,
        actors: int | None = None,
        *,
        batches_per_call: int | None = None,
        min_texts: int = MIN_TEXTS,
    ) -> None:
        import_ray()  # a missing Ray is told now, not in the middle of a build
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise InputError(f"the Ray address must be 'auto', 'ray://HOST:PORT' or HOST:PORT, not {show(address)}")
        self.base = base
        self.kind, self.kwargs = embedder_spec(base)
        self.address = address.strip() if address else None
        self.actors = positive_or_none("the number of Ray actors", actors)
        self.batches_per_call = positive_or_none("batches per Ray call", batches_per_call)
        self.min_texts = min_texts
        self._connected = False  # whether this object called ray.init (and so ray.shutdown)

    # -------------------------------------------------------- the Embedder protocol, delegated

    @property
    def model_id(self) -> str:
        return self.base.model_id

    @property
    def dimension(self) -> int:
        return self.base.dimension

    @property
    def max_tokens(self) -> int:
        return self.base.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """``base``'s count (tokenizing is cheap: done here, not on Ray)."""
        return self.base.count_tokens(texts)

    def plan(self, texts: Sequence[str]) -> list[list[int]]:
        """The batches ``base.embed(texts)`` runs, as lists of indices into ``texts``."""
        if hasattr(self.base, "plan"):
            return self.base.plan(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as SentenceTransformerEmbedder.embed
        size = max(1, int(self.base.batch_size))
        return [order[k : k + size] for k in range(0, len(order), size)]

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """(len(texts), dimension) float32, the rows ``base.embed(texts)`` gives; on Ray when big."""
        texts = list(texts)
        if len(texts) < self.min_texts:
            return self.base.embed(texts, progress=progress)
        batches = self.plan(texts)
        if len(batches) <= 1:
            return self.base.embed(texts, progress=progress)
        ray = self.connect()
        try:
            return self._embed_on_ray(ray, texts, batches, progress)
        except Exception as e:  # noqa: BLE001 - any Ray failure is one clear error
            raise self._failure(e) from e

    def close(self) -> None:
        """Shut down the local Ray this object started, or disconnect from the cluster it joined
        (which keeps running); a Ray the caller initialized is left alone."""
        if not self._connected:
            return
        self._connected = False
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001 - closing is best effort
            logging.getLogger(__name__).debug("ray.shutdown failed", exc_info=True)

    def __enter__(self) -> RayEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------- Ray

    def connect(self) -> Any:
        """The ``ray`` module, initialized: the caller's Ray, else one started (no address) or joined
        (an address) now. The first big ``embed`` calls it; call it first to fail early. A failure
        is a ModelError."""
        ray = import_ray()
        if ray.is_initialized():
            return ray
        quiet = {"log_to_driver": False, "configure_logging": False, "ignore_reinit_error": True}
        try:
            with quiet_ray():
                if self.address is None:
                    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
                else:
                    ray.init(address=self.address, **quiet)
        except Exception as e:  # noqa: BLE001 - any Ray failure is one clear error
            self._connected = ray.is_initialized()  # half started: shut down what there is
            raise self._failure(e) from e
        self._connected = True
        return ray

    def _failure(self, e: BaseException) -> QAError:
        """The error to raise for ``e``, after shutting down what this object started."""
        self.close()
        if isinstance(e, QAError) and type(e).__module__.startswith("qa."):  # not Ray's RayTaskError(ModelError)
            return e
        where = f"the Ray cluster at {show(self.address)}" if self.address else "a local Ray"
        hint = ""
        if isinstance(e, ConnectionError) and (self.address or "").startswith("ray://"):
            hint = (
                " (is the head's client port reachable? A cluster with token authentication needs"
                " RAY_AUTH_MODE=token and its token here)"
            )
        return ModelError(f"embedding on {where} failed: {failure_reason(e)}{hint}")

    def _pool_size(self, ray: Any) -> int:
        """Actors: as asked, else one per CPU of the cluster."""
        if self.actors:
            return self.actors
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _embed_on_ray(self, ray: Any, texts: list[str], batches: list[list[int]], progress: bool) -> np.ndarray:
        """Each planned batch one item; a few per actor call; rows put back where they belong."""
        from ..embedding import progress_bar

        actors = self._pool_size(ray)
        per_call = self.batches_per_call or min(
            MAX_BATCHES_PER_CALL, max(1, len(batches) // (CALLS_PER_ACTOR * actors))
        )
        items = [{"rows": rows, "texts": [texts[i] for i in rows]} for rows in batches]
        job = (items, self.kind, self.kwargs, actors, per_call)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        filled = np.zeros(len(texts), dtype=bool)
        wanted = progress and len(texts) >= getattr(self.base, "progress_min_texts", 0)
        with quiet_ray(), progress_bar(len(texts), wanted) as advance:
            for rows, vectors in embed_items(*job) if not through_client(ray) else embed_items_remotely(ray, job):
                out[rows] = vectors
                filled[rows] = True
                advance(len(rows))
        if not filled.all():
            raise ModelError(f"Ray returned vectors for {int(filled.sum())} of {len(texts)} texts")
        return out


def embed_items(
    items: list[dict[str, Any]], kind: str, kwargs: dict[str, Any], actors: int, per_call: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The Ray Data pipeline, run where a Ray driver runs: ``items`` (planned batches) mapped over
    ``actors`` BatchEmbedder actors, ``per_call`` items a call; (rows, vectors) as they come."""
    import ray

    with quiet_ray(), data_context(ray) as ctx:
        ctx.enable_progress_bars = False  # the caller's bar counts texts, as base.embed's does
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / per_call))
        ds = ds.map_batches(
            BatchEmbedder,
            fn_constructor_kwargs={"kind": kind, "kwargs": kwargs},
            batch_size=per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield np.asarray(batch["row"], dtype=np.int64), np.asarray(batch["vector"], dtype=np.float32)


def through_client(ray: Any) -> bool:
    """Whether this process is connected through the Ray client (``ray://``)."""
    try:
        return bool(ray.util.client.ray.is_connected())
    except AttributeError:
        return False


def embed_items_remotely(ray: Any, job: tuple) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``embed_items`` run by a Pipeline actor on the cluster, its results polled: Ray Data cannot
    run its executor through the Ray client (ray-project/ray#48682), and the client has no
    streaming generators; an actor on the cluster can run it."""
    pipeline = ray.remote(num_cpus=0, max_restarts=0)(Pipeline).remote(*job)
    try:
        while True:
            for result in ray.get(pipeline.take.remote()):
                if result is None:
                    return
                yield result
    finally:
        ray.kill(pipeline)


class Pipeline:
    """A Ray actor on the cluster: ``embed_items`` in a thread, its results handed out by ``take``."""

    def __init__(self, *job: Any) -> None:
        self.results: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, args=job, name="qa-ray-pipeline", daemon=True).start()

    def _run(self, *job: Any) -> None:
        try:
            for result in embed_items(*job):
                self.results.put(result)
            self.results.put(None)
        except Exception as e:  # noqa: BLE001 - handed to the client as one clear error
            self.results.put(ModelError(failure_reason(e)))

    def take(self, wait_s: float = 2.0) -> list[Any]:
        """The results since the last call (at least one, or none after ``wait_s``); None marks the end."""
        out = []
        with contextlib.suppress(queue.Empty):
            out.append(self.results.get(timeout=wait_s))
            while True:
                out.append(self.results.get_nowait())
        for result in out:
            if isinstance(result, Exception):
                raise result
        return out


@contextlib.contextmanager
def data_context(ray: Any) -> Iterator[Any]:
    """Ray Data's process-wide DataContext, its settings put back afterwards (they may be the caller's)."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars
    try:
        yield ctx
    finally:
        ctx.enable_progress_bars = saved


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """No Ray log lines on stderr meanwhile ("Starting execution of Dataset ...", notes, and on a
    failure Ray Data's full stack traces): the build shows its own progress, and a failure is
    raised as one ModelError (Ray's own logs stay in its session folder). Levels are put back."""
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def failure_reason(e: BaseException, limit: int = 200) -> str:
    """The root cause of a Ray failure in one short line, not Ray's wrapped traceback: the
    innermost error with a message; of a message holding a traceback (an actor's error), its last
    line, which names the original error ("ModelError: ...")."""
    chain: list[BaseException] = []
    while e is not None and all(e is not seen for seen in chain):
        chain.append(e)
        inner = getattr(e, "cause", None) or e.__cause__
        e = inner if isinstance(inner, BaseException) else None
    named = [x for x in chain if _ANSI.sub("", str(x)).strip()]
    if not named:
        return type(chain[-1]).__name__
    root = named[-1]
    lines = [line.strip() for line in _ANSI.sub("", str(root)).splitlines() if line.strip()]
    text = lines[-1] if len(lines) > 1 else lines[0]
    match = _ERROR_LINE.match(text)
    while match and _ERROR_LINE.match(match.group(2)):  # "RuntimeError: ModelError: ..." -> "ModelError: ..."
        match = _ERROR_LINE.match(match.group(2))
    if match:  # "qa.errors.ModelError: ..." -> "ModelError: ..."
        text = f"{match.group(1)}: {match.group(2)}"
    elif not isinstance(root, QAError):
        text = f"{type(root).__name__}: {text}"
    return shorten(text, limit)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)): (.*)$")
