"""Embedding on Ray (``qa.embedders.ray_embed``, ``python -m qa index --ray``): the same vectors as the
single-process build, small calls kept local, a missing Ray told plainly, Ray failures as one
ModelError; and the onnx embedder's batch plan that makes the vectors identical.

The tests that need Ray skip without it (``pip install -e ".[ray]"``); the real ones start one
local Ray per module (several seconds) and shut it down at the end."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from qa.embedders.onnx import OnnxEmbedder
from qa.errors import InputError, ModelError
from qa.protocols import Embedder

ROOT = Path(__file__).resolve().parent.parent
RAY_EXTRA = '--ray needs the extra: pip install -e ".[ray]"'


def varied_texts(n: int) -> list[str]:
    """``n`` texts of 1 to 9 sentences of the seed articles: every length from a short sentence to
    a chunk, duplicates included."""
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*.txt")))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 3]
    return [" ".join(sentences[(i + j) % len(sentences)] for j in range(1 + (i * 7) % 9)) for i in range(n)]


class StubOnnx(OnnxEmbedder):
    """An OnnxEmbedder that loads nothing: plan and embed are given, calls are counted."""

    def __init__(self, plan: list[list[int]] | None = None) -> None:
        super().__init__()
        self.fixed_plan = plan
        self.embedded: list[int] = []

    def plan(self, texts):
        return self.fixed_plan if self.fixed_plan is not None else [[i] for i in range(len(texts))]

    def embed(self, texts, *, progress: bool = False) -> np.ndarray:
        self.embedded.append(len(texts))
        return np.ones((len(texts), self.dimension), dtype=np.float32)

    def count_tokens(self, texts) -> list[int]:
        return [len(t.split()) for t in texts]


@pytest.fixture
def ray_module():
    return pytest.importorskip("ray", reason=RAY_EXTRA)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module's real tests (2 CPUs: two actors), shut down at the end."""
    ray = pytest.importorskip("ray", reason=RAY_EXTRA)
    pytest.importorskip("ray.data", reason=RAY_EXTRA)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


# ---------------------------------------------------------------- the onnx embedder's plan (no Ray)


def test_plan_covers_every_index_once_longest_first_within_the_budget():
    """The planner alone, on token ids (no model): every text in one batch, longest batches first,
    each at most ``batch_tokens`` padded tokens unless one text is longer."""
    e = OnnxEmbedder(batch_tokens=512)
    rng = np.random.default_rng(7)
    token_ids = [[101] * int(n) for n in rng.integers(3, 257, size=300)]
    plan = e._plan(token_ids)
    assert sorted(i for batch in plan for i in batch) == list(range(300))
    widths = [max(len(token_ids[i]) for i in batch) for batch in plan]
    assert widths == sorted(widths, reverse=True)
    assert all(len(b) * w <= 512 or len(b) == 1 for b, w in zip(plan, widths, strict=True))
    assert e._plan(token_ids[:8]) == [list(range(8))], "a question: one run, in the given order"
    assert e._plan([]) == []


@pytest.mark.slow
def test_embed_is_embed_batch_over_the_plan():
    """embed() is embed_batch over plan(), in order: what lets Ray actors give the same vectors."""
    e = OnnxEmbedder(workers=2)
    texts = varied_texts(40)
    plan = e.plan(texts)
    assert sorted(i for batch in plan for i in batch) == list(range(len(texts))) and len(plan) > 1
    expected = np.zeros((len(texts), e.dimension), dtype=np.float32)
    for batch in plan:
        expected[batch] = e.embed_batch([texts[i] for i in batch])
    assert np.array_equal(e.embed(texts), expected)
    assert e.plan(texts[:3]) == [[0, 1, 2]]
    assert np.array_equal(e.embed(texts[:3]), e.embed_batch(texts[:3]))
    assert e.plan([]) == [] and e.embed_batch([]).shape == (0, e.dimension)


def test_init_kwargs_rebuild_the_same_embedder(tmp_path):
    e = OnnxEmbedder(batch_tokens=256)
    assert e.init_kwargs() == {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "batch_tokens": 256}
    other = OnnxEmbedder(model_path=tmp_path / "model", folder=tmp_path / "weights")
    copy = OnnxEmbedder(**other.init_kwargs())
    assert copy.model_id == other.model_id and copy.init_kwargs() == other.init_kwargs()


# ---------------------------------------------------------------- without Ray


def test_missing_ray_is_an_input_error(monkeypatch):
    from qa.embedders.ray_embed import RayEmbedder

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(InputError, match=re.escape('python -m qa index --ray needs Ray: pip install -e ".[ray]"')):
        RayEmbedder(StubOnnx())


def test_module_import_does_not_import_ray():
    import subprocess

    code = "import sys, qa.embedders.ray_embed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- with Ray, fast


def test_protocol_members_delegate_to_the_base(ray_module):
    from qa.embedders.ray_embed import RayEmbedder

    base = StubOnnx()
    r = RayEmbedder(base)
    assert isinstance(r, Embedder)
    assert (r.model_id, r.dimension, r.max_tokens) == (base.model_id, 384, base.max_tokens)
    assert r.count_tokens(["one two", "three"]) == [2, 1]
    base.max_tokens = 128  # known once loaded: read through, not copied
    assert r.max_tokens == 128


@pytest.mark.parametrize("n, plan", [(10, None), (63, None), (100, [list(range(100))])])
def test_small_calls_are_embedded_here_without_ray(ray_module, monkeypatch, n, plan):
    """Fewer than 64 texts, or one planned batch: the base embeds them, Ray is never started."""
    from qa.embedders.ray_embed import RayEmbedder

    def no_ray(*args, **kwargs):
        raise AssertionError("ray.init was called")

    monkeypatch.setattr(ray_module, "init", no_ray)
    monkeypatch.setattr(ray_module, "is_initialized", lambda: False)
    base = StubOnnx(plan)
    r = RayEmbedder(base)
    out = r.embed([f"text {i}" for i in range(n)])
    assert out.shape == (n, 384) and base.embedded == [n]
    assert not r._connected
    r.close()


def test_other_embedders_and_bad_arguments_are_refused(ray_module, fake_embedder):
    from qa.embedders.ray_embed import RayEmbedder

    with pytest.raises(InputError, match=r"'onnx' or 'sentence-transformers' embedder, not 'FakeEmbedder'"):
        RayEmbedder(fake_embedder)
    for bad in (0, -2, 1.5, True, "4"):
        with pytest.raises(InputError, match=r"number of Ray actors must be a positive integer, not "):
            RayEmbedder(StubOnnx(), actors=bad)
    with pytest.raises(InputError, match=r"Ray address must be .* not ' '"):
        RayEmbedder(StubOnnx(), address=" ")


def fake_ray(initialized: bool = False, fail: Exception | None = None) -> types.SimpleNamespace:
    """A stand-in ``ray`` module recording init and shutdown."""
    calls: list = []

    def init(**kwargs):
        calls.append(("init", kwargs))
        if fail is not None:
            raise fail
        state["on"] = True

    def shutdown():
        calls.append(("shutdown",))
        state["on"] = False

    state = {"on": initialized}
    return types.SimpleNamespace(
        init=init, shutdown=shutdown, is_initialized=lambda: state["on"], calls=calls, data=types.ModuleType("ray.data")
    )


def use_fake_ray(monkeypatch, fake) -> None:
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.data", fake.data)


def test_local_ray_is_started_with_every_core_and_shut_down(monkeypatch):
    import os

    from qa.embedders.ray_embed import RayEmbedder

    fake = fake_ray()
    use_fake_ray(monkeypatch, fake)
    r = RayEmbedder(StubOnnx())
    r.connect()
    r.connect()  # once
    (name, kwargs), *rest = fake.calls
    assert name == "init" and not rest
    assert kwargs["address"] == "local" and kwargs["num_cpus"] == (os.cpu_count() or 1)
    assert kwargs["include_dashboard"] is False and kwargs["log_to_driver"] is False
    r.close()
    r.close()
    assert fake.calls[1:] == [("shutdown",)]


def test_a_cluster_is_joined_and_left_and_a_callers_ray_left_alone(monkeypatch):
    from qa.embedders.ray_embed import RayEmbedder

    fake = fake_ray()
    use_fake_ray(monkeypatch, fake)
    r = RayEmbedder(StubOnnx(), address="ray://head:10001")
    r.connect()
    assert fake.calls[0][1]["address"] == "ray://head:10001" and "num_cpus" not in fake.calls[0][1]
    r.close()  # disconnects this driver; the cluster keeps running
    assert fake.calls[-1] == ("shutdown",)

    mine = fake_ray(initialized=True)
    use_fake_ray(monkeypatch, mine)
    r = RayEmbedder(StubOnnx())
    r.connect()
    r.close()
    assert mine.calls == []


def test_a_ray_that_cannot_start_is_a_model_error(monkeypatch):
    from qa.embedders.ray_embed import RayEmbedder

    use_fake_ray(monkeypatch, fake_ray(fail=ConnectionError("Could not find any running Ray instance.\nmore")))
    r = RayEmbedder(StubOnnx(), address="auto")
    with pytest.raises(ModelError, match=r"^embedding on the Ray cluster at 'auto' failed: ConnectionError: more$"):
        r.embed([f"text {i}" for i in range(100)])


def test_failure_reason_is_one_line_naming_the_root_error():
    from qa.embedders.ray_embed import failure_reason

    inner = RuntimeError(
        "The actor died, \x1b[36mray::MapWorker()\x1b[39m (pid=1)\n  File 'x.py', line 3\n"
        "qa.errors.ModelError: embedder graph card '/x/embedder.json' is missing"
    )
    inner.__cause__ = ValueError()  # Ray Data's empty SystemException
    assert failure_reason(inner) == "ModelError: embedder graph card '/x/embedder.json' is missing"
    assert failure_reason(ModelError("the model is gone")) == "the model is gone"
    assert failure_reason(TimeoutError()) == "TimeoutError"


def test_the_client_side_pipeline_hands_out_results_then_the_end(monkeypatch):
    """Through the Ray client the pipeline runs in a Pipeline actor, polled with take(): results
    as they come, None at the end, a failure as one ModelError (tested here as a plain object)."""
    from qa.embedders import ray_embed

    results = [(np.array([0, 1]), np.ones((2, 384), np.float32)), (np.array([2]), np.zeros((1, 384), np.float32))]
    monkeypatch.setattr(ray_embed, "embed_items", lambda *job: iter(results))
    pipeline = ray_embed.Pipeline("items", "onnx", {}, 2, 4)
    taken = []
    while not taken or taken[-1] is not None:
        taken += pipeline.take(wait_s=5)
    assert [r[0].tolist() for r in taken[:-1]] == [[0, 1], [2]]

    def broken(*job):
        raise RuntimeError("actor died\nqa.errors.ModelError: no model on node 2")
        yield

    monkeypatch.setattr(ray_embed, "embed_items", broken)
    with pytest.raises(ModelError, match=r"^ModelError: no model on node 2$"):
        ray_embed.Pipeline().take(wait_s=5)


def test_a_client_that_cannot_connect_is_told_what_to_check(monkeypatch):
    from qa.embedders.ray_embed import RayEmbedder

    use_fake_ray(monkeypatch, fake_ray(fail=ConnectionError("ray client connection timeout")))
    r = RayEmbedder(StubOnnx(), address="ray://head:10001")
    with pytest.raises(ModelError, match=r"timeout \(is the head's client port reachable\? .*RAY_AUTH_MODE=token"):
        r.connect()


# ---------------------------------------------------------------- with Ray and the real model


@pytest.mark.slow
def test_ray_gives_the_single_process_vectors_bit_for_bit(local_ray):
    """The actors run base.plan's batches (int8 activations are quantized per run, so batching
    must match) on the same graph with one thread each: identical, not just close."""
    from qa.embedders.ray_embed import RayEmbedder

    texts = varied_texts(300)
    base = OnnxEmbedder()
    expected = base.embed(texts)
    r = RayEmbedder(base, actors=2, batches_per_call=3)
    got = r.embed(texts, progress=True)
    assert got.dtype == np.float32 and got.shape == (300, 384)
    assert np.array_equal(got, expected)
    r.close()
    assert local_ray.is_initialized(), "a Ray the caller started is left running"


@pytest.mark.slow
def test_an_actor_failure_is_one_model_error(local_ray):
    from qa.embedders.ray_embed import RayEmbedder

    r = RayEmbedder(OnnxEmbedder(), actors=1)
    r.kwargs = dict(r.kwargs, folder=Path("/nonexistent/weights"))  # what a node without the package sees
    with pytest.raises(ModelError) as caught:
        r.embed(varied_texts(100))
    message = str(caught.value)
    assert message.startswith("embedding on a local Ray failed: ModelError: embedder graph card ")
    assert "/nonexistent/weights/embedder.json" in message and "\n" not in message and "Traceback" not in message
    assert local_ray.is_initialized()


@pytest.mark.slow
def test_index_with_ray_on_the_command_line_builds_the_same_index(tmp_path, seed_corpus, monkeypatch, capsys):
    """`python -m qa index --ray` (local Ray) against the plain build: same chunks, same vectors."""
    pytest.importorskip("ray.data", reason=RAY_EXTRA)
    from qa import engine as engine_mod
    from qa.cli import main
    from qa.index import load_index

    monkeypatch.setattr(engine_mod, "_ENGINES", {})
    monkeypatch.setattr(engine_mod, "_EMBEDDERS", {})
    # a chunk size that makes the seed articles more than one planned batch, so Ray is really used
    common = ["--corpus", str(seed_corpus), "--set", "chunk_max_tokens=40"]
    assert main([*common, "--index", str(tmp_path / "plain"), "index"]) == 0
    assert main([*common, "--index", str(tmp_path / "ray"), "index", "--ray"]) == 0
    out = capsys.readouterr().out
    assert "embedded" in out
    plain, rayed = load_index(tmp_path / "plain"), load_index(tmp_path / "ray")
    assert list(plain.chunks) == list(rayed.chunks) and len(plain.chunks) > 30
    np.testing.assert_array_equal(plain.chunk_vectors(), rayed.chunk_vectors())
    np.testing.assert_array_equal(plain.sentence_vectors, rayed.sentence_vectors)
