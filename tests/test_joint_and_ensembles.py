"""inference.py beyond one paragraph and one model: --top_k_paragraphs (joint decoding), several checkpoints per stage
(ensembles, merged per character span across tokenizers), the answer metrics of labelled questions, and the
error analysis of --analysis_dir. Expected values are computed here, from the models' own outputs, with code that does
not call decoding.py."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering, AutoTokenizer

import inference
from adl_data import load_context, load_questions, to_multiple_choice_examples
from cli import run_main
from outputs import write_predictions_csv
from conftest import SAMPLES, read_json, save_random_models, write_json
from make_tiny_model import make_tiny_model
from planted import save_choice_model, save_span_model
from metrics import compute_qa_metrics
from tokens import truncate_questions
from utils_qa import postprocess_qa_predictions, prepare_multiple_choice_features, prepare_validation_features

WINDOWS = ["--max_seq_length", "96", "--doc_stride", "32", "--max_question_length", "24"]


@pytest.fixture(scope="module")
def random_checkpoints(tiny_base, tmp_path_factory):
    """Both stages with random weights (scale 0.2, so that scores differ clearly), and a copy of each."""
    root = tmp_path_factory.mktemp("random-checkpoints")
    torch.manual_seed(3)
    save_random_models(tiny_base, [(root / "mc", AutoModelForMultipleChoice), (root / "qa", AutoModelForQuestionAnswering)])
    for name in ("mc", "qa"):
        shutil.copytree(root / name, root / f"{name}-copy")
    return {name: root / name for name in ("mc", "mc-copy", "qa", "qa-copy")}


@pytest.fixture(scope="module")
def small_valid(tmp_path_factory):
    """The first 16 labelled questions of the sample valid.json."""
    return write_json(tmp_path_factory.mktemp("valid") / "valid.json", read_json(SAMPLES / "valid.json")[:16])


def infer(output, test_file, mc, qa, *extra, context_file=SAMPLES / "context.json"):
    return inference.main([
        "--context_file", str(context_file), "--test_file", str(test_file), "--output_file", str(output),
        "--mc_model", *map(str, mc), "--qa_model", *map(str, qa), *map(str, extra),
    ])


# ---------------------------------------------------------------------------------------------------------------------
# K = 1 is the two-stage pipeline of the training scripts


def two_stages_as_the_training_scripts_do(mc_dir, qa_dir, questions, context, max_seq_length, doc_stride,
                                          max_question_length):
    """Stage 1 as run_swag.py --do_predict (all candidates in one multiple-choice forward pass, argmax), stage 2 as
    run_qa.py --do_predict (windows of the chosen paragraph, postprocess_qa_predictions)."""
    tokenizer = AutoTokenizer.from_pretrained(mc_dir)
    mc_model = AutoModelForMultipleChoice.from_pretrained(mc_dir).eval()
    qa_model = AutoModelForQuestionAnswering.from_pretrained(qa_dir).eval()
    features = prepare_multiple_choice_features(to_multiple_choice_examples(questions, context), tokenizer,
                                                max_seq_length, max_question_length=max_question_length)
    chosen = []
    for i, question in enumerate(questions):
        batch = tokenizer.pad({name: features[name][i] for name in features if name != "labels"}, return_tensors="pt")
        with torch.no_grad():
            logits = mc_model(**{name: tensor[None] for name, tensor in batch.items()}).logits[0]
        chosen.append(question["paragraphs"][int(logits.argmax())])
    examples = {"id": [q["id"] for q in questions], "question": [q["question"] for q in questions],
                "context": [context[p] for p in chosen]}
    windows = prepare_validation_features(examples, tokenizer, max_seq_length, doc_stride,
                                          max_question_length=max_question_length)
    start_logits, end_logits = [], []
    for i in range(len(windows["input_ids"])):
        inputs = {name: torch.tensor([windows[name][i]]) for name in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            output = qa_model(**inputs)
        start_logits.append(output.start_logits[0].numpy())
        end_logits.append(output.end_logits[0].numpy())
    return postprocess_qa_predictions(examples, windows, (start_logits, end_logits))


def test_top_1_gives_byte_for_byte_the_csv_of_the_two_training_scripts_pipeline(random_checkpoints, tmp_path):
    context = load_context(SAMPLES / "context.json")
    questions = load_questions(SAMPLES / "test.json", context)[:20]
    test_file = write_json(tmp_path / "test.json", questions)
    answers = two_stages_as_the_training_scripts_do(random_checkpoints["mc"], random_checkpoints["qa"], questions,
                                                    context, 96, 32, 24)
    write_predictions_csv(tmp_path / "expected.csv", [q["id"] for q in questions], answers)
    infer(tmp_path / "default.csv", test_file, [random_checkpoints["mc"]], [random_checkpoints["qa"]], *WINDOWS)
    infer(tmp_path / "k1.csv", test_file, [random_checkpoints["mc"]], [random_checkpoints["qa"]], *WINDOWS,
          "--top_k_paragraphs", 1)
    expected = (tmp_path / "expected.csv").read_bytes()
    assert (tmp_path / "k1.csv").read_bytes() == expected
    assert (tmp_path / "default.csv").read_bytes() == expected  # the default K is 1


# ---------------------------------------------------------------------------------------------------------------------
# Joint decoding


def span_log_probs_by_brute_force(qa_dir, question, paragraph, max_seq_length, doc_stride, max_question_length,
                                  max_answer_length):
    """{(char start, char end): log P(span | question, paragraph)} over every valid span of every window, from the
    tokenizer's own windows and the model's logits: exp(start + end) normalised over all of them; a span found in
    two windows keeps its better score."""
    tokenizer = AutoTokenizer.from_pretrained(qa_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(qa_dir).eval()
    cut = truncate_questions([question], tokenizer, max_question_length)[0]
    windows = tokenizer(cut, paragraph, truncation="only_second", max_length=max_seq_length, stride=doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    scores, best = [], {}
    for w in range(len(windows["input_ids"])):
        inputs = {name: torch.tensor([windows[name][w]]) for name in ("input_ids", "token_type_ids", "attention_mask")}
        with torch.no_grad():
            output = model(**inputs)
        start, end = output.start_logits[0].double().numpy(), output.end_logits[0].double().numpy()
        paragraph_tokens = [t for t, s in enumerate(windows.sequence_ids(w)) if s == 1]
        for i in paragraph_tokens:
            for j in paragraph_tokens:
                if i <= j < i + max_answer_length:
                    score = start[i] + end[j]
                    scores.append(score)
                    span = (windows["offset_mapping"][w][i][0], windows["offset_mapping"][w][j][1])
                    best[span] = max(score, best.get(span, -math.inf))
    log_partition = np.logaddexp.reduce(scores)
    return {span: score - log_partition for span, score in best.items()}


def test_with_a_paragraph_model_that_cannot_choose_the_answer_is_the_best_span_of_all_candidates(
    random_checkpoints, tiny_base, tmp_path
):
    """A paragraph model that scores every candidate the same (no marker anywhere) and K = the number of
    candidates: each question's answer is the span of highest P(span | question, paragraph) over all its
    candidates; K larger than a question's candidates takes them all."""
    uniform = save_choice_model(tiny_base, tmp_path / "uniform", marker="丨")
    context = load_context(SAMPLES / "context.json")
    questions = [q for q in load_questions(SAMPLES / "test.json", context) if "丨" not in q["question"]][:4]
    assert not any("丨" in context[p] for q in questions for p in q["paragraphs"])
    test_file = write_json(tmp_path / "test.json", questions)
    flags = [*WINDOWS, "--max_answer_length", "12", "--n_best_size", "400"]
    answers = infer(tmp_path / "k4.csv", test_file, [uniform], [random_checkpoints["qa"]], *flags,
                    "--top_k_paragraphs", 4)
    assert infer(tmp_path / "k9.csv", test_file, [uniform], [random_checkpoints["qa"]], *flags,
                 "--top_k_paragraphs", 9) == answers
    single = infer(tmp_path / "k1.csv", test_file, [uniform], [random_checkpoints["qa"]], *flags)
    for question in questions:
        best = max(
            ((log_prob, context[p][start:end])
             for p in question["paragraphs"]
             for (start, end), log_prob in span_log_probs_by_brute_force(
                 random_checkpoints["qa"], question["question"], context[p], 96, 32, 24, 12).items()),
            key=lambda candidate: candidate[0],
        )
        assert answers[question["id"]] == best[1]
        # With K = 1, the first candidate (all tie) is the only one read.
        assert single[question["id"]] in context[question["paragraphs"][0]]
    assert answers != single  # on these questions, reading every candidate changes some answers


# ---------------------------------------------------------------------------------------------------------------------
# Ensembles


def test_an_ensemble_of_one_model_or_of_two_copies_is_that_model(random_checkpoints, small_valid, tmp_path):
    one = infer(tmp_path / "one.csv", small_valid, [random_checkpoints["mc"]], [random_checkpoints["qa"]], *WINDOWS)
    copies = infer(tmp_path / "two.csv", small_valid, [random_checkpoints["mc"], random_checkpoints["mc-copy"]],
                   [random_checkpoints["qa"], random_checkpoints["qa-copy"]], *WINDOWS, "--top_k_paragraphs", 1)
    assert copies == one
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    metrics = [read_json(tmp_path / f"{name}.csv.metrics.json") for name in ("one", "two")]
    assert metrics[0] == metrics[1]


def planted_log_probs(tokenizer, paragraph, start_scores, end_scores, max_answer_length):
    """By hand: the planted logits of each token (its character's score, else 0), every span of at most
    max_answer_length tokens, normalised: {(char start, char end): P(span)}."""
    encoding = tokenizer(paragraph, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    starts = [start_scores.get(paragraph[a:b], 0.0) for a, b in offsets]
    ends = [end_scores.get(paragraph[a:b], 0.0) for a, b in offsets]
    spans = {(offsets[i][0], offsets[j][1]): starts[i] + ends[j]
             for i in range(len(offsets)) for j in range(i, min(i + max_answer_length, len(offsets)))}
    total = sum(math.exp(score) for score in spans.values())
    return {span: math.exp(score) / total for span, score in spans.items()}


def test_span_models_with_different_vocabularies_merge_per_character_span(tiny_base, tmp_path, capsys):
    """Model A (characters) prefers 甲...乙, model B (whole English words) 丙...丁; both give 甲...丁 nearly as
    much, so the ensemble's answer is 甲...丁, neither model's own. The probabilities are computed by hand."""
    paragraph = "甲hello乙world丙abc丁"
    word_base = make_tiny_model(tmp_path / "word-base", texts=["hello world abc"], all_cjk=True, words=3)
    a_scores = ({"甲": 5.0}, {"乙": 5.0, "丁": 4.9})
    b_scores = ({"丙": 5.0, "甲": 4.9}, {"丁": 5.0})
    a = save_span_model(tiny_base, tmp_path / "a", *a_scores)
    b = save_span_model(word_base, tmp_path / "b", *b_scores)
    tokenizers = {name: AutoTokenizer.from_pretrained(path) for name, path in (("a", a), ("b", b))}
    assert len(tokenizers["a"].tokenize(paragraph)) == 17 and len(tokenizers["b"].tokenize(paragraph)) == 7

    mc = save_choice_model(tiny_base, tmp_path / "mc", marker="標")
    context = write_json(tmp_path / "context.json", [paragraph])
    test = write_json(tmp_path / "test.json", [{"id": "q", "question": "問題", "paragraphs": [0], "relevant": 0,
                                                "answer": {"text": "甲", "start": 0}}])
    flags = ["--max_answer_length", "30", "--n_best_size", "400", "--analysis_dir"]
    answers = {}
    for name, members in (("a", [a]), ("b", [b]), ("ab", [a, b])):
        answers[name] = infer(tmp_path / f"{name}.csv", test, [mc], members, *flags, tmp_path / f"analysis-{name}",
                              context_file=context)["q"]
    assert answers == {"a": "甲hello乙", "b": "丙abc丁", "ab": "甲hello乙world丙abc丁"}

    by_hand = [planted_log_probs(tokenizers[n], paragraph, *scores, 30) for n, scores in (("a", a_scores),
                                                                                         ("b", b_scores))]
    ensemble = {span: (by_hand[0].get(span, 0.0) + by_hand[1].get(span, 0.0)) / 2 for span in by_hand[0]}
    nbest = json.loads((tmp_path / "analysis-ab" / "errors.jsonl").read_text(encoding="utf-8"))["nbest"]
    # One candidate paragraph: log P(paragraph) = 0, so an answer's score is log P_ensemble(span).
    for answer in nbest[:3]:
        span = (answer["start"], answer["start"] + len(answer["text"]))
        assert answer["score"] == pytest.approx(math.log(ensemble[span]), abs=1e-3)
    assert nbest[0]["text"] == "甲hello乙world丙abc丁"


def test_an_ensemble_member_of_the_wrong_stage_is_named_in_one_line(random_checkpoints, small_valid, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: infer(tmp_path / "pred.csv", small_valid, [random_checkpoints["mc"], random_checkpoints["qa"]],
                               [random_checkpoints["qa"]]))
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {random_checkpoints['qa']}: a BertForQuestionAnswering checkpoint, not a "
                           "paragraph-selection model")
    assert not (tmp_path / "pred.csv").exists()


# ---------------------------------------------------------------------------------------------------------------------
# End-to-end metrics and error analysis


@pytest.fixture(scope="module")
def analysed(tiny_base, tmp_path_factory):
    """Planted models on four hand-made questions, one of each category, run with --analysis_dir."""
    root = tmp_path_factory.mktemp("analysed")
    mc = save_choice_model(tiny_base, root / "mc", marker="標")
    qa = save_span_model(tiny_base, root / "qa", {"甲": 8.0}, {"乙": 8.0})
    context = ["標天地甲玄黃宇宙乙洪荒日月", "日月甲盈昃乙辰宿列張", "標寒來甲暑往秋乙收冬藏", "標閏餘甲成歲乙律呂調陽", "標雲騰甲致雨乙露結為霜"]
    questions = [
        {"id": "right", "question": "問", "paragraphs": [0, 1], "relevant": 0, "answer": {"text": "甲玄黃宇宙乙", "start": 3}},
        {"id": "wrong-paragraph", "question": "問", "paragraphs": [1, 2], "relevant": 1,
         "answer": {"text": "甲盈昃乙", "start": 2}},
        {"id": "partial", "question": "問", "paragraphs": [3, 1], "relevant": 3, "answer": {"text": "成歲乙律", "start": 4}},
        {"id": "wrong-span", "question": "問", "paragraphs": [4], "relevant": 4, "answer": {"text": "露結", "start": 7}},
    ]
    paths = {"context": write_json(root / "context.json", context), "test": write_json(root / "valid.json", questions)}
    prediction_answers = infer(root / "out" / "pred.csv", paths["test"], [mc], [qa], "--analysis_dir",
                               root / "analysis", context_file=paths["context"])
    return root, questions, prediction_answers


def test_labelled_questions_get_answer_metrics_checked_against_compute_qa_metrics(analysed):
    root, questions, answers = analysed
    assert answers == {"right": "甲玄黃宇宙乙", "wrong-paragraph": "甲暑往秋乙", "partial": "甲成歲乙",
                       "wrong-span": "甲致雨乙"}
    metrics = read_json(root / "out" / "pred.csv.metrics.json")
    expected = compute_qa_metrics(answers, {q["id"]: [q["answer"]["text"]] for q in questions})
    assert metrics["exact_match"] == pytest.approx(expected["exact_match"]) == pytest.approx(25.0)
    assert metrics["f1"] == pytest.approx(expected["f1"])
    assert metrics["questions"] == 4
    assert metrics["paragraph_selection_accuracy"] == metrics["answer_paragraph_accuracy"] == pytest.approx(3 / 4)
    gold = metrics["answer_from_gold_paragraph"]
    assert gold["questions"] == 3
    assert gold["exact_match"] == pytest.approx(compute_qa_metrics(
        answers, {q["id"]: [q["answer"]["text"]] for q in questions if q["id"] != "wrong-paragraph"})["exact_match"])
    assert metrics["answer_from_other_paragraph"] == {"questions": 1, "exact_match": 0.0, "f1": pytest.approx(
        compute_qa_metrics(answers, {"wrong-paragraph": ["甲盈昃乙"]})["f1"])}


def test_each_answer_gets_its_category_in_errors_jsonl_and_summary_md(analysed):
    root, questions, _ = analysed
    records = [json.loads(line) for line in (root / "analysis" / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["id"]: r["category"] for r in records} == {
        "right": "right", "wrong-paragraph": "wrong paragraph", "partial": "partial overlap", "wrong-span": "wrong span",
    }
    wrong = next(r for r in records if r["id"] == "wrong-paragraph")
    assert wrong["gold_paragraph"] == 1 and wrong["answer_paragraph"] == 2 and wrong["paragraph_selection"] == 2
    assert wrong["prediction"] == {"text": "甲暑往秋乙", "start": 3} and wrong["nbest"][0]["text"] == "甲暑往秋乙"
    summary = (root / "analysis" / "summary.md").read_text(encoding="utf-8")
    for category in ("right", "wrong paragraph", "partial overlap", "wrong span"):
        assert f"| {category} | 1 | 25.0% |" in summary and f"## {category}" in summary
    assert "【甲成歲乙】" in summary and "【成歲乙律】" in summary


def test_analysis_needs_labelled_questions(random_checkpoints, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_main(lambda: infer(tmp_path / "pred.csv", SAMPLES / "test.json", [random_checkpoints["mc"]],
                               [random_checkpoints["qa"]], "--analysis_dir", tmp_path / "analysis"))
    assert "--analysis_dir needs labelled questions" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
