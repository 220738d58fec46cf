"""inference.py and run.sh: the submission pipeline, its exports, its batching, and its handling of bad input."""

import csv
import itertools
import shutil
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering

import batching
import exports
import inference
from adl_data import to_multiple_choice_examples, to_squad_examples
from cli import run_main
from conftest import ROOT, SAMPLES, read_json, run_script, save_random_models, write_json
from utils_qa import prepare_multiple_choice_features, prepare_validation_features


@pytest.fixture(scope="module")
def checkpoints(tiny_base, tmp_path_factory):
    """Both stages' checkpoints with random weights: inference must be right whatever the weights."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    save_random_models(tiny_base, [(root / "paragraph-selection", AutoModelForMultipleChoice),
                                   (root / "span-selection", AutoModelForQuestionAnswering)])
    return root


@pytest.fixture(scope="module")
def small_test(tmp_path_factory):
    """The first 12 questions of the sample test file: enough for every code path, quick to run many times."""
    return write_json(tmp_path_factory.mktemp("small") / "test.json", read_json(SAMPLES / "test.json")[:12])


def infer(checkpoints, output_file, *extra, test_file=SAMPLES / "test.json", context_file=SAMPLES / "context.json"):
    return inference.main([
        "--context_file", str(context_file), "--test_file", str(test_file), "--output_file", str(output_file),
        "--mc_model", str(checkpoints / "paragraph-selection"), "--qa_model", str(checkpoints / "span-selection"),
        *map(str, extra),
    ])


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def test_csv_has_every_test_id_once_in_order_with_answers_from_the_candidates(checkpoints, tmp_path):
    answers = infer(checkpoints, tmp_path / "out" / "pred.csv")
    rows = read_csv(tmp_path / "out" / "pred.csv")
    test = read_json(SAMPLES / "test.json")
    context = read_json(SAMPLES / "context.json")
    assert rows[0] == ["id", "answer"]
    assert [row[0] for row in rows[1:]] == [q["id"] for q in test]
    for question, (_, answer) in zip(test, rows[1:]):
        assert answer == answers[question["id"]]
        assert answer and any(answer in context[p] for p in question["paragraphs"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pred.csv"]


def test_exports_give_the_same_predictions_as_eager_and_are_cached(checkpoints, small_test, tmp_path, caplog):
    infer(checkpoints, tmp_path / "eager.csv", test_file=small_test)
    for export in ("torchscript", "torch_export"):
        infer(checkpoints, tmp_path / f"{export}.csv", "--export", export, test_file=small_test)
        assert read_csv(tmp_path / f"{export}.csv") == read_csv(tmp_path / "eager.csv"), export
        cached = sorted(p.name for p in (checkpoints / "span-selection" / "exported").iterdir())
        assert f"SpanScorer-{export}-cpu-float32.json" in cached
        caplog.clear()
        with caplog.at_level("INFO"):
            infer(checkpoints, tmp_path / f"{export}-again.csv", "--export", export, test_file=small_test)
        assert caplog.text.count(f"Reusing the {export} export") == 2
        assert read_csv(tmp_path / f"{export}-again.csv") == read_csv(tmp_path / "eager.csv")


def test_stale_export_is_rebuilt_when_the_weights_change(checkpoints, small_test, tmp_path, caplog):
    copy = tmp_path / "checkpoints"
    shutil.copytree(checkpoints, copy, ignore=shutil.ignore_patterns("exported"))
    infer(copy, tmp_path / "first.csv", "--export", "torchscript", test_file=small_test)
    weights = copy / "span-selection" / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same weights, new modification time: the cache must not be trusted
    with caplog.at_level("INFO"):
        infer(copy, tmp_path / "second.csv", "--export", "torchscript", test_file=small_test)
    assert "Reusing the torchscript export" in caplog.text and "Exported" in caplog.text


def run_sequences(forward, features, pad_token_id, batch_size, overlap=False):
    """batching.run_model over the sequences of `features` (lists of input_ids / token_type_ids); returns the outputs
    in the sequences' order and the StageStats."""
    outputs = [None] * len(features["input_ids"])

    def consume(keys, chunk_outputs):
        for key, output in zip(keys, chunk_outputs):
            assert outputs[key] is None
            outputs[key] = output

    sequences = ((i, np.asarray(ids), np.asarray(features["token_type_ids"][i]))
                 for i, ids in enumerate(features["input_ids"]))
    stats = batching.StageStats("test")
    batching.run_model(sequences, forward, pad_token_id, SimpleNamespace(batch_size=batch_size), torch.device("cpu"),
                        stats, consume, overlap)
    return outputs, stats


def run_counted(count, batch_size, overlap, wait_after=None, first_batch_waits_for=None):
    """batching.run_model over `count` sequences (sequence i holds 1 + i % 5 tokens: 1, 2, ...) with a forward that
    sums each row; checks the sums and returns the number of sequences pulled from the generator when each batch ran.
    With `wait_after`, the generator stops after that many sequences until the first batch has run; with
    `first_batch_waits_for`, the first batch waits until that many sequences were pulled (each at most 20 s)."""
    pulled, pulled_at_each_batch, sums, first_batch_ran = [], [], {}, threading.Event()
    enough_pulled = threading.Event()

    def sequences():
        for i in range(count):
            if len(pulled) == wait_after:
                first_batch_ran.wait(timeout=20)
            pulled.append(i)
            if len(pulled) == first_batch_waits_for:
                enough_pulled.set()
            yield i, np.arange(1, 2 + i % 5), None

    def forward(input_ids, attention_mask, token_type_ids):
        if first_batch_waits_for and not first_batch_ran.is_set():
            enough_pulled.wait(timeout=20)
        pulled_at_each_batch.append(len(pulled))
        first_batch_ran.set()
        return (input_ids.sum(dim=1).float(),)

    def consume(keys, outputs):
        sums.update((key, output[0]) for key, output in zip(keys, outputs))

    batching.run_model(sequences(), forward, 0, SimpleNamespace(batch_size=batch_size), torch.device("cpu"),
                        batching.StageStats("test"), consume, overlap)
    assert sums == {i: sum(range(1, 2 + i % 5)) for i in range(count)}
    return pulled_at_each_batch


def test_with_overlap_the_model_starts_after_two_batches_and_chunks_double(monkeypatch):
    """With the background threads the first chunk is FIRST_CHUNK_BATCHES batches, so that the device starts at once
    instead of after a thousand sequences are prepared, and each next chunk doubles up to SEQUENCES_PER_CHUNK (here
    40); without them every chunk is SEQUENCES_PER_CHUNK (least padding). Every sequence runs once."""
    monkeypatch.setattr(batching, "SEQUENCES_PER_CHUNK", 40)
    assert list(itertools.islice(batching.chunk_sizes(3, overlap=True), 6)) == [6, 12, 24, 40, 40, 40]
    assert list(itertools.islice(batching.chunk_sizes(3, overlap=False), 2)) == [40, 40]
    # The generator holds back the 7th sequence until a batch has run: only a first chunk of 6 lets one run.
    assert run_counted(100, 3, overlap=True, wait_after=6)[0] == 6
    # The preparing thread runs a whole chunk ahead: while the first batch is still running, it prepares the second
    # and third chunks (6 + 12 + 24 sequences) and pulls the fourth.
    assert run_counted(100, 3, overlap=True, first_batch_waits_for=42)[0] >= 42
    assert sorted(set(run_counted(100, 3, overlap=False))) == [40, 80, 100]


def test_pair_scores_equal_the_multiple_choice_logits(checkpoints, tokenizer, sample_context, sample_valid):
    """Stage 1 scores each (question, paragraph) alone; that must equal the model's logits over all candidates."""
    model = AutoModelForMultipleChoice.from_pretrained(checkpoints / "paragraph-selection").eval()
    questions = sample_valid[:3]
    features = prepare_multiple_choice_features(
        to_multiple_choice_examples(questions, sample_context), tokenizer, max_seq_length=96
    )
    scorer = exports.PairScorer(model)
    for i in range(len(questions)):
        pairs = {name: features[name][i] for name in features if name != "labels"}
        scores, _ = run_sequences(scorer, pairs, tokenizer.pad_token_id, 3)
        batch = tokenizer.pad(pairs, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{name: tensor[None] for name, tensor in batch.items()}).logits[0]
        np.testing.assert_allclose([score[0] for score in scores], logits.numpy(), rtol=1e-4, atol=1e-5)


def test_results_do_not_depend_on_batch_size_chunks_or_threads(checkpoints, tokenizer, sample_context, sample_valid,
                                                               monkeypatch):
    """Outputs come back to their own sequence whatever the batch size, the chunking (SEQUENCES_PER_CHUNK, here 7
    so that 4 chunks run) and the background threads of --device cuda; padding stays small."""
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoints / "span-selection").eval()
    questions = sample_valid[:12]
    features = prepare_validation_features(to_squad_examples(questions, sample_context), tokenizer,
                                           max_seq_length=128, doc_stride=32)
    assert len(features["input_ids"]) > 21
    monkeypatch.setattr(batching, "SEQUENCES_PER_CHUNK", 7)
    reference, _ = run_sequences(exports.SpanScorer(model), features, tokenizer.pad_token_id, 1)
    for batch_size, overlap in [(5, False), (5, True), (3, True)]:
        outputs, stats = run_sequences(exports.SpanScorer(model), features, tokenizer.pad_token_id, batch_size, overlap)
        assert stats.sequences == len(features["input_ids"])
        for alone, batched, ids in zip(reference, outputs, features["input_ids"]):
            assert len(alone[0]) == len(batched[0]) == len(ids)
            np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)
            np.testing.assert_allclose(alone[1], batched[1], atol=1e-5)
        assert stats.padding_fraction < 0.1


def test_questions_with_any_number_of_candidates(checkpoints, tmp_path):
    context = ["景宗是朝鮮王朝的君主。", "臺北市是臺灣的首都。", "海明威在1952年出版了老人與海。"]
    test = [{"id": "one", "question": "誰是君主?", "paragraphs": [0]},
            {"id": "three", "question": "哪一年出版?", "paragraphs": [0, 1, 2]},
            {"id": "five", "question": "首都?", "paragraphs": [2, 1, 0, 1, 2]}]
    answers = infer(checkpoints, tmp_path / "pred.csv", test_file=write_json(tmp_path / "test.json", test),
                    context_file=write_json(tmp_path / "context.json", context))
    assert list(answers) == ["one", "three", "five"]
    assert answers["one"] and answers["one"] in context[0]


def test_a_paragraph_without_any_token_gets_an_empty_answer_in_its_row(checkpoints, tmp_path):
    """Zero-width spaces pass the data checks but the tokenizer drops them: no span is possible, and the question
    still gets its row, with an empty answer, from one span model and from an ensemble of two."""
    context = ["\u200b\u200b\u200b", "景宗是朝鮮王朝的君主。"]
    test = [{"id": "nothing", "question": "誰?", "paragraphs": [0]},
            {"id": "king", "question": "誰是君主?", "paragraphs": [1]}]
    files = {"test_file": write_json(tmp_path / "test.json", test),
             "context_file": write_json(tmp_path / "context.json", context)}
    qa = checkpoints / "span-selection"
    for name, qa_models in [("one", [qa]), ("two", [qa, qa])]:
        answers = infer(checkpoints, tmp_path / f"{name}.csv", "--qa_model", *qa_models, **files)
        assert answers["nothing"] == "" and answers["king"] and answers["king"] in context[1]
        assert read_csv(tmp_path / f"{name}.csv") == [["id", "answer"], ["nothing", ""], ["king", answers["king"]]]


# ---------------------------------------------------------------------------------------------------------------------
# run.sh as the grading harness runs it, in a copy of the project


@pytest.fixture(scope="module")
def project_copy(checkpoints, tmp_path_factory):
    copy = tmp_path_factory.mktemp("clone")
    for path in [*ROOT.glob("*.py"), *ROOT.glob("*.sh")]:
        shutil.copy(path, copy / path.name)
    (copy / "models").mkdir()
    for stage in ["paragraph-selection", "span-selection"]:
        shutil.copytree(checkpoints / stage, copy / "models" / stage)
    return copy


def run_sh(project_copy, *args):
    return run_script(project_copy / "run.sh", *args, cwd=project_copy, env={"PYTHON": sys.executable}, check=False)


def test_run_sh_writes_the_submission(project_copy, tmp_path):
    result = run_sh(project_copy, SAMPLES / "context.json", SAMPLES / "test.json", tmp_path / "new" / "pred.csv")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_csv(tmp_path / "new" / "pred.csv")
    assert len(rows) == 1 + len(read_json(SAMPLES / "test.json"))
    assert "paragraph selection: 192 sequences" in result.stderr


def assert_fails_cleanly(result, output, message):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert message in last_line, result.stderr[-2000:]
    assert not output.exists() and not list(output.parent.glob(".*.tmp"))


def test_run_sh_needs_exactly_three_arguments(project_copy, tmp_path):
    result = run_sh(project_copy, SAMPLES / "context.json", SAMPLES / "test.json")
    assert_fails_cleanly(result, tmp_path / "pred.csv", "usage: bash run.sh CONTEXT_JSON TEST_JSON OUTPUT_CSV")


def test_run_sh_rejects_a_bad_test_file_in_one_line(project_copy, tmp_path):
    test_file = write_json(tmp_path / "test.json", [{"id": "a", "question": "問", "paragraphs": [0, 300]}])
    output = tmp_path / "pred.csv"
    result = run_sh(project_copy, SAMPLES / "context.json", test_file, output)
    assert_fails_cleanly(result, output, "record 0 (id 'a'): field 'paragraphs'[1]: paragraph index 300 is out of range")


def infer_expecting_error(checkpoints, output, capsys, test_file=SAMPLES / "test.json", **kwargs):
    """Runs inference.py's entry point in this process; returns the last line it printed to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: infer(checkpoints, output, test_file=test_file, **kwargs))
    assert exit_info.value.code == 1
    assert not output.exists() and not list(output.parent.glob(".*.tmp"))
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "test_content,message",
    [
        ('[{"id": "a", "question": "問"', "not valid JSON (Expecting ',' delimiter at line 1"),
        ("", "file is empty"),
        ('{"id": "a"}', "expected a JSON list of questions, found an object"),
        ("[]", "contains no questions"),
        ('[{"id": "a", "question": "問", "paragraphs": [-1]}]', "paragraph index -1 is out of range"),
        ('[{"id": "a", "paragraphs": [0]}]', "record 0 (id 'a'): field 'question': missing"),
        ('[{"id": "a", "question": " ", "paragraphs": [0]}]', "record 0 (id 'a'): field 'question': is empty"),
        ('[{"id": "a", "question": "問", "paragraphs": [0]}, {"id": "a", "question": "問", "paragraphs": [1]}]',
         "record 1 (id 'a'): field 'id': duplicate of record 0"),
        ('[{"id": "a", "question": "問", "paragraphs": []}]', "field 'paragraphs': is empty"),
    ],
)
def test_bad_test_files_fail_with_one_line(checkpoints, tmp_path, capsys, test_content, message):
    test_file = tmp_path / "test.json"
    test_file.write_text(test_content, encoding="utf-8")
    last_line = infer_expecting_error(checkpoints, tmp_path / "pred.csv", capsys, test_file=test_file)
    assert last_line.startswith(f"error: {test_file}") and message in last_line


def test_non_utf8_test_file(checkpoints, tmp_path, capsys):
    test_file = tmp_path / "test.json"
    test_file.write_bytes('[{"id": "a", "question": "問題", "paragraphs": [0]}]'.encode("big5"))
    assert "not UTF-8" in infer_expecting_error(checkpoints, tmp_path / "pred.csv", capsys, test_file=test_file)


def test_bad_context_file(checkpoints, tmp_path, capsys):
    context = write_json(tmp_path / "context.json", ["段落", ""])
    last_line = infer_expecting_error(checkpoints, tmp_path / "pred.csv", capsys, context_file=context)
    assert last_line == f"error: {context}: paragraph 1: is empty"


def test_unwritable_output_path(checkpoints, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        run_main(lambda: infer(checkpoints, blocker / "pred.csv"))
    assert "cannot create the output folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_main(lambda: infer(checkpoints, tmp_path))
    assert "output path is a directory" in capsys.readouterr().err


def test_missing_or_incomplete_model_directory(checkpoints, tmp_path, capsys):
    incomplete = tmp_path / "checkpoints"
    shutil.copytree(checkpoints, incomplete, ignore=shutil.ignore_patterns("exported", "*.safetensors"))
    last_line = infer_expecting_error(incomplete, tmp_path / "pred.csv", capsys)
    # The span models are read first: how they were trained says whether paragraph selection runs at all.
    assert "span-selection model directory is incomplete: no *.safetensors weights" in last_line
    last_line = infer_expecting_error(tmp_path / "nowhere", tmp_path / "pred.csv", capsys)
    assert "span-selection model directory not found (run `bash download.sh` first" in last_line


def test_failure_keeps_an_existing_submission_intact(checkpoints, tmp_path, capsys):
    output = tmp_path / "pred.csv"
    output.write_text("id,answer\nold,previous run\n", encoding="utf-8")
    bad_test = tmp_path / "test.json"
    bad_test.write_text("{", encoding="utf-8")
    with pytest.raises(SystemExit):
        run_main(lambda: infer(checkpoints, output, test_file=bad_test))
    assert output.read_text(encoding="utf-8") == "id,answer\nold,previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv", "test.json"]
