"""The trained reader with its shipped weights (slow tier): the weights match their model card,
and answers over the seed corpus point at a span that is the file's text, inside a citation."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from qa.engine import Engine
from qa.reading import model as rm
from qa.reading.trained import SpanReader, TrainedReader
from qa.types import Answer

pytestmark = pytest.mark.slow

MAX_WEIGHTS_BYTES = 50 * 1000 * 1000

# Plain questions about the seed corpus (not the dev set's), with words one of which a right span holds.
QUESTIONS = [
    ("Who created Severance?", ("Erickson",)),
    ("What is the name of Turturro's son?", ("Diego",)),
    ("Where was the Spring Moving Image Awards event held?", ("Museum", "Queens")),
    ("Who interviewed Turturro for ET at the premiere?", ("Rachel Smith",)),
]
UNANSWERABLE = "What is the boiling point of tungsten?"


@pytest.fixture(scope="module")
def eager_engine(real_engine):
    """The real engine's index and span reader, with a threshold of 0: the trained reader always
    answers when it can quote (its confidence model is calibrated separately)."""
    engine = Engine(real_engine.settings.replace(reader_abstain_threshold=0.0), embedder=real_engine.embedder)
    engine._readers["trained"] = TrainedReader(engine.settings, spans=real_engine.reader("trained").spans)
    return engine


def file_text(engine: Engine, source: str) -> str:
    return (engine.settings.corpus_path / source).read_text(encoding="utf-8")


def check_quotes(engine: Engine, answer: Answer) -> None:
    """Every quote and the span are the file's text; the span lies inside a citation."""
    assert 0.0 <= answer.confidence <= 1.0
    for c in answer.citations:
        assert file_text(engine, c.source)[c.start : c.end] == c.quote
        assert f"{c.quote} [{c.number}]" in answer.text
    if answer.abstained:
        assert answer.span is None and answer.citations == [] and answer.message
        return
    span = answer.span
    assert span is not None, "an answer of the trained reader has a span"
    assert span.text and file_text(engine, span.source)[span.start : span.end] == span.text
    assert any(c.source == span.source and c.start <= span.start and span.end <= c.end for c in answer.citations), (
        f"span {span} is outside every citation"
    )


def test_weights_match_their_model_card():
    card = rm.read_card(rm.WEIGHTS_DIR)
    weights = rm.WEIGHTS_DIR / card.get("weights_file", rm.WEIGHTS_FILE)
    assert weights.is_file()
    size = weights.stat().st_size
    assert size <= MAX_WEIGHTS_BYTES, f"weights are {size / 1e6:.1f} MB"
    assert card["bytes"] == size
    assert rm.sha256_file(weights) == card["sha256"]
    assert set(card["window"]) >= {"max_length", "stride", "max_answer_tokens"}
    assert card.get("data") and card.get("base_model")


def test_onnx_graph_matches_its_model_card():
    card = rm.read_card(rm.WEIGHTS_DIR)
    if not card.get("onnx_file"):
        pytest.skip("the card names no ONNX graph")
    graph = rm.WEIGHTS_DIR / card["onnx_file"]
    size = graph.stat().st_size
    assert size <= MAX_WEIGHTS_BYTES, f"the ONNX graph is {size / 1e6:.1f} MB"
    assert card["onnx_bytes"] == size and rm.sha256_file(graph) == card["onnx_sha256"]


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_span_reader_loads_with_the_cards_window(backend):
    reader = SpanReader(backend=backend)
    reader.load()
    card = rm.read_card(rm.WEIGHTS_DIR)
    assert reader.card == card
    assert reader.config == rm.WindowConfig(**card["window"])
    assert reader.loaded_backend == ("torch" if backend == "torch" else reader.loaded_backend)
    assert reader.loaded_backend in ("onnx", "torch")


def test_torch_network_is_frozen_for_inference():
    net, card = rm.load_network(rm.WEIGHTS_DIR)
    assert card == rm.read_card(rm.WEIGHTS_DIR)
    assert not net.training and not any(p.requires_grad for p in net.parameters())


@pytest.fixture(scope="module")
def backends():
    torch_reader, onnx_reader = SpanReader(backend="torch"), SpanReader(backend="onnx")
    try:
        onnx_reader.load()
    except Exception as e:  # noqa: BLE001 - no graph shipped, or no onnxruntime
        pytest.skip(f"no ONNX backend: {e}")
    return torch_reader, onnx_reader


def x86_without_vnni() -> bool:
    """An x86 CPU without VNNI (AVX2 or AVX-512 only). There onnxruntime's u8s8 kernels add pairs of
    int8 products in 16 bits (VPMADDUBSW), which can saturate, so int8 scores stray further from the
    float ones: on an AMD EPYC with AVX2 only (2026-12-07), over the 87 news questions of the dev and
    held-out sets, the float reader's best span stayed among the int8 reader's best three every time
    and was its best 73 times, but its score moved by 0.4 at the median and up to 3.0."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


def test_onnx_and_torch_backends_point_at_the_same_spans(real_engine, backends):
    """int8 moves scores a little: near-ties may swap, but the float reader's best span stays among
    the int8 reader's best three with about the same score (within 10 %, or 1.0 for small scores:
    the stage-3 weights move one score by 1.04 of 11.55), and most best spans are the same. On x86
    without VNNI the scores move more (``x86_without_vnni``): there the spans are checked, not the
    scores."""
    exact_scores = not x86_without_vnni()
    torch_reader, onnx_reader = backends
    agree = 0
    for question, _ in QUESTIONS:
        passages = real_engine.retrieve(question, k=5)
        t, o = torch_reader.read(question, passages), onnx_reader.read(question, passages)
        assert t.spans and o.spans
        for reading in (t, o):
            for g in reading.spans:
                assert file_text(real_engine, passages[g.rank].source)[g.start : g.end] == g.text
        key = lambda g: (g.rank, g.start, g.end)  # noqa: E731
        scores = {key(g): g.score for g in o.spans[:3]}
        best = t.spans[0]
        assert key(best) in scores, f"int8 lost the float reader's span {best.text!r} for {question!r}"
        if exact_scores:
            assert scores[key(best)] == pytest.approx(best.score, abs=max(1.0, 0.1 * abs(best.score)))
        agree += key(best) == key(o.spans[0])
    assert agree >= len(QUESTIONS) / 2


def test_onnx_reader_reads_the_same_on_one_or_two_threads(real_engine, backends):
    """Windows run one by one, so how they are shared out over threads cannot change a score."""
    _, one = backends
    two = SpanReader(backend="onnx", threads=2)
    two.load()
    assert two._pool is not None and one._pool is None
    for question, _ in QUESTIONS:
        passages = real_engine.retrieve(question, k=5)
        assert one.read(question, passages) == two.read(question, passages)


@pytest.mark.parametrize("question", [q for q, _ in QUESTIONS])
def test_trained_reader_answers_with_a_verbatim_span_inside_a_citation(eager_engine, question):
    answer = eager_engine.answer(question, reader="trained")
    assert answer.reader == "trained"
    assert not answer.abstained, f"no span for {question!r}: {answer.message}"
    check_quotes(eager_engine, answer)
    assert len(answer.span.text) <= 200 and "\n" not in answer.span.text, "a short answer, not a passage"
    assert answer.to_dict()["span"]["text"] == answer.span.text


def test_trained_reader_mostly_points_at_the_right_words(eager_engine):
    spans = {q: eager_engine.answer(q, reader="trained").span for q, _ in QUESTIONS}
    right = [
        q for q, words in QUESTIONS if spans[q] is not None and any(w.lower() in spans[q].text.lower() for w in words)
    ]
    assert len(right) >= 3, (
        f"right spans for {len(right)}/{len(QUESTIONS)}: {[(q, s and s.text) for q, s in spans.items()]}"
    )


def test_default_threshold_answers_keep_the_invariants(real_engine):
    for question, _ in QUESTIONS:
        answer = real_engine.answer(question, reader="trained")
        assert answer.reader == "trained"
        check_quotes(real_engine, answer)


def test_unanswerable_question_never_gets_a_span_outside_a_citation(real_engine, eager_engine):
    answer = real_engine.answer(UNANSWERABLE, reader="trained")
    assert answer.reader == "trained"
    check_quotes(real_engine, answer)
    forced = eager_engine.answer(UNANSWERABLE, reader="trained")
    check_quotes(eager_engine, forced)


def test_picker_and_trained_reader_on_the_same_engine(real_engine):
    question = QUESTIONS[0][0]
    picked = real_engine.answer(question, reader="picker")
    assert picked.reader == "picker" and picked.span is None
    check_picker = [c for c in picked.citations if file_text(real_engine, c.source)[c.start : c.end] != c.quote]
    assert not check_picker
    trained = real_engine.answer(question, reader="trained")
    assert trained.reader == "trained"
    check_quotes(real_engine, trained)
    assert real_engine.reader("trained") is real_engine.reader("trained")
    assert real_engine.reader().name == real_engine.settings.reader


def _tiny_squad(folder, articles: int = 6):
    """A SQuAD-format training file of a few made-up articles (one paragraph, two questions each)."""
    import gzip
    import json

    data = []
    for a in range(articles):
        ctx = f"The town of Ardel{a} was founded by Mira Holt in {1800 + a}. It lies on the river Sel."
        qas = [
            {"id": f"t-{a}-0", "question": f"Who founded Ardel{a}?", "answers": [{"text": "Mira Holt", "answer_start": ctx.index("Mira")}]},
            {"id": f"t-{a}-1", "question": f"When was Ardel{a} founded?", "answers": [{"text": str(1800 + a), "answer_start": ctx.index(str(1800 + a))}]},
        ]  # fmt: skip
        data.append({"title": f"Ardel{a}", "paragraphs": [{"context": ctx, "qas": qas}]})
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "train-v1.1.json.gz", "wt", encoding="utf-8") as f:
        json.dump({"data": data}, f)
    return folder


def test_train_on_retrieved_passages_from_a_file_without_the_engine(tmp_path, monkeypatch):
    """What a lent GPU without the engine does: --retrieved-from a --dump-retrieved file, with
    orjson (which the index needs) unimportable; the card names the file."""
    import argparse
    import json
    import subprocess
    import sys

    from qa.reading import train

    data = _tiny_squad(tmp_path / "data")
    common = ["--data", str(data), "--held-out-articles", "2", "--eval-questions", "2", "--final-eval-questions", "2"]
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    dumped = tmp_path / "retrieved.json.gz"
    args = parser.parse_args([*common, "--retrieved", "2", "--dump-retrieved", str(dumped)])
    plan = train.load_plan(args)
    searched = [
        [(q.question, q.context, q.start, q.end), (q.question, "The river Sel runs south.", -1, -1)] for q in plan.train
    ]
    monkeypatch.setattr(train, "_searched", lambda a, held: (len(searched), lambda i: searched[i]))
    assert train.dump_retrieved(args, plan.held_out_articles) == 0
    argv = [*common, "--retrieved-from", str(dumped), "--base-model", str(rm.packaged_model_path()),
            "--minutes", "0.05", "--epochs", "20", "--question-batch", "2", "--eval-every", "1000", "--threads", "1",
            "--no-onnx", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "trained")]  # fmt: skip
    code = (
        "import sys; sys.modules['orjson'] = None\n"  # any import of orjson now fails
        f"import runpy; sys.argv = ['train', *{argv!r}]\n"
        "try:\n    runpy.run_module('qa.reading.train', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'qa.engine' not in sys.modules and 'qa.index' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((tmp_path / "trained" / rm.CARD_FILE).read_text())
    assert card["training"]["retrieved"] == 2 and card["training"]["retrieved_from"] == "retrieved.json.gz"
    assert card["training"]["questions"] == len(searched) and card["training"]["steps"] >= 1


def test_train_reader_on_a_time_budget_then_export_its_graph_elsewhere(tmp_path, capsys):
    """What a GPU run does (--base-model, --minutes, --no-onnx) and what follows here (--export-from):
    the weights come back unchanged, now with an int8 graph, and load as the card says."""
    import argparse
    import json

    from qa.reading import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    data = _tiny_squad(tmp_path / "data")
    trained, final = tmp_path / "trained", tmp_path / "final"
    common = ["--data", str(data), "--held-out-articles", "2", "--eval-questions", "2", "--final-eval-questions", "2"]
    args = parser.parse_args(
        [*common, "--base-model", str(rm.packaged_model_path()), "--minutes", "0.05", "--epochs", "50",
         "--batch-size", "4", "--eval-every", "1000", "--threads", "1", "--no-onnx",
         "--out", str(tmp_path / "run"), "--export", str(trained)]
    )  # fmt: skip
    assert train.main(args) == 0
    card = json.loads((trained / rm.CARD_FILE).read_text())
    assert card["training"]["budget_minutes"] == 0.05
    assert card["training"]["steps"] < card["training"]["of_steps"], "the time budget ended training"
    assert "onnx_file" not in card and not (trained / rm.ONNX_FILE).exists()

    assert train.main(parser.parse_args(["--export-from", str(trained), "--export", str(final)])) == 0
    again = rm.read_card(final)
    assert again["sha256"] == card["sha256"], "the same weights, byte for byte"
    assert again["onnx_file"] == rm.ONNX_FILE and (final / rm.ONNX_FILE).stat().st_size == again["onnx_bytes"]
    assert rm.load_onnx(final) is not None, "the graph matches its card"
    assert again["validation"] == card["validation"] and again["command"] == card["command"]

    assert train.main(parser.parse_args([*common, "--validate", str(final)])) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["questions"] == 2 and 0.0 <= scored["em"] <= scored["f1"] <= 1.0
