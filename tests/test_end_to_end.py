"""End-to-end span selection (one model over all of a question's candidates joined): the joined text and its mapping
back to paragraphs, the labels and windows over it, spans that never cross a separator, global attention for
Longformer and block-sparse attention for BigBird, train.sh --end_to_end, and inference.py --end_to_end against
run_qa.py --context_mode candidates (tiny BERT, Longformer and BigBird models with random weights)."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from conftest import SAMPLES, call_failing, read_json, run_script, write_json
from planted import save_choice_model, save_span_model
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    BigBirdConfig,
    LongformerConfig,
)
from transformers.models.longformer.modeling_longformer import (
    _compute_global_attention_mask,
)

import exports
import inference
import run_qa
from adl_data import CANDIDATE_SEPARATOR, join_candidates, load_context, load_questions, to_squad_examples
from cli import run_main
from long_context import keep_block_sparse_attention, question_end_token, question_global_attention
from spans import best_spans_of_windows
from tokens import candidate_separator_ids, join_tokens, question_token_ids, tokenize_texts
from utils_qa import prepare_train_features, prepare_validation_features

# Windows of 256 tokens: block-sparse for the tiny BigBird below (it needs more than (5 + 2 x 2) x 8 = 72 tokens),
# several windows over 4 joined paragraphs of the sample data (about 1,800 characters).
WINDOWS = ["--max_seq_length", "256", "--doc_stride", "64", "--max_question_length", "32"]


@pytest.fixture(scope="module")
def context():
    return load_context(SAMPLES / "context.json")


@pytest.fixture(scope="module")
def labelled_questions(context):
    return load_questions(SAMPLES / "train.json", context, need_answer=True) + load_questions(
        SAMPLES / "valid.json", context, need_answer=True
    )


# ---------------------------------------------------------------------------------------------------------------------
# The joined text


def test_every_character_of_the_joined_text_maps_back_to_its_paragraph_or_is_a_separator(context, labelled_questions):
    for question in labelled_questions[:20]:
        joined = join_candidates(question["paragraphs"], context)
        assert joined.text.count(CANDIDATE_SEPARATOR) == len(question["paragraphs"]) - 1
        in_paragraphs = set()
        for paragraph, start in zip(question["paragraphs"], joined.starts):
            assert joined.text[start : start + len(context[paragraph])] == context[paragraph]
            for offset in range(len(context[paragraph])):
                assert joined.locate(start + offset) == (paragraph, offset)
                in_paragraphs.add(start + offset)
        for offset in [-1, len(joined.text)] + [i for i in range(len(joined.text)) if i not in in_paragraphs]:
            with pytest.raises(ValueError, match="in no paragraph"):
                joined.locate(offset)
        assert len(in_paragraphs) == len(joined.text) - (len(question["paragraphs"]) - 1) * len(CANDIDATE_SEPARATOR)


def test_candidate_examples_carry_the_answer_in_the_joined_text_shuffled_per_question_in_training(
    context, labelled_questions
):
    in_file_order = to_squad_examples(labelled_questions, context, "candidates")
    shuffled = to_squad_examples(labelled_questions, context, "candidates", shuffle_seed=1)
    assert to_squad_examples(labelled_questions, context, "candidates", shuffle_seed=1) == shuffled
    reshuffled = to_squad_examples(labelled_questions, context, "candidates", shuffle_seed=2)
    gold_positions = []
    for i, question in enumerate(labelled_questions):
        texts = [context[p] for p in question["paragraphs"]]
        assert in_file_order["context"][i] == join_candidates(question["paragraphs"], context).text
        assert in_file_order["candidates"][i] == texts and sorted(shuffled["candidates"][i]) == sorted(texts)
        for examples in (in_file_order, shuffled, reshuffled):
            answer, start = examples["answers"][i]["text"][0], examples["answers"][i]["answer_start"][0]
            assert examples["context"][i][start : start + len(answer)] == answer == question["answer"]["text"]
            assert [
                examples["context"][i][s : s + len(t)]
                for s, t in zip(examples["candidate_starts"][i], examples["candidates"][i])
            ] == examples["candidates"][i]
        gold_positions.append(shuffled["candidates"][i].index(context[question["relevant"]]))
    moved = sum(a != b for a, b in zip(shuffled["candidates"], in_file_order["candidates"]))
    assert moved > 0.9 * len(labelled_questions) and shuffled["context"] != reshuffled["context"]
    # Shuffled, the relevant paragraph is anywhere, whatever the file order does.
    assert all(gold_positions.count(position) > 50 for position in range(4))


@pytest.mark.parametrize("max_seq_length,doc_stride", [(128, 32), (4096, 128)])
def test_every_answer_is_labelled_exactly_in_the_windows_of_the_joined_text(
    tokenizer, context, labelled_questions, max_seq_length, doc_stride
):
    """The labelled tokens decode back to the answer's characters; every question has a window with its answer;
    4,096 tokens read each question's 4 joined candidates in one window; no separator token has an offset."""
    examples = to_squad_examples(labelled_questions, context, "candidates", shuffle_seed=3)
    options = {"max_seq_length": max_seq_length, "doc_stride": doc_stride, "max_question_length": 64}
    features = prepare_train_features(examples, tokenizer, **options)
    windows = prepare_validation_features(examples, tokenizer, **options)
    assert features["input_ids"] == windows["input_ids"]
    separator = int(candidate_separator_ids(tokenizer)[0])
    assert tokenizer.convert_ids_to_tokens([separator]) == ["|"]

    labelled = dict.fromkeys(examples["id"], 0)
    for i, example_id in enumerate(windows["example_id"]):
        index = examples["id"].index(example_id)
        offsets, input_ids = windows["offset_mapping"][i], windows["input_ids"][i]
        paragraph_part = range(input_ids.index(tokenizer.sep_token_id) + 1, len(input_ids) - 1)
        assert [p for p in paragraph_part if offsets[p] is None] == [
            p for p in paragraph_part if input_ids[p] == separator
        ]
        start, end = features["start_positions"][i], features["end_positions"][i]
        if start == 0:
            assert end == 0
            continue
        assert examples["context"][index][offsets[start][0] : offsets[end][1]] == examples["answers"][index]["text"][0]
        labelled[example_id] += 1
    assert min(labelled.values()) >= 1
    per_question = len(windows["input_ids"]) / len(examples["id"])
    assert per_question == 1.0 if max_seq_length == 4096 else per_question > 3.0
    if max_seq_length == 4096:
        assert all(sum(1 for t in ids if t == separator) == 3 for ids in windows["input_ids"])


def test_joined_tokens_are_the_tokenizers_own_tokens_of_the_joined_text(tokenizer, context, labelled_questions):
    separator_ids = candidate_separator_ids(tokenizer)
    for question in labelled_questions[:30]:
        joined = join_candidates(question["paragraphs"], context)
        ours = join_tokens(
            tokenize_texts([context[p] for p in question["paragraphs"]], tokenizer), separator_ids, joined.starts
        )
        own = tokenize_texts([joined.text], tokenizer)[0]
        np.testing.assert_array_equal(ours.ids, own.ids)
        in_paragraph = ours.offsets[:, 0] >= 0
        np.testing.assert_array_equal(ours.offsets[in_paragraph], own.offsets[in_paragraph])
        assert all(joined.text[a:b] == "|" for a, b in own.offsets[~in_paragraph])


def brute_force_spans(start_logits, end_logits, char_starts, max_answer_length, n_best_size):
    """Every span whose tokens are all paragraph tokens, best first (ties: start, then length), and the log-sum-exp of
    all their scores."""
    spans = []
    for i in range(len(char_starts)):
        for j in range(i, min(i + max_answer_length, len(char_starts))):
            if char_starts[i : j + 1].min() < 0:
                break
            spans.append((-(start_logits[i] + end_logits[j]), i, j))
    spans.sort()
    scores = np.array([-s for s, _, _ in spans], dtype=np.float64)
    log_partition = np.logaddexp.reduce(scores) if spans else -math.inf
    return [(i, j) for _, i, j in spans[:n_best_size]], scores[:n_best_size], log_partition


def test_no_span_crosses_a_separator_and_the_n_best_and_partition_are_those_of_brute_force():
    generator = np.random.default_rng(0)
    windows = []
    for trial in range(40):
        length = int(generator.integers(12, 70))
        char_starts = np.arange(length, dtype=np.int64) * 2
        char_starts[:5] = -1  # [CLS], question, [SEP]
        char_starts[-1] = -1  # [SEP]
        for separator in generator.choice(np.arange(6, length - 2), size=trial % 4, replace=False):
            char_starts[separator] = -1
        if trial == 39:
            char_starts[:] = -1  # no paragraph token at all
        windows.append(
            (
                generator.normal(0, 2, length).astype(np.float32),
                generator.normal(0, 2, length).astype(np.float32),
                char_starts,
            )
        )
    best = best_spans_of_windows(*(list(column) for column in zip(*windows)), max_answer_length=6, n_best_size=9)
    crossing_allowed = 0
    for (start_logits, end_logits, char_starts), spans in zip(windows, best):
        expected, scores, log_partition = brute_force_spans(start_logits, end_logits, char_starts, 6, 9)
        assert list(zip(spans.start_tokens.tolist(), spans.end_tokens.tolist())) == expected
        np.testing.assert_allclose(spans.scores, scores, rtol=1e-6)
        assert (
            spans.log_partition == pytest.approx(log_partition, rel=1e-5)
            if expected
            else spans.log_partition == -math.inf
        )
        crossing_allowed += any(
            char_starts[i : j + 1].min() < 0
            for i in range(len(char_starts))
            for j in range(i, min(i + 6, len(char_starts)))
            if char_starts[i] >= 0 and char_starts[j] >= 0
        )
    assert crossing_allowed >= 20  # most windows had spans that only the separator rule excludes


# ---------------------------------------------------------------------------------------------------------------------
# Long-context models


def save_long_context_base(tiny_base, output_dir, kind):
    """A config (no weights) and the tiny BERT tokenizer, as the Chinese Longformers and BigBirds of the Hub pair a
    BERT tokenizer with their architecture; for --from_scratch training."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "pad_token_id": tokenizer.pad_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "type_vocab_size": 2,
    }
    if kind == "longformer":
        # Positions count from pad_token_id + 1, as in RoBERTa: 256 tokens need 258 position embeddings.
        config = LongformerConfig(**common, attention_window=16, max_position_embeddings=258)
    else:
        config = BigBirdConfig(
            **common, attention_type="block_sparse", block_size=8, num_random_blocks=2, max_position_embeddings=256
        )
    config.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


@pytest.fixture(scope="module")
def long_context_models(tiny_base, tmp_path_factory):
    """{kind: (base directory, model with random weights, that model saved as a checkpoint)} for "longformer" and
    "big_bird"."""
    root = tmp_path_factory.mktemp("long-context")
    models = {}
    for kind in ("longformer", "big_bird"):
        base = save_long_context_base(tiny_base, root / kind, kind)
        torch.manual_seed(0)
        model = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(base)).eval()
        model.save_pretrained(root / f"{kind}-checkpoint")
        AutoTokenizer.from_pretrained(base).save_pretrained(root / f"{kind}-checkpoint")
        models[kind] = (base, model, root / f"{kind}-checkpoint")
    return models


def test_longformer_gets_global_attention_on_the_question_in_training_and_inference(
    tokenizer, context, labelled_questions, long_context_models
):
    _, model, _ = long_context_models["longformer"]
    pair = tokenizer(["問題是什麼"], ["天地玄黃宇宙洪荒" * 20], return_tensors="pt")
    # Left to itself, the model wants RoBERTa's three separators: with a BERT tokenizer's pairs it fails.
    with pytest.raises(AssertionError, match="exactly three separator tokens"):
        model(**pair)
    end_token = question_end_token(model, tokenizer)
    assert end_token == tokenizer.sep_token_id
    # Where it does find three (RoBERTa pairs: <s> q </s></s> p </s>), ours is the same as its own.
    roberta_pairs = torch.tensor([[0, 5, 6, 7, 2, 2, 9, 9, 9, 2, 1, 1], [0, 5, 2, 2, 9, 9, 9, 9, 9, 9, 9, 2]])
    assert torch.equal(
        question_global_attention(roberta_pairs, 2), _compute_global_attention_mask(roberta_pairs, 2).long()
    )

    # Training: the collator of run_qa.py puts it on [CLS] and the question tokens of every window.
    questions = labelled_questions[:6]
    examples = to_squad_examples(questions, context, "candidates", shuffle_seed=0)
    features = prepare_train_features(examples, tokenizer, 256, 64, max_question_length=32)
    features = [{name: values[i] for name, values in features.items()} for i in range(len(features["input_ids"]))]
    collator = run_qa.DataCollatorForSpanSelection(tokenizer, question_end_token=end_token)
    batch = collator(features)
    question_lengths = [len(ids) for ids in question_token_ids([q["question"] for q in questions], tokenizer, 32)]
    windows = prepare_validation_features(examples, tokenizer, 256, 64, max_question_length=32)
    expected = [question_lengths[examples["id"].index(i)] + 1 for i in windows["example_id"]]
    assert batch["global_attention_mask"].sum(dim=1).tolist() == expected
    assert all(
        row[:count].all() and not row[count:].any() for row, count in zip(batch["global_attention_mask"], expected)
    )

    # Inference: the scorer passes the same mask, and the model really reads it.
    scorer = exports.SpanScorer(model, end_token)
    inputs = (batch["input_ids"][:3], batch["attention_mask"][:3], batch["token_type_ids"][:3])
    with torch.no_grad():
        start_logits, _ = scorer(*inputs)
        explicit = model(
            *inputs[:2], token_type_ids=inputs[2], global_attention_mask=batch["global_attention_mask"][:3]
        )
        local_only = model(
            *inputs[:2],
            token_type_ids=inputs[2],
            global_attention_mask=torch.zeros_like(batch["global_attention_mask"][:3]),
        )
    assert torch.equal(start_logits, explicit.start_logits)
    assert not torch.allclose(start_logits, local_only.start_logits, atol=1e-6)
    assert question_end_token(long_context_models["big_bird"][1], tokenizer) is None  # BigBird finds the question


def test_big_bird_stays_block_sparse_after_a_batch_too_short_for_it(tokenizer, long_context_models):
    base, _, _ = long_context_models["big_bird"]
    long_pair = tokenizer(["問題"], ["天地玄黃宇宙洪荒" * 25], return_tensors="pt")  # 205 tokens
    short_pair = tokenizer(["問題"], ["天地"], return_tensors="pt")
    logits = {}
    for name, hook in (("fresh", False), ("hooked", True), ("plain", False)):
        torch.manual_seed(0)
        model = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(base)).eval()
        if hook:
            keep_block_sparse_attention(model)
        with torch.no_grad():
            if name != "fresh":
                model(**short_pair)
                assert model.base_model.attention_type == "original_full"
            logits[name] = model(**long_pair).start_logits
        assert model.base_model.attention_type == ("original_full" if name == "plain" else "block_sparse")
    assert torch.equal(logits["hooked"], logits["fresh"])
    assert not torch.allclose(logits["plain"], logits["fresh"], atol=1e-6)  # full attention is another computation


# ---------------------------------------------------------------------------------------------------------------------
# The scripts: run_qa.py --context_mode candidates, train.sh --end_to_end, plot_curves.py, inference.py --end_to_end


def call(main, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["script", *map(str, args)])
    run_main(main)


def infer_end_to_end(model, test_file, output_file, *flags, context_file=SAMPLES / "context.json"):
    return inference.main(
        [
            "--end_to_end",
            "--qa_model",
            str(model),
            "--context_file",
            str(context_file),
            "--test_file",
            str(test_file),
            "--output_file",
            str(output_file),
            *map(str, flags),
        ]
    )


@pytest.fixture(scope="module")
def bert_run(tiny_base, tmp_path_factory):
    """A tiny BERT trained end to end through train.sh --end_to_end, for a few steps (curves and table included)."""
    root = tmp_path_factory.mktemp("train-sh-end-to-end")
    data = root / "data"
    data.mkdir()
    for name in ("context.json", "train.json"):
        (data / name).write_bytes((SAMPLES / name).read_bytes())
    write_json(data / "valid.json", read_json(SAMPLES / "valid.json")[:6])
    result = run_script(
        "train.sh", "--data_dir", data, "--models", tiny_base, "--from_scratch", "--end_to_end",
        "--output_root", root / "outputs", "--max_train_samples", "16", "--span_flags", " ".join(WINDOWS),
        "--", "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "8",
        "--disable_tqdm", "true", env={"PYTHON": sys.executable},  # not whatever `python` is first on PATH
    )  # fmt: skip
    return root / "outputs" / f"{tiny_base.name}-scratch" / "end-to-end", data, result


def test_train_sh_end_to_end_trains_one_model_over_the_joined_candidates_and_plots_it(bert_run, tiny_base):
    run, _, result = bert_run
    outputs = run.parent.parent
    assert sorted(p.name for p in outputs.iterdir()) == ["curves", f"{tiny_base.name}-scratch"]
    assert sorted(p.name for p in run.parent.iterdir()) == ["end-to-end"]
    assert "train: 16 questions" in result.stdout and "context: candidates" in result.stdout
    results = read_json(run / "all_results.json")
    assert results["eval_samples"] == 6 and 0.0 <= results["eval_exact_match"] <= results["eval_f1"] <= 100.0
    assert read_json(run / "trainer_state.json")["global_step"] == 4
    table = (outputs / "curves" / "end-to-end" / "results.md").read_text(encoding="utf-8")
    assert f"| {tiny_base.name}-scratch | 4 |" in table and "final EM (%)" in table
    assert (outputs / "curves" / "end-to-end" / "exact_match.png").exists()


def test_train_sh_end_to_end_refuses_paragraph_flags(tiny_base):
    result = run_script("train.sh", "--data_dir", SAMPLES, "--models", tiny_base, "--end_to_end",
                        "--paragraph_flags", "--seed 1", check=False, env={"PYTHON": sys.executable})  # fmt: skip
    assert result.returncode == 2
    assert "error: --task qa --end_to_end has no paragraph-selection stage (its stages: end-to-end)" in result.stderr
    result = run_script("train.sh", "--task", "intent-slot", "--data_dir", SAMPLES, "--models", tiny_base, "--end_to_end",
                        check=False, env={"PYTHON": sys.executable})  # fmt: skip
    assert result.returncode == 2 and "error: --end_to_end is for --task qa" in result.stderr


def test_inference_end_to_end_gives_the_csv_and_metrics_of_run_qa(bert_run, tmp_path, monkeypatch):
    model, data, _ = bert_run
    test = write_json(tmp_path / "test.json", read_json(SAMPLES / "test.json")[:8])
    call(run_qa.main, monkeypatch, "--model_name_or_path", model, "--context_file", data / "context.json",
         "--test_file", test, "--do_predict", "--context_mode", "candidates", "--output_dir", tmp_path / "run_qa",
         "--report_to", "none", *WINDOWS)  # fmt: skip
    answers = infer_end_to_end(model, test, tmp_path / "pred.csv", *WINDOWS, context_file=data / "context.json")
    assert (tmp_path / "pred.csv").read_bytes() == (tmp_path / "run_qa" / "pred.csv").read_bytes()
    assert len(set(answers.values())) > 3  # not one answer for every question

    # On the labelled questions that train.sh evaluated: the same exact match and F1 as run_qa.py's evaluation.
    infer_end_to_end(model, data / "valid.json", tmp_path / "valid.csv", *WINDOWS, context_file=data / "context.json")
    metrics = read_json(tmp_path / "valid.csv.metrics.json")
    evaluated = read_json(model / "all_results.json")
    assert metrics["questions"] == 6
    assert metrics["exact_match"] == pytest.approx(evaluated["eval_exact_match"])
    assert metrics["f1"] == pytest.approx(evaluated["eval_f1"]) and metrics["f1"] > 0.0
    assert metrics["paragraph_selection_accuracy"] == metrics["answer_paragraph_accuracy"]


@pytest.mark.parametrize("kind", ["longformer", "big_bird"])
def test_long_context_models_train_and_inference_end_to_end_equals_run_qa(
    kind, long_context_models, tmp_path, monkeypatch
):
    base, _, _ = long_context_models[kind]
    test = write_json(tmp_path / "test.json", read_json(SAMPLES / "test.json")[:6])
    call(run_qa.main, monkeypatch, "--model_name_or_path", base, "--from_scratch", "--context_file",
         SAMPLES / "context.json", "--train_file", SAMPLES / "train.json", "--test_file", test, "--do_train",
         "--do_predict", "--context_mode", "candidates", "--max_train_samples", "4", "--max_steps", "2",
         "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--output_dir", tmp_path / "model",
         "--report_to", "none", "--seed", "5", *WINDOWS)  # fmt: skip
    answers = infer_end_to_end(tmp_path / "model", test, tmp_path / "pred.csv", "--batch_size", 4, *WINDOWS)
    assert (tmp_path / "pred.csv").read_bytes() == (tmp_path / "model" / "pred.csv").read_bytes()
    assert len(answers) == 6 and all(answers.values())


# ---------------------------------------------------------------------------------------------------------------------
# Answers mapped back to their paragraphs: a planted span model (tests/planted.py) that prefers 甲...乙, then 丙...丁


@pytest.mark.parametrize(
    "decoding",
    [[], ["--export", "torchscript"], ["--export", "torch_export", "--overlap", "on"]],
    ids=["eager", "torchscript", "torch-export-threads"],
)  # fmt: skip
def test_answers_come_back_with_their_paragraph_and_offsets_and_never_across_two_paragraphs(
    tiny_base, tmp_path, decoding
):
    span_model = save_span_model(tiny_base, tmp_path / "qa", {"甲": 8.0, "丙": 6.0}, {"乙": 8.0, "丁": 6.0})
    ordinary = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽雲騰致雨露結為霜金生麗水玉出崑岡"
    context = [(ordinary * 2)[3 * i : 3 * i + 40] for i in range(8)]  # 8 paragraphs of 40 ordinary characters
    context[5] = context[5][:20] + "甲金生乙" + context[5][24:]  # the 4th candidate of question "fourth"
    context[6] = context[6][:39] + "甲"  # ends in 甲 ...
    context[7] = "乙" + context[7][1:30] + "丙列丁" + context[7][33:]  # ... and the next one starts with 乙
    questions = [
        {"id": "fourth", "question": "問", "paragraphs": [0, 1, 2, 5], "relevant": 5,
         "answer": {"text": "甲金生乙", "start": 20}},
        {"id": "no-crossing", "question": "問", "paragraphs": [3, 6, 7], "relevant": 7,
         "answer": {"text": "丙列丁", "start": 30}},
    ]  # fmt: skip
    answers = infer_end_to_end(
        span_model, write_json(tmp_path / "valid.json", questions), tmp_path / "pred.csv",
        "--analysis_dir", tmp_path / "analysis", "--max_seq_length", 48, "--doc_stride", 16, "--max_question_length", 8,
        *decoding, context_file=write_json(tmp_path / "context.json", context),
    )  # fmt: skip
    # 甲|乙 across paragraphs 6 and 7 would score 16; the best span inside one paragraph is 丙列丁 (12).
    assert answers == {"fourth": "甲金生乙", "no-crossing": "丙列丁"}
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "analysis" / "errors.jsonl").read_text().splitlines())}
    assert records["fourth"]["answer_paragraph"] == 5
    assert records["fourth"]["prediction"] == {"text": "甲金生乙", "start": 20}
    assert records["no-crossing"]["answer_paragraph"] == 7
    assert records["no-crossing"]["prediction"] == {"text": "丙列丁", "start": 30}
    for record in records.values():
        for answer in record["nbest"]:
            assert context[answer["paragraph"]][answer["start"] :].startswith(answer["text"])
            assert "|" not in answer["text"]
    assert read_json(tmp_path / "pred.csv.metrics.json")["exact_match"] == 100.0


# ---------------------------------------------------------------------------------------------------------------------
# Bad input


def test_end_to_end_refuses_a_paragraph_selection_model_and_missing_or_mismatched_models_in_one_line(
    tiny_base, long_context_models, tmp_path, monkeypatch, capsys
):
    mc_model = save_choice_model(tiny_base, tmp_path / "mc", marker="標")
    qa_model = save_span_model(tiny_base, tmp_path / "qa", {"甲": 1.0}, {"乙": 1.0})
    flags = ["--end_to_end", "--context_file", SAMPLES / "context.json", "--test_file", SAMPLES / "test.json",
             "--output_file", tmp_path / "out" / "pred.csv"]  # fmt: skip
    cases = [
        (["--mc_model", mc_model, "--qa_model", mc_model], 2,
         "error: --end_to_end reads every candidate with the --qa_model alone: drop --mc_model (see --help)"),
        (["--qa_model", mc_model, "--top_k_paragraphs", 2], 2,
         "error: --end_to_end reads every candidate: --top_k_paragraphs is for the two stages (see --help)"),
        (["--qa_model", tmp_path / "missing"], 1,
         f"error: {tmp_path / 'missing'}: span-selection model directory not found"),
        (["--qa_model", mc_model], 1,
         f"error: {mc_model}: a BertForMultipleChoice checkpoint, not a span-selection model"),
        (["--qa_model", qa_model, "--max_seq_length", 4096], 1,
         f"error: {qa_model}: span-selection model: --max_seq_length 4096 is more than the model reads (512 tokens)"),
    ]  # fmt: skip
    for kind in ("longformer", "big_bird"):
        checkpoint = long_context_models[kind][2]
        message = (f"error: {checkpoint}: --export torchscript: a {kind} model's attention follows the length of each "
                   "batch, which an export would fix at one length: use --export none")  # fmt: skip
        cases.append((["--qa_model", checkpoint, "--export", "torchscript", *WINDOWS], 1, message))
    for extra, status, message in cases:
        code, line = call_failing(inference.main, ["inference.py", *flags, *extra], monkeypatch, capsys)
        assert code == status and message in line, line
    assert not (tmp_path / "out").exists()


def test_run_qa_refuses_an_unknown_context_mode(tiny_base, tmp_path, monkeypatch, capsys):
    argv = [
        "run_qa.py",
        "--model_name_or_path",
        tiny_base,
        "--do_predict",
        "--test_file",
        SAMPLES / "test.json",
        "--context_file",
        SAMPLES / "context.json",
        "--context_mode",
        "all",
        "--output_dir",
        tmp_path / "out",
    ]
    code, line = call_failing(run_qa.main, argv, monkeypatch, capsys)
    assert code == 2 and "--context-mode: invalid choice: 'all' (choose from 'relevant', 'candidates')" in line
    assert not (tmp_path / "out").exists()
