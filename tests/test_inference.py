"""qa.embedding._Inference: the one thread that runs every model call. Plain functions stand in
for the model, so these run in the fast tier."""

from __future__ import annotations

import threading
import time

import pytest

from qa.embedding import _Inference


@pytest.fixture
def inference():
    inf = _Inference()
    yield inf
    inf.stop()


def test_every_call_runs_on_one_thread(inference):
    seen: set[str] = set()

    def call():
        seen.add(threading.current_thread().name)
        return 7

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(inference.run(call, urgent=True))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [7] * 8
    assert seen == {"qa-inference"}


def test_an_urgent_call_goes_before_queued_batches(inference):
    order: list[str] = []
    gate = threading.Event()
    # Block the thread, queue three batches and then a question: the question runs first.
    blocker = threading.Thread(target=lambda: inference.run(lambda: gate.wait(5), urgent=False))
    blocker.start()
    time.sleep(0.1)
    batches = [
        threading.Thread(target=lambda i=i: inference.run(lambda: order.append(f"batch{i}"), urgent=False))
        for i in range(3)
    ]
    for t in batches:
        t.start()
        time.sleep(0.05)
    question = threading.Thread(target=lambda: inference.run(lambda: order.append("question"), urgent=True))
    question.start()
    time.sleep(0.1)
    gate.set()
    for t in [blocker, *batches, question]:
        t.join(5)
    assert order == ["question", "batch0", "batch1", "batch2"]


def test_an_exception_reaches_the_caller_and_the_thread_lives_on(inference):
    def boom():
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        inference.run(boom, urgent=False)
    assert inference.run(lambda: "still here", urgent=True) == "still here"


def test_a_call_from_the_inference_thread_runs_inline(inference):
    assert inference.run(lambda: inference.run(lambda: 3, urgent=False), urgent=True) == 3


def test_stop_ends_the_thread(inference):
    inference.run(lambda: None, urgent=True)
    thread = inference._thread
    inference.stop()
    assert thread is not None and not thread.is_alive()
