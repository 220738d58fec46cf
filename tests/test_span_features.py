"""Span selection: windows, answer labels, offsets and post-processing, checked character by character."""

import builtins
import json
import math
import warnings

import numpy as np
import pytest

import outputs
from adl_data import to_squad_examples
from spans import best_spans_of_windows, merge_character_spans, paragraph_runs, token_runs
from tokens import truncate_questions
from utils_qa import postprocess_qa_predictions, prepare_train_features, prepare_validation_features


def squad_examples(questions, context):
    return {
        "id": [q["id"] for q in questions],
        "question": [q["question"] for q in questions],
        "context": [context[q["relevant"]] for q in questions],
        "answers": [{"text": [q["answer"]["text"]], "answer_start": [q["answer"]["start"]]} for q in questions],
    }


@pytest.fixture(scope="module")
def hard_examples(sample_context):
    """Answers that stress the offsets: far into a paragraph of several windows, Latin words and digits, answers
    next to spaces, full-width characters, and a 500-character question."""
    long_paragraph = "".join(sample_context[:8])
    cases = [
        ("late", "最後一段在哪裡?", long_paragraph, long_paragraph[-30:-12]),
        ("middle", "中間?", long_paragraph, long_paragraph[1500:1520]),
        ("latin", "誰寫了?", "這本書 The Old Man and the Sea 是海明威 Ernest Hemingway 在1951年寫的。", "Ernest Hemingway"),
        ("digits", "哪一年?", "這本書是海明威在1951年寫的，1952年出版。", "1952"),
        ("spaces", "地點?", "會議在  臺北市 信義區 舉行。", "臺北市 信義區"),
        ("fullwidth", "編號?", "型號為ＡＢＣ－１２３的機器。", "ＡＢＣ－１２３"),
        ("long-question", "問" * 500, "答案就是這個。" + long_paragraph, "這個"),
    ]
    examples = {"id": [], "question": [], "context": [], "answers": []}
    for name, question, paragraph, answer in cases:
        start = paragraph.index(answer) if name != "late" else len(paragraph) - 30
        assert paragraph[start : start + len(answer)] == answer
        examples["id"].append(name)
        examples["question"].append(question)
        examples["context"].append(paragraph)
        examples["answers"].append({"text": [answer], "answer_start": [start]})
    return examples


def all_examples(sample_context, sample_train, sample_valid, hard_examples):
    sample = squad_examples(sample_train + sample_valid, sample_context)
    return {key: sample[key] + hard_examples[key] for key in sample}


@pytest.mark.parametrize("max_seq_length,doc_stride", [(512, 128), (128, 32)])
def test_train_labels_decode_back_to_the_gold_answer(
    tokenizer, sample_context, sample_train, sample_valid, hard_examples, max_seq_length, doc_stride
):
    examples = all_examples(sample_context, sample_train, sample_valid, hard_examples)
    features = prepare_train_features(examples, tokenizer, max_seq_length, doc_stride, max_question_length=64)
    train_windows = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride, max_question_length=64)
    assert features["input_ids"] == train_windows["input_ids"]

    windows_with_answer = {example_id: 0 for example_id in examples["id"]}
    for i, example_id in enumerate(train_windows["example_id"]):
        start, end = features["start_positions"][i], features["end_positions"][i]
        assert len(features["input_ids"][i]) <= max_seq_length
        if start == 0:
            assert end == 0
            continue
        index = examples["id"].index(example_id)
        offsets = train_windows["offset_mapping"][i]
        decoded = examples["context"][index][offsets[start][0] : offsets[end][1]]
        assert decoded == examples["answers"][index]["text"][0], example_id
        windows_with_answer[example_id] += 1
    assert all(count >= 1 for count in windows_with_answer.values()), windows_with_answer
    if max_seq_length == 128:
        assert windows_with_answer["late"] >= 1 and len(train_windows["example_id"]) > 2 * len(examples["id"])


def test_windows_cover_every_paragraph_character(tokenizer, hard_examples):
    features = prepare_validation_features(hard_examples, tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    for index, (example_id, paragraph) in enumerate(zip(hard_examples["id"], hard_examples["context"])):
        covered = np.zeros(len(paragraph), dtype=bool)
        windows = [i for i, e in enumerate(features["example_id"]) if e == example_id]
        for i in windows:
            for offset in features["offset_mapping"][i]:
                if offset is not None:
                    covered[offset[0] : offset[1]] = True
        uncovered = [paragraph[j] for j in np.flatnonzero(~covered)]
        assert all(ch.isspace() for ch in uncovered), (example_id, uncovered[:10])
        # Consecutive windows overlap, so an answer up to doc_stride tokens long always fits in one of them.
        for previous, following in zip(windows, windows[1:]):
            last_of_previous = max(o[1] for o in features["offset_mapping"][previous] if o is not None)
            first_of_following = min(o[0] for o in features["offset_mapping"][following] if o is not None)
            assert first_of_following < last_of_previous


def tokenizer_own_windows(examples, tokenizer, max_seq_length, doc_stride, max_question_length):
    """The windows as the tokenizer itself cuts a (question, paragraph) pair: what the assembled windows must equal."""
    questions = truncate_questions(examples["question"], tokenizer, max_question_length)
    return tokenizer(questions, list(examples["context"]), truncation="only_second", max_length=max_seq_length,
                     stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)


@pytest.mark.parametrize("max_seq_length,doc_stride,pad", [(512, 128, False), (64, 16, False), (48, 0, True)])
def test_windows_assembled_from_tokenized_pieces_equal_the_tokenizers_own(
    tokenizer, sample_context, sample_train, hard_examples, max_seq_length, doc_stride, pad
):
    """Each paragraph is tokenized once and the windows are assembled from the pieces: input ids, token types,
    attention mask and offsets must be exactly those of the tokenizer's own pair encoding, window by window."""
    sample = squad_examples(sample_train[:60], sample_context)
    examples = {key: sample[key] + hard_examples[key] for key in sample}
    features = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride, pad_to_max_length=pad,
                                           max_question_length=16)
    reference = tokenizer_own_windows(examples, tokenizer, max_seq_length, doc_stride, max_question_length=16)
    assert len(features["input_ids"]) == len(reference["input_ids"])
    assert features["example_id"] == [examples["id"][i] for i in reference["overflow_to_sample_mapping"]]
    for i, offsets in enumerate(reference["offset_mapping"]):
        length = len(reference["input_ids"][i])
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            assert features[name][i][:length] == reference[name][i], (name, i)
        expected = [tuple(o) if s == 1 else None for o, s in zip(offsets, reference.sequence_ids(i))]
        assert [tuple(o) if o is not None else None for o in features["offset_mapping"][i][:length]] == expected
        if pad:
            assert len(features["input_ids"][i]) == max_seq_length
            assert features["attention_mask"][i][length:] == [0] * (max_seq_length - length)
            assert features["input_ids"][i][length:] == [tokenizer.pad_token_id] * (max_seq_length - length)
    assert sorted(set(features["example_id"])) == sorted(examples["id"])


def gold_token_logits(features, examples):
    """Logits that peak at the tokens holding the gold answer's first and last character, found independently of
    the labelling code: straight from the offsets."""
    start_logits, end_logits = [], []
    for i, example_id in enumerate(features["example_id"]):
        index = examples["id"].index(example_id)
        answer_start = examples["answers"][index]["answer_start"][0]
        answer_end = answer_start + len(examples["answers"][index]["text"][0])
        starts = np.full(len(features["input_ids"][i]), -10.0)
        ends = np.full(len(features["input_ids"][i]), -10.0)
        offsets = features["offset_mapping"][i]
        holds_start = [t for t, o in enumerate(offsets) if o is not None and o[0] <= answer_start < o[1]]
        holds_end = [t for t, o in enumerate(offsets) if o is not None and o[0] < answer_end <= o[1]]
        if holds_start and holds_end:
            starts[holds_start[0]] = 10.0
            ends[holds_end[0]] = 10.0
        start_logits.append(starts)
        end_logits.append(ends)
    return start_logits, end_logits


@pytest.mark.parametrize("max_seq_length,doc_stride", [(512, 128), (96, 24)])
def test_gold_logits_recover_the_gold_answer_text(
    tokenizer, sample_context, sample_train, sample_valid, hard_examples, max_seq_length, doc_stride
):
    examples = all_examples(sample_context, sample_train, sample_valid, hard_examples)
    features = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride, max_question_length=32)
    answers = postprocess_qa_predictions(examples, features, gold_token_logits(features, examples), max_answer_length=64)
    assert list(answers) == examples["id"]
    wrong = [
        (example_id, answers[example_id], gold["text"][0])
        for example_id, gold in zip(examples["id"], examples["answers"])
        if answers[example_id] != gold["text"][0]
    ]
    assert wrong == []


def test_postprocess_accepts_padded_arrays_and_writes_readable_json(tokenizer, hard_examples, tmp_path):
    features = prepare_validation_features(hard_examples, tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    start_logits, end_logits = gold_token_logits(features, hard_examples)
    width = max(map(len, start_logits)) + 7
    padded = [np.stack([np.pad(x, (0, width - len(x)), constant_values=-100.0) for x in logits]) for logits in (start_logits, end_logits)]
    answers = postprocess_qa_predictions(hard_examples, features, padded, output_dir=str(tmp_path), prefix="eval")
    assert answers["latin"] == "Ernest Hemingway"
    text = (tmp_path / "eval_predictions.json").read_text(encoding="utf-8")
    assert "臺北市 信義區" in text and "\\u" not in text
    assert (tmp_path / "eval_nbest_predictions.json").exists()


def brute_force_best_span(start_logits, end_logits, offsets, max_answer_length):
    best = None
    for s, start_offset in enumerate(offsets):
        for e in range(s, min(s + max_answer_length, len(offsets))):
            if start_offset is None or offsets[e] is None:
                continue
            score = start_logits[s] + end_logits[e]
            if best is None or score > best[0]:
                best = (score, start_offset[0], offsets[e][1])
    return best


def test_postprocess_finds_the_best_valid_span_of_all_windows(tokenizer, hard_examples):
    features = prepare_validation_features(hard_examples, tokenizer, max_seq_length=48, doc_stride=12, max_question_length=12)
    rng = np.random.default_rng(0)
    start_logits = [rng.normal(size=len(ids)) for ids in features["input_ids"]]
    end_logits = [rng.normal(size=len(ids)) for ids in features["input_ids"]]
    for max_answer_length in (1, 5, 30):
        answers = postprocess_qa_predictions(
            hard_examples, features, (start_logits, end_logits), n_best_size=3, max_answer_length=max_answer_length
        )
        for example_id, paragraph in zip(hard_examples["id"], hard_examples["context"]):
            candidates = [
                brute_force_best_span(start_logits[i], end_logits[i], features["offset_mapping"][i], max_answer_length)
                for i, e in enumerate(features["example_id"])
                if e == example_id
            ]
            _, start, end = max(candidates, key=lambda c: c[0])
            assert answers[example_id] == paragraph[start:end]


def brute_force_nbest(start_logits, end_logits, offsets, max_answer_length):
    """Every valid span of one window as (score, char start, char end)."""
    spans = []
    for s, start_offset in enumerate(offsets):
        for e in range(s, min(s + max_answer_length, len(offsets))):
            if start_offset is not None and offsets[e] is not None:
                spans.append((float(start_logits[s] + end_logits[e]), start_offset[0], offsets[e][1]))
    return spans


@pytest.mark.parametrize("n_best_size", [1, 4, 25])
def test_the_nbest_list_is_the_n_best_spans_of_all_windows(tokenizer, hard_examples, tmp_path, n_best_size):
    features = prepare_validation_features(hard_examples, tokenizer, max_seq_length=48, doc_stride=12, max_question_length=12)
    rng = np.random.default_rng(1)
    start_logits = [rng.normal(size=len(ids)).astype(np.float32) for ids in features["input_ids"]]
    end_logits = [rng.normal(size=len(ids)).astype(np.float32) for ids in features["input_ids"]]
    postprocess_qa_predictions(hard_examples, features, (start_logits, end_logits), n_best_size=n_best_size,
                               max_answer_length=6, output_dir=str(tmp_path))
    nbest = json.loads((tmp_path / "nbest_predictions.json").read_text(encoding="utf-8"))
    for example_id, paragraph in zip(hard_examples["id"], hard_examples["context"]):
        spans = [span for i, e in enumerate(features["example_id"]) if e == example_id
                 for span in brute_force_nbest(start_logits[i], end_logits[i], features["offset_mapping"][i], 6)]
        # A span found in two overlapping windows is listed once, with its better score.
        best_of_span = {}
        for score, start, end in spans:
            best_of_span[(start, end)] = max(score, best_of_span.get((start, end), -np.inf))
        expected = sorted(((score, start, end) for (start, end), score in best_of_span.items()),
                          key=lambda span: -span[0])[:n_best_size]
        got = nbest[example_id]
        assert len(got) == min(n_best_size, len(best_of_span))
        assert [c["score"] for c in got] == pytest.approx([span[0] for span in expected], abs=1e-5)
        assert [c["text"] for c in got] == [paragraph[start:end] for _, start, end in expected]
        assert sum(c["probability"] for c in got) == pytest.approx(1.0)


def test_answers_on_the_first_or_last_token_of_a_window_are_labelled_with_their_tokens(tokenizer):
    """The answer's first character is the window's first paragraph character, or its last one the window's last, or
    the paragraph is one character long: the labels are the answer's tokens, not [CLS] (position 0)."""
    examples = {"id": ["first", "last", "one"], "question": ["問"] * 3, "context": ["景宗王", "景宗王", "景"],
                "answers": [{"text": ["景宗"], "answer_start": [0]}, {"text": ["宗王"], "answer_start": [1]},
                            {"text": ["景"], "answer_start": [0]}]}
    features = prepare_train_features(examples, tokenizer, max_seq_length=32, doc_stride=8, max_question_length=8)
    # [CLS] 問 [SEP] then the paragraph from position 3.
    assert list(zip(features["start_positions"], features["end_positions"])) == [(3, 4), (4, 5), (3, 3)]
    # Padded to max_seq_length on request (the labels stay): [CLS] 問 [SEP] 景 宗 王 [SEP] is 7 tokens of 32.
    padded = prepare_train_features(examples, tokenizer, max_seq_length=32, doc_stride=8, max_question_length=8,
                                    pad_to_max_length=True)
    own = tokenizer(examples["question"], examples["context"], padding="max_length", max_length=32)
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert padded[name] == own[name], name
    assert [sum(mask) for mask in padded["attention_mask"]] == [7, 7, 5]
    assert list(zip(padded["start_positions"], padded["end_positions"])) == [(3, 4), (4, 5), (3, 3)]
    # Evaluation windows get the same labels when the examples have answers (the evaluation loss), none without.
    validation = prepare_validation_features(examples, tokenizer, max_seq_length=32, doc_stride=8,
                                             max_question_length=8)
    assert list(zip(validation["start_positions"], validation["end_positions"])) == [(3, 4), (4, 5), (3, 3)]
    unlabelled = prepare_validation_features({key: examples[key] for key in ("id", "question", "context")}, tokenizer,
                                             max_seq_length=32, doc_stride=8, max_question_length=8)
    assert "start_positions" not in unlabelled and unlabelled["example_id"] == ["first", "last", "one"]


def test_tied_spans_keep_the_windows_order_however_many_there_are():
    """Stable beyond the 16 elements that numpy sorts by insertion (stable by chance) in its default sort."""
    starts = np.arange(40, dtype=np.int64)
    scores = np.array([1.0, 2.0, 2.0, 1.0, 2.0] * 8, dtype=np.float32)
    first_window, second_window = (starts[:20], starts[:20] + 1, scores[:20]), (starts[20:], starts[20:] + 1, scores[20:])
    merged_starts, _, merged_scores = merge_character_spans([first_window, second_window], n_best_size=40)
    assert merged_starts.tolist() == [i for i in range(40) if scores[i] == 2.0] + [i for i in range(40) if scores[i] == 1.0]
    assert merged_scores.tolist() == sorted(scores.tolist(), reverse=True)


def test_logits_far_from_zero_give_exact_log_partitions_and_probabilities(tmp_path):
    """Windows of one chunk whose logits are about +1000 and -1000 (e^1000 overflows even float64): each window's
    log-sum-exp is shifted by its own maximum (a shift shared by the chunk would underflow the second window to -inf),
    and the n-best probabilities by the best score (no overflow to inf / inf = nan)."""
    rng = np.random.default_rng(3)
    start_logits = [rng.normal(size=12) + 1000, rng.normal(size=12) - 1000]
    end_logits = [rng.normal(size=12) + 1000, rng.normal(size=12) - 1000]
    char_starts = [np.where((np.arange(12) > 0) & (np.arange(12) < 11), np.arange(12), -1)] * 2
    spans = best_spans_of_windows(start_logits, end_logits, char_starts, 4, 5)
    for w in range(2):
        s, e = start_logits[w].astype(np.float32).astype(np.float64), end_logits[w].astype(np.float32).astype(np.float64)
        terms = [s[i] + e[j] for i in range(1, 11) for j in range(i, min(i + 4, 11))]
        expected = max(terms) + math.log(math.fsum(math.exp(t - max(terms)) for t in terms))
        assert spans[w].log_partition == pytest.approx(expected, abs=1e-3)
    examples = {"id": ["high"], "context": ["甲" * 10]}
    features = {"example_id": ["high"], "offset_mapping": [[None] + [(i, i + 1) for i in range(10)] + [None]]}
    postprocess_qa_predictions(examples, features, ([start_logits[0]], [end_logits[0]]), max_answer_length=4,
                               output_dir=str(tmp_path))
    probabilities = [c["probability"] for c in json.loads((tmp_path / "nbest_predictions.json").read_text())["high"]]
    assert all(math.isfinite(p) for p in probabilities) and sum(probabilities) == pytest.approx(1.0)


def test_windows_without_any_valid_span_raise_no_numpy_warning():
    """A window without paragraph tokens, and starts with no valid end: log(0) = -inf is expected there, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spans = best_spans_of_windows([np.zeros(4, dtype=np.float32)] * 2, [np.zeros(4, dtype=np.float32)] * 2,
                                      [np.full(4, -1), np.array([-1, 0, 1, -1])], 1, 5)
    assert spans[0].log_partition == -math.inf and spans[0].scores.tolist() == []
    assert spans[1].log_partition == pytest.approx(math.log(2)) and spans[1].start_tokens.tolist() == [1, 2]


def test_postprocess_returns_empty_answer_when_no_span_is_possible():
    examples = {"id": ["q"], "context": ["段落"]}
    features = {"example_id": ["q"], "offset_mapping": [[None, None, None]]}
    answers = postprocess_qa_predictions(examples, features, ([np.zeros(3)], [np.zeros(3)]))
    assert answers == {"q": ""}


def test_postprocess_reads_the_paragraph_tokens_wherever_they_are_in_a_window():
    """A window with a single paragraph token (a one-character paragraph), and paragraph tokens that are not one run
    (offset_mapping allows None anywhere): a token outside the paragraph splits them into runs, as a separator does
    between joined candidates (spans.token_runs), and no span crosses it; the special tokens' high logits are never
    an answer."""
    examples = {"id": ["one", "gaps"], "context": ["景", "景宗王"]}
    features = {"example_id": ["one", "gaps"],
                "offset_mapping": [[None, (0, 1), None], [None, (0, 1), None, (1, 2), (2, 3), None]]}
    start_logits = [np.array([9.0, 1.0, 9.0]), np.array([9.0, 0.0, 9.0, 2.0, 0.0, 9.0])]
    end_logits = [np.array([9.0, 1.0, 9.0]), np.array([9.0, 0.0, 9.0, 0.0, 3.0, 9.0])]
    answers = postprocess_qa_predictions(examples, features, (start_logits, end_logits))
    assert answers == {"one": "景", "gaps": "宗王"}
    # Two tokens apart (as many paragraph tokens, 2, as positions between the first and the one before the last): the
    # span 景...王 would score 2 + 3, but it crosses the gap; the best span inside one run is 王 (0 + 3).
    features["offset_mapping"][1] = [None, (0, 1), None, None, (2, 3), None]
    start_logits[1], end_logits[1] = np.array([9.0, 2.0, 9.0, 9.0, 0.0, 9.0]), np.array([9.0, 0.0, 9.0, 9.0, 3.0, 9.0])
    assert postprocess_qa_predictions(examples, features, (start_logits, end_logits)) == {"one": "景", "gaps": "王"}


# One window [CLS] 景 宗 王 [SEP]: the paragraph tokens are positions 1 to 3.
ONE_WINDOW = [None, (0, 1), (1, 2), (2, 3), None]


def test_the_nbest_entries_give_the_spans_offsets_logits_and_probabilities(tmp_path):
    """Spans (start token, end token): (1, 2) scores 2 + 3 = 5, (2, 2) 1 + 3 = 4, the others less; [CLS] and [SEP]
    score 18 but are no answer. An example that no window refers to still gets its answer, empty."""
    examples = {"id": ["q", "no window"], "context": ["景宗王", "甲"]}
    features = {"example_id": ["q"], "offset_mapping": [ONE_WINDOW]}
    start_logits, end_logits = [np.array([9.0, 2.0, 1.0, 0.0, 9.0])], [np.array([9.0, 0.0, 3.0, 1.0, 9.0])]
    answers = postprocess_qa_predictions(
        examples, features, (start_logits, end_logits), n_best_size=2, max_answer_length=3, output_dir=str(tmp_path)
    )
    assert answers == {"q": "景宗", "no window": ""}
    nbest = json.loads((tmp_path / "nbest_predictions.json").read_text(encoding="utf-8"))
    best, second = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))
    assert nbest == {
        "q": [
            {"score": 5.0, "start_logit": 2.0, "end_logit": 3.0, "start": 0, "end": 2, "text": "景宗",
             "probability": pytest.approx(best)},
            {"score": 4.0, "start_logit": 1.0, "end_logit": 3.0, "start": 1, "end": 2, "text": "宗",
             "probability": pytest.approx(second)},
        ],
        "no window": [],
    }


def test_take_along_axis_is_called_with_its_axis_as_numpy_below_2_3_requires(monkeypatch):
    """NumPy 2.0-2.2 (requirements.txt allows numpy>=2.0) has no default axis for np.take_along_axis: a call without
    axis= is a TypeError there and works on NumPy 2.3+ only. The old signature is put in place and the spans of
    ONE_WINDOW are searched through it (test_environments.py does the same through inference.py and run_qa.py)."""
    original, calls = np.take_along_axis, []

    def take_along_axis(arr, indices, axis):  # NumPy < 2.3: axis has no default
        calls.append(axis)
        return original(arr, indices, axis=axis)

    monkeypatch.setattr(np, "take_along_axis", take_along_axis)
    examples, features = {"id": ["q"], "context": ["景宗王"]}, {"example_id": ["q"], "offset_mapping": [ONE_WINDOW]}
    logits = ([np.array([9.0, 2.0, 1.0, 0.0, 9.0])], [np.array([9.0, 0.0, 3.0, 1.0, 9.0])])
    assert postprocess_qa_predictions(examples, features, logits, n_best_size=2, max_answer_length=3) == {"q": "景宗"}
    assert calls == [1] * 5  # the best spans' scores, and twice two in _first_in_order (the starts, then the spans)


def test_the_json_files_are_utf8_where_open_defaults_to_ascii(monkeypatch, tmp_path):
    """A process in the C locale without UTF-8 mode (LC_ALL=C, PYTHONUTF8=0, as test_environments.py runs) opens text
    files as ASCII unless told the encoding: the writers' open() gets that default here, so predictions.json and
    nbest_predictions.json hold Chinese only if their files are opened with encoding="utf-8"."""
    real_open = builtins.open

    def open_in_the_c_locale(file, mode="r", *args, encoding=None, **kwargs):
        if encoding is None and "b" not in mode:
            encoding = "ascii"
        return real_open(file, mode, *args, encoding=encoding, **kwargs)

    monkeypatch.setattr(outputs, "open", open_in_the_c_locale, raising=False)
    examples, features = {"id": ["q"], "context": ["景宗王"]}, {"example_id": ["q"], "offset_mapping": [ONE_WINDOW]}
    logits = ([np.array([9.0, 2.0, 1.0, 0.0, 9.0])], [np.array([9.0, 0.0, 3.0, 1.0, 9.0])])
    postprocess_qa_predictions(examples, features, logits, n_best_size=1, max_answer_length=3, output_dir=str(tmp_path))
    assert (tmp_path / "predictions.json").read_bytes() == '{\n  "q": "景宗"\n}'.encode("utf-8")
    assert "景宗".encode("utf-8") in (tmp_path / "nbest_predictions.json").read_bytes()


def test_spans_are_scored_in_float32_even_from_float64_logits(tmp_path):
    """Logits may come as float64 (a list of arrays, not the Trainer's float32): they are read as float32, like the
    model's own, the n-best entry lists those float32 logits, and a span's score is their float32 sum. 0.1 and 0.3
    are no float32: float32(0.1) = 0.10000000149..., float32(0.3) = 0.30000001192..., and their float32 sum is
    0.40000000596... (their float64 sum, 0.40000001341..., is not a float32)."""
    examples, features = {"id": ["q"], "context": ["景宗王"]}, {"example_id": ["q"], "offset_mapping": [ONE_WINDOW]}
    start_logits, end_logits = [np.array([9.0, 0.1, -5.0, -5.0, 9.0])], [np.array([9.0, -5.0, 0.3, -5.0, 9.0])]
    assert start_logits[0].dtype == np.float64
    postprocess_qa_predictions(examples, features, (start_logits, end_logits), n_best_size=1, max_answer_length=3,
                               output_dir=str(tmp_path))
    (best,) = json.loads((tmp_path / "nbest_predictions.json").read_text(encoding="utf-8"))["q"]
    assert best["text"] == "景宗"
    assert best["start_logit"] == 0.10000000149011612 and best["end_logit"] == 0.30000001192092896
    assert best["score"] == 0.4000000059604645


def test_the_runs_of_a_window_merge_into_its_n_best_spans_and_one_log_partition():
    """A window across two candidates: [CLS] 1 2 [SEP] 4 5 [SEP], runs (1, 2) and (4, 5). Spans of at most 2 tokens
    and their scores: (1, 1) 1, (1, 2) 3, (2, 2) 2 in the first run; (4, 4) 3, (4, 5) 4, (5, 5) 1 in the second. The
    2 best: (4, 5), then (1, 2) (tied with (4, 4): the first run first)."""
    char_starts = np.array([-1, 0, 1, -1, 3, 4, -1])
    start_logits = np.array([9.0, 1.0, 0.0, 9.0, 3.0, 0.0, 9.0], dtype=np.float32)
    end_logits = np.array([9.0, 0.0, 2.0, 9.0, 0.0, 1.0, 9.0], dtype=np.float32)
    (spans,) = best_spans_of_windows([start_logits], [end_logits], [char_starts], 2, 2)
    assert spans.start_tokens.tolist() == [4, 1] and spans.end_tokens.tolist() == [5, 2]
    assert spans.scores.tolist() == [4.0, 3.0]
    assert spans.log_partition == pytest.approx(math.log(2 * math.e + math.e**2 + 2 * math.e**3 + math.e**4))
    # Two runs of 10 one-token spans scoring 1 2 2 1 2 1 2 2 1 2: the 2s of the first run, then those of the second,
    # then the 1s likewise, each in token order (ties beyond the 16 elements that NumPy sorts by insertion, stable by
    # chance, in its default sort).
    char_starts = np.array([-1, *range(10), -1, *range(20, 30), -1])
    pattern = [1.0, 2.0, 2.0, 1.0, 2.0, 1.0, 2.0, 2.0, 1.0, 2.0]
    start_logits = np.array([9.0, *pattern, 9.0, *pattern, 9.0], dtype=np.float32)
    (spans,) = best_spans_of_windows([start_logits], [np.zeros(23, dtype=np.float32)], [char_starts], 1, 20)
    assert spans.start_tokens.tolist() == [2, 3, 5, 7, 8, 10, 13, 14, 16, 18, 19, 21, 1, 4, 6, 9, 12, 15, 17, 20]
    # One run of the 20 same scores: the best first, ties in token order, within the run too.
    char_starts = np.array([-1, *range(20), -1])
    start_logits = np.array([9.0, *pattern, *pattern, 9.0], dtype=np.float32)
    (spans,) = best_spans_of_windows([start_logits], [np.zeros(22, dtype=np.float32)], [char_starts], 1, 20)
    assert spans.start_tokens.tolist() == [2, 3, 5, 7, 8, 10, 12, 13, 15, 17, 18, 20, 1, 4, 6, 9, 11, 14, 16, 19]
    assert spans.scores.tolist() == [2.0] * 12 + [1.0] * 8


def test_a_question_of_exactly_the_kept_tokens_is_kept_whole(tokenizer):
    """Only a question longer than max_question_length is cut: 甲乙 followed by spaces is 2 tokens (spaces are no
    token), and with a limit of 2 it keeps its spaces; with a limit of 1 it is cut after 甲."""
    assert truncate_questions(["甲乙  "], tokenizer, 2) == ["甲乙  "]
    assert truncate_questions(["甲乙  "], tokenizer, 1) == ["甲"]


def test_token_runs_number_the_runs_of_paragraph_tokens_from_0_and_the_others_minus_1():
    """Paragraph tokens (char_starts >= 0) in runs: a window that starts inside the paragraph (the first token is a
    paragraph token), a separator between two candidates (-1), the [SEP] at the end."""
    char_starts = np.array([0, 1, -1, 0, 2, 4, -1])
    assert token_runs(char_starts).tolist() == [0, 0, -1, 1, 1, 1, -1]
    assert [mask.tolist() for mask in paragraph_runs(char_starts)] == [
        [True, True, False, False, False, False, False], [False, False, False, True, True, True, False]]
    assert token_runs(np.array([-1, 5, -1])).tolist() == [-1, 0, -1]


def test_joined_candidates_are_read_as_the_joined_text_and_no_answer_is_on_a_separator(tokenizer):
    """Examples of joined candidates (--context_mode candidates, --end_to_end): each paragraph is tokenized once and
    the windows equal the tokenizer's own encoding of the question with the joined text 景宗在位。\n|\n臺北\n|\n景宗;
    the separator "|" is a token of no paragraph (offset None, never an answer), and the answer, in the second copy
    of 景宗 (the relevant paragraph 2, joined last), is labelled there."""
    context = ["臺北", "景宗在位。", "景宗"]
    questions = [{"id": "q", "question": "誰?", "paragraphs": [1, 0, 2], "relevant": 2,
                  "answer": {"text": "景宗", "start": 0}}]
    examples = to_squad_examples(questions, context, context_mode="candidates")
    assert examples["context"] == ["景宗在位。\n|\n臺北\n|\n景宗"] and examples["candidate_starts"] == [[0, 8, 13]]
    own = tokenizer("誰?", examples["context"][0])
    features = prepare_validation_features(examples, tokenizer, max_seq_length=64, doc_stride=16,
                                           max_question_length=8)
    assert features["input_ids"] == [own["input_ids"]] and features["token_type_ids"] == [own["token_type_ids"]]
    # [CLS] 誰 ? [SEP], then 景 宗 在 位 。 | 臺 北 | 景 宗 [SEP]
    assert features["offset_mapping"] == [[None] * 4 + [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], None, [8, 9], [9, 10],
                                                         None, [13, 14], [14, 15], None]]
    labelled = prepare_train_features(examples, tokenizer, max_seq_length=64, doc_stride=16, max_question_length=8)
    assert (labelled["start_positions"], labelled["end_positions"]) == ([13], [14])
    assert labelled["input_ids"] == features["input_ids"]
    # The separator's high logits are no answer: the best span is within a paragraph.
    start_logits, end_logits = np.zeros(16), np.zeros(16)
    start_logits[[9, 12]], end_logits[[9, 12]] = 9.0, 9.0
    start_logits[10], end_logits[11] = 1.0, 1.0
    assert postprocess_qa_predictions(examples, features, ([start_logits], [end_logits])) == {"q": "臺北"}


def test_windows_of_a_tokenizer_without_token_types_are_its_own_pairs(tmp_path):
    """roberta-base style (byte-level BPE, <s> q </s></s> p </s>, no token_type_ids): the windows assembled from the
    question's and the paragraph's tokens are the tokenizer's own encoding of the pair, without token types."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer, RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["who is the king of the north"] * 5, vocab_size=280,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    bpe.save_model(str(tmp_path))
    RobertaTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt")).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    examples = {"id": ["q"], "question": ["who is king?"], "context": ["the king of the north"],
                "answers": [{"text": ["north"], "answer_start": [16]}]}
    features = prepare_train_features(examples, tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    own = tokenizer("who is king?", "the king of the north")
    assert "token_type_ids" not in own and "token_type_ids" not in features
    assert features["input_ids"] == [own["input_ids"]] and features["attention_mask"] == [own["attention_mask"]]
    end = len(own["input_ids"]) - 2  # "north", before the last </s>
    assert features["end_positions"] == [end]
    assert tokenizer.decode(own["input_ids"][features["start_positions"][0] : end + 1]).strip() == "north"


def test_version_2_null_answers_win_when_the_null_score_beats_the_best_span_by_more_than_the_threshold(tmp_path):
    """SQuAD 2.0 post-processing (version_2_with_negative): the null score is the [CLS] start + end logits (the lowest
    over an example's windows), against the best span's score, 5 here (景宗, as above)."""
    examples = {"id": ["null", "span", "close", "nothing"], "context": ["景宗王"] * 4}
    features = {"example_id": ["null", "span", "close", "close", "nothing"],
                "offset_mapping": [ONE_WINDOW] * 4 + [[None] * 5]}
    paragraph_start, paragraph_end = [2.0, 1.0, 0.0], [0.0, 3.0, 1.0]
    # The [CLS] start and end logits of each window: null, span, close (two windows: 5.5 and 6), nothing.
    null_logits = [(5.0, 7.0), (0.0, 0.5), (2.75, 2.75), (3.0, 3.0)]
    start_logits = [np.array([s, *paragraph_start, 0.0]) for s, _ in null_logits] + [np.zeros(5)]
    end_logits = [np.array([e, *paragraph_end, 0.0]) for _, e in null_logits] + [np.zeros(5)]
    answers = postprocess_qa_predictions(examples, features, (start_logits, end_logits), version_2_with_negative=True,
                                         max_answer_length=3, output_dir=str(tmp_path))
    # null: 12 - 5 > 0; span: 0.5 - 5; close: min(5.5, 6) - 5 = 0.5 > 0 (the default threshold); nothing: no span.
    assert answers == {"null": "", "span": "景宗", "close": "", "nothing": ""}
    # "nothing" has no span at all: its difference is infinite, which strict JSON writes as null.
    odds = json.loads((tmp_path / "null_odds.json").read_text(encoding="utf-8"))
    assert odds == {"null": 7.0, "span": -4.5, "close": 0.5, "nothing": None}
    nbest = json.loads((tmp_path / "nbest_predictions.json").read_text(encoding="utf-8"))
    # The null answer takes its place by score among the spans (5, 4, 3, 2, 2, 1): first in null, last in span.
    null_probability = np.exp(12.0) / sum(np.exp(c["score"]) for c in nbest["null"])
    assert nbest["null"][0] == {"score": 12.0, "start": -1, "end": -1, "text": "",
                                "probability": pytest.approx(null_probability)}
    assert [c["score"] for c in nbest["span"]] == [5.0, 4.0, 3.0, 2.0, 2.0, 1.0, 0.5]
    assert {key: nbest["span"][-1][key] for key in ("start", "end", "text")} == {"start": -1, "end": -1, "text": ""}
    assert nbest["nothing"] == [{"score": 0.0, "start": -1, "end": -1, "text": "", "probability": 1.0}]
    close = postprocess_qa_predictions(examples, features, (start_logits, end_logits), version_2_with_negative=True,
                                       max_answer_length=3, null_score_diff_threshold=1.0)
    assert close["close"] == "景宗" and close["null"] == ""
    # A difference equal to the threshold keeps the span.
    tie = postprocess_qa_predictions(examples, features, (start_logits, end_logits), version_2_with_negative=True,
                                     max_answer_length=3, null_score_diff_threshold=0.5)
    assert tie["close"] == "景宗"


def test_long_questions_are_cut_at_a_character_boundary(tokenizer):
    questions = ["問" * 500, "短問題?", "The quick brown fox"]
    truncated = truncate_questions(questions, tokenizer, max_question_length=10)
    assert truncated[0] == "問" * 10
    assert truncated[1] == "短問題?"
    assert len(tokenizer(truncated[2], add_special_tokens=False)["input_ids"]) <= 10
    assert questions[2].startswith(truncated[2])


def test_a_20000_character_paragraph_and_a_500_character_question_lose_no_answer(tokenizer, sample_context):
    paragraph = ""
    for text in sample_context:
        if len(paragraph) >= 20000:
            break
        paragraph += text
    paragraph = paragraph[:20000]
    answers = {"start": paragraph[100:110], "middle": paragraph[10000:10015], "end": paragraph[-12:]}
    examples = {
        "id": list(answers),
        "question": ["這是一個很長的問題，" * 50] * 3,
        "context": [paragraph] * 3,
        "answers": [{"text": [a], "answer_start": [paragraph.index(a)]} for a in answers.values()],
    }
    assert len(examples["question"][0]) == 500
    features = prepare_validation_features(examples, tokenizer)
    labels = prepare_train_features(examples, tokenizer)
    assert max(len(ids) for ids in features["input_ids"]) == 512
    for i, example_id in enumerate(features["example_id"]):
        start, end = labels["start_positions"][i], labels["end_positions"][i]
        if start:
            offsets = features["offset_mapping"][i]
            assert paragraph[offsets[start][0] : offsets[end][1]] == answers[example_id]
    labelled = {features["example_id"][i] for i, start in enumerate(labels["start_positions"]) if start}
    assert labelled == set(answers)
    predicted = postprocess_qa_predictions(examples, features, gold_token_logits(features, examples))
    assert predicted == answers
