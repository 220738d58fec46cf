"""Every decision of inference.py that combines results, on planted scores: joint decoding over the K most probable
paragraphs (--top_k_paragraphs) whose priors differ and are not in file order, ensembles of different paragraph and
span models (the mean of probabilities, not of logits), and the paragraph reported as paragraph selection's choice
against the paragraph the answer comes from (CSV, metrics JSON, errors.jsonl).

The expected answers are computed here with this file's own arithmetic (softmax over the planted paragraph scores,
log partition over every span), never with decoding.py. Paragraphs are short (one window) and made of CJK
ideographs, one token each.
"""

import collections
import csv
import json
import math
import random

import pytest
import torch
from conftest import read_json, write_json
from planted import save_marker_choice_model, save_span_model
from transformers import AutoModelForMultipleChoice, AutoTokenizer

import inference
from spans import N_BEST_SIZE

ORDINARY = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽雲騰致雨露結為霜金生麗水玉出崑岡劍號巨闕珠稱夜光果珍李柰菜重芥薑海鹹"
QUESTION = "問題"
LENGTH = 16  # characters of every paragraph
MAX_ANSWER_LENGTH = 64  # inference.py's default: longer than any paragraph here, so every span i <= j is valid

# The planted paragraph scores of the top-k tests (one marker per candidate, none: 0) and span scores: a "sure"
# paragraph holds 甲..乙 (its best span has P close to 1), an "unsure" one 丙..丁 (P of its best about 0.1).
MARKER_SCORES = {"標": 2.0, "另": 1.0, "次": -0.5}
SPAN_SCORES = ({"甲": 6.0, "丙": 2.0}, {"乙": 6.0, "丁": 2.0})


def planted_paragraph(kind, marker, seed):
    """LENGTH ordinary characters (random, so that every paragraph's answer text is its own), the answer of `kind`
    from character 1, and the marker (if any) at the end."""
    generator = random.Random(seed)
    characters = [generator.choice(ORDINARY) for _ in range(LENGTH)]
    if kind == "sure":
        characters[1], characters[6] = "甲", "乙"
    elif kind == "unsure":
        characters[1], characters[4] = "丙", "丁"
    if marker:
        characters[-1] = marker
    return "".join(characters)


# ---------------------------------------------------------------------------------------------------------------------
# The test's own arithmetic


def log_softmax(scores):
    top = max(scores)
    log_total = top + math.log(sum(math.exp(s - top) for s in scores))
    return [s - log_total for s in scores]


def span_log_probs(tokenizer, paragraph, start_scores, end_scores, max_answer_length=MAX_ANSWER_LENGTH):
    """{(char start, char end): log P(span | question, paragraph)}: each token's planted logit (its character's
    score, else 0), every span of at most max_answer_length tokens, normalised by the log partition over them all."""
    offsets = tokenizer(paragraph, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(offsets) == len(paragraph)  # one token per character
    starts = [start_scores.get(paragraph[a:b], 0.0) for a, b in offsets]
    ends = [end_scores.get(paragraph[a:b], 0.0) for a, b in offsets]
    scores = {(offsets[i][0], offsets[j][1]): starts[i] + ends[j]
              for i in range(len(offsets)) for j in range(i, min(i + max_answer_length, len(offsets)))}
    top = max(scores.values())
    log_partition = top + math.log(sum(math.exp(s - top) for s in scores.values()))
    return {span: score - log_partition for span, score in scores.items()}


def best_span(log_probs):
    """The most probable span and its log-probability; the runner-up must be clearly below (no tie decides)."""
    ranked = sorted(log_probs.items(), key=lambda item: -item[1])
    assert ranked[0][1] - ranked[1][1] > 0.1
    return ranked[0]


def joint_answer(priors, paragraphs, context, span_log_probs_of, top_k):
    """(paragraph index, span, joint score) maximising log P(p | q) + log P(s | q, p) over the top_k candidates by
    prior (ties: file order), with a clear margin over the best answer of any other paragraph."""
    ranked = sorted(range(len(paragraphs)), key=lambda c: (-priors[c], c))[:top_k]
    answers = []
    for c in ranked:
        span, log_prob = best_span(span_log_probs_of(context[paragraphs[c]]))
        answers.append((priors[c] + log_prob, paragraphs[c], span))
    answers.sort(reverse=True)
    assert answers[0][0] - (answers[1][0] if len(answers) > 1 else -math.inf) > 0.3
    score, paragraph, span = answers[0]
    return paragraph, span, score


def normalized(text):
    import unicodedata

    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def char_f1(prediction, gold):
    prediction, gold = normalized(prediction), normalized(gold)
    shared = sum((collections.Counter(prediction) & collections.Counter(gold)).values())
    if shared == 0:
        return float(prediction == gold)
    precision, recall = shared / len(prediction), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def read_csv_answers(path):
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["id", "answer"]
    return rows[1:]


def read_errors(directory):
    lines = (directory / "errors.jsonl").read_text(encoding="utf-8").splitlines()
    return {record["id"]: record for record in map(json.loads, lines)}


def infer(data, output, mc_models, qa_models, *flags):
    return inference.main([
        "--context_file", str(data["context"]), "--test_file", str(data["test"]), "--output_file", str(output),
        "--mc_model", *map(str, mc_models), "--qa_model", *map(str, qa_models), *map(str, flags),
    ])


# ---------------------------------------------------------------------------------------------------------------------
# Joint decoding with priors out of file order, and paragraph selection's choice against the answer's paragraph

# Each question: its candidates (marker, kind) in file order, and which candidate is the gold one with what gold text
# ("answer": the candidate's own best span; "answer[1:]": that span less its first character).
TOP_K_QUESTIONS = {
    # Priors: the most probable is 3rd in the file (標, unsure), the second 1st (另, sure): the answer comes from
    # the second most probable. Priors in file order would give 標's prior to 另 and 另's to the third: another answer.
    "second-best-paragraph-wins": ([("另", "sure"), (None, "sure"), ("標", "unsure")], 0, "answer"),
    # The most probable (2nd in the file) wins; with file-order priors the 3rd would.
    "best-paragraph-wins": ([(None, "sure"), ("標", "sure"), ("另", "sure"), ("次", "sure")], 1, "answer"),
    # The most probable is the last of 4 candidates: beyond the first K = 3 in file order.
    "best-is-last-in-the-file": ([("次", "sure"), (None, "sure"), ("另", "sure"), ("標", "sure")], 3, "answer[1:]"),
    # Paragraph selection is right (標), joint decoding moves the answer to another paragraph (另).
    "joint-decoding-leaves-the-gold-paragraph": ([("標", "unsure"), ("另", "sure"), (None, "unsure")], 0, "answer"),
    # Paragraph selection is wrong (標, last), the answer comes from the gold paragraph (另, 2nd).
    "joint-decoding-reaches-the-gold-paragraph": (
        [(None, "unsure"), ("另", "sure"), ("次", "sure"), ("標", "unsure")], 1, "answer"),
}
TOP_K = 3


@pytest.fixture(scope="module")
def planted(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("combining-models")
    models = {
        "mc": save_marker_choice_model(tiny_base, root / "mc", MARKER_SCORES),
        "qa": save_span_model(tiny_base, root / "qa", *SPAN_SCORES),
        # The ensembles: paragraph models A and B with different scores for six markers, span models C and D.
        "mc-a": save_marker_choice_model(tiny_base, root / "mc-a",
                                         {"標": 3.5, "另": -3.5, "次": 3.0, "其": 2.0, "他": 4.0, "又": 3.0}),
        "mc-b": save_marker_choice_model(tiny_base, root / "mc-b",
                                         {"標": 2.0, "另": 4.0, "次": 3.0, "其": 3.5, "他": -3.5, "又": 3.0}),
        "qa-c": save_span_model(tiny_base, root / "qa-c", {"甲": 6.0, "丙": 3.0}, {"乙": 6.0, "丁": 3.0}),
        "qa-d": save_span_model(tiny_base, root / "qa-d", {"甲": -3.0, "丙": 4.0}, {"乙": -3.0, "丁": 4.0}),
    }
    return models, AutoTokenizer.from_pretrained(tiny_base)


@pytest.fixture(scope="module")
def top_k_data(tmp_path_factory):
    """context.json and a labelled valid.json of TOP_K_QUESTIONS."""
    root = tmp_path_factory.mktemp("top-k-data")
    context, questions = [], []
    for number, (name, (candidates, gold, gold_kind)) in enumerate(TOP_K_QUESTIONS.items()):
        indices = []
        for position, (marker, kind) in enumerate(candidates):
            indices.append(len(context))
            context.append(planted_paragraph(kind, marker, seed=10 * number + position))
        questions.append({"id": name, "question": QUESTION, "paragraphs": indices, "relevant": indices[gold]})
    return {"root": root, "context_list": context, "questions": questions,
            "context": write_json(root / "context.json", context), "test": root / "valid.json"}


def labelled_top_k(top_k_data, tokenizer):
    """The gold answers: each gold paragraph's own best span (or it less its first character)."""
    context = top_k_data["context_list"]
    for question in top_k_data["questions"]:
        paragraph = context[question["relevant"]]
        (start, end), _ = best_span(span_log_probs(tokenizer, paragraph, *SPAN_SCORES))
        if TOP_K_QUESTIONS[question["id"]][2] == "answer[1:]":
            start += 1
        question["answer"] = {"text": paragraph[start:end], "start": start}
    write_json(top_k_data["test"], top_k_data["questions"])


@pytest.fixture(scope="module")
def top_k_runs(planted, top_k_data):
    """inference.py with K = 3 and K = 1 on the labelled questions, with --analysis_dir."""
    models, tokenizer = planted
    labelled_top_k(top_k_data, tokenizer)
    root = top_k_data["root"]
    for k in (TOP_K, 1):
        infer(top_k_data, root / f"k{k}" / "pred.csv", [models["mc"]], [models["qa"]],
              "--top_k_paragraphs", k, "--analysis_dir", root / f"k{k}" / "analysis")
    return root


def expected_top_k(top_k_data, tokenizer, top_k):
    """{id: (stage-1 paragraph, answer paragraph, answer text, joint score)} by this file's arithmetic."""
    context, expected = top_k_data["context_list"], {}
    for question in top_k_data["questions"]:
        candidates = TOP_K_QUESTIONS[question["id"]][0]
        priors = log_softmax([MARKER_SCORES.get(marker, 0.0) for marker, _ in candidates])
        first = question["paragraphs"][max(range(len(priors)), key=lambda c: (priors[c], -c))]
        paragraph, (start, end), score = joint_answer(
            priors, question["paragraphs"], context,
            lambda text: span_log_probs(tokenizer, text, *SPAN_SCORES), top_k)
        expected[question["id"]] = (first, paragraph, context[paragraph][start:end], score)
    return expected


def test_the_marker_choice_model_scores_each_pair_by_its_marker_whatever_its_length(planted, tmp_path):
    models, tokenizer = planted
    model = AutoModelForMultipleChoice.from_pretrained(models["mc"]).eval()
    texts = ["天地標", "標" + ORDINARY * 3, "天另地", "次", "天地玄黃", "標標天標"]
    pairs = tokenizer([QUESTION] * len(texts), texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**{name: tensor[None] for name, tensor in pairs.items()}).logits[0].tolist()
    assert logits == pytest.approx([2.0, 2.0, 1.0, -0.5, 0.0, 2.0], abs=1e-5)


def test_joint_decoding_pairs_each_paragraph_with_its_own_prior(planted, top_k_data, top_k_runs):
    """The answer of each question is the one of highest log P(p | q) + log P(s | q, p) over the 3 most probable
    candidates, whose priors are not in file order: from the second most probable paragraph in two questions, from
    the most probable in the others, and from the last of 4 candidates in one. Priors taken in file order (the i-th
    best paragraph with the i-th candidate's prior), or the first K candidates of the file, give other answers."""
    _, tokenizer = planted
    expected = expected_top_k(top_k_data, tokenizer, TOP_K)
    context = top_k_data["context_list"]
    by_id = {q["id"]: q for q in top_k_data["questions"]}

    # The design itself: where the answers come from, and that file-order priors would change them.
    def rank(name, paragraph):
        candidates = TOP_K_QUESTIONS[name][0]
        priors = [MARKER_SCORES.get(marker, 0.0) for marker, _ in candidates]
        order = sorted(range(len(priors)), key=lambda c: (-priors[c], c))
        return order.index(by_id[name]["paragraphs"].index(paragraph))

    assert {name: rank(name, paragraph) for name, (_, paragraph, _, _) in expected.items()} == {
        "second-best-paragraph-wins": 1, "best-paragraph-wins": 0, "best-is-last-in-the-file": 0,
        "joint-decoding-leaves-the-gold-paragraph": 1, "joint-decoding-reaches-the-gold-paragraph": 1,
    }
    for name in ("second-best-paragraph-wins", "best-paragraph-wins"):
        question = by_id[name]
        priors = log_softmax([MARKER_SCORES.get(m, 0.0) for m, _ in TOP_K_QUESTIONS[name][0]])
        order = sorted(range(len(priors)), key=lambda c: (-priors[c], c))[:TOP_K]
        in_file_order = max(
            (priors[i] + best_span(span_log_probs(tokenizer, context[question["paragraphs"][c]], *SPAN_SCORES))[1],
             question["paragraphs"][c]) for i, c in enumerate(order))
        assert in_file_order[1] != expected[name][1], name

    rows = read_csv_answers(top_k_runs / "k3" / "pred.csv")
    assert rows == [[name, expected[name][2]] for name in TOP_K_QUESTIONS]
    # The answer's score is exactly the joint score (errors.jsonl rounds to 4 decimals).
    errors = read_errors(top_k_runs / "k3" / "analysis")
    for name, (_, paragraph, text, score) in expected.items():
        best = errors[name]["nbest"][0]
        assert (best["paragraph"], best["text"]) == (paragraph, text)
        assert best["score"] == pytest.approx(score, abs=2e-4), name
        # The n best over the 3 paragraphs together (--n_best_size's default), not every span each one decoded.
        scores = [answer["score"] for answer in errors[name]["nbest"]]
        assert len(scores) == N_BEST_SIZE and scores == sorted(scores, reverse=True), name


def test_paragraph_selection_choice_and_answer_paragraph_are_reported_apart(planted, top_k_data, top_k_runs):
    """With K = 3, paragraph selection's choice (its most probable candidate) and the paragraph of the answer differ
    in three questions: errors.jsonl reports both, the metrics JSON gives the accuracy of each and splits EM/F1 by
    whether the answer comes from the gold paragraph. With K = 1 they are the same paragraph, and paragraph
    selection's choice is the same as with K = 3."""
    _, tokenizer = planted
    questions = top_k_data["questions"]
    for k in (TOP_K, 1):
        expected = expected_top_k(top_k_data, tokenizer, k)
        errors = read_errors(top_k_runs / f"k{k}" / "analysis")
        assert {i: (r["paragraph_selection"], r["answer_paragraph"], r["prediction"]["text"])
                for i, r in errors.items()} == {i: e[:3] for i, e in expected.items()}
        assert read_csv_answers(top_k_runs / f"k{k}" / "pred.csv") == [[q["id"], expected[q["id"]][2]]
                                                                        for q in questions]

        selection_right = [expected[q["id"]][0] == q["relevant"] for q in questions]
        answer_right = [expected[q["id"]][1] == q["relevant"] for q in questions]
        exact = {q["id"]: float(normalized(expected[q["id"]][2]) == normalized(q["answer"]["text"])) for q in questions}
        f1 = {q["id"]: char_f1(expected[q["id"]][2], q["answer"]["text"]) for q in questions}
        metrics = read_json(top_k_runs / f"k{k}" / "pred.csv.metrics.json")
        assert metrics["paragraph_selection_accuracy"] == pytest.approx(sum(selection_right) / len(questions))
        assert metrics["answer_paragraph_accuracy"] == pytest.approx(sum(answer_right) / len(questions))
        assert metrics["exact_match"] == pytest.approx(100 * sum(exact.values()) / len(questions))
        assert metrics["f1"] == pytest.approx(100 * sum(f1.values()) / len(questions))
        for key, wanted in (("answer_from_gold_paragraph", True), ("answer_from_other_paragraph", False)):
            ids = [q["id"] for q, right in zip(questions, answer_right) if right == wanted]
            split = {"questions": len(ids)}
            if ids:
                split["exact_match"] = pytest.approx(100 * sum(exact[i] for i in ids) / len(ids))
                split["f1"] = pytest.approx(100 * sum(f1[i] for i in ids) / len(ids))
            assert metrics[key] == split, (k, key)
        if k == TOP_K:
            # The two accuracies differ here, so that swapping them, or reporting the answer's paragraph as
            # paragraph selection's choice, shows.
            assert (sum(selection_right), sum(answer_right)) == (3, 4)
            assert metrics["answer_from_other_paragraph"]["questions"] == 1
        else:
            assert sum(selection_right) == sum(answer_right) == 3
    k3, k1 = (read_errors(top_k_runs / f"k{k}" / "analysis") for k in (TOP_K, 1))
    assert {i: r["paragraph_selection"] for i, r in k3.items()} == {i: r["paragraph_selection"] for i, r in k1.items()}
    assert sum(r["paragraph_selection"] != r["answer_paragraph"] for r in k3.values()) == 3


# ---------------------------------------------------------------------------------------------------------------------
# Ensembles of different members

# Paragraph models A and B over three candidates (the markers' scores above):
#   A (3.5, -3.5, 3.0): softmax (0.622, 0.0006, 0.377); B (2.0, 4.0, 3.0): (0.090, 0.665, 0.245).
# Mean of probabilities: candidate 0 (0.356 > 0.333 > 0.311); mean of logits (2.75, 0.25, 3.0) and the sum of log
# probabilities: candidate 2; the max of probabilities or of logits: candidate 1. The second question has the same
# numbers with the roles of A and B swapped (其 他 又) and the candidates in another order, so that neither member
# alone gives both answers.
ENSEMBLE_QUESTIONS = {"favourite-of-the-first-member": ["標", "另", "次"],
                      "favourite-of-the-second-member": ["他", "又", "其"]}
ENSEMBLE_SCORES = {
    "a": {"標": 3.5, "另": -3.5, "次": 3.0, "其": 2.0, "他": 4.0, "又": 3.0},
    "b": {"標": 2.0, "另": 4.0, "次": 3.0, "其": 3.5, "他": -3.5, "又": 3.0},
}
# Span models C and D on one paragraph holding 丙..丁 (from 2) then 甲..乙 (from 8): C prefers 甲..乙 (P 0.9), D
# 丙..丁 (P 0.8) and gives 甲..乙 almost nothing. Mean of probabilities: 甲..乙; mean of logits (甲, 乙 1.5, 丙, 丁
# 3.5): 丙..丁.
SPAN_ENSEMBLE_SCORES = {"c": ({"甲": 6.0, "丙": 3.0}, {"乙": 6.0, "丁": 3.0}),
                        "d": ({"甲": -3.0, "丙": 4.0}, {"乙": -3.0, "丁": 4.0})}
SPAN_PARAGRAPH = "天地丙玄黃丁宇宙甲洪荒日乙月盈昃"


@pytest.fixture(scope="module")
def ensemble_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble-data")
    context, questions = [SPAN_PARAGRAPH], []
    questions.append({"id": "spans", "question": QUESTION, "paragraphs": [0], "relevant": 0,
                      "answer": {"text": SPAN_PARAGRAPH[8:13], "start": 8}})
    for number, (name, markers) in enumerate(ENSEMBLE_QUESTIONS.items()):
        indices = []
        for position, marker in enumerate(markers):
            indices.append(len(context))
            context.append(planted_paragraph("sure", marker, seed=100 + 10 * number + position))
        questions.append({"id": name, "question": QUESTION, "paragraphs": indices, "relevant": indices[0],
                          "answer": {"text": context[indices[0]][1:7], "start": 1}})
    return {"root": root, "context_list": context, "questions": questions,
            "context": write_json(root / "context.json", context), "test": write_json(root / "valid.json", questions)}


def softmax(scores):
    return [math.exp(s) for s in log_softmax(scores)]


def test_paragraph_ensemble_averages_the_members_probabilities_not_their_logits(planted, ensemble_data):
    models, tokenizer = planted
    root, context = ensemble_data["root"], ensemble_data["context_list"]
    members = [models["mc-a"], models["mc-b"]]
    answers = infer(ensemble_data, root / "ab.csv", members, [models["qa"]], "--analysis_dir", root / "ab")
    answers_ba = infer(ensemble_data, root / "ba.csv", members[::-1], [models["qa"]])
    alone = [infer(ensemble_data, root / f"{n}.csv", [models[f"mc-{n}"]], [models["qa"]]) for n in ("a", "b")]
    errors = read_errors(root / "ab")
    for question in ensemble_data["questions"][1:]:
        markers = ENSEMBLE_QUESTIONS[question["id"]]
        a, b = ([ENSEMBLE_SCORES[n][m] for m in markers] for n in ("a", "b"))
        mean_probability = [(x + y) / 2 for x, y in zip(softmax(a), softmax(b))]
        winner = max(range(3), key=lambda c: mean_probability[c])
        # The other ways of combining choose other candidates, and so does each member alone.
        assert max(range(3), key=lambda c: a[c] + b[c]) != winner
        assert max(range(3), key=lambda c: log_softmax(a)[c] + log_softmax(b)[c]) != winner
        assert max(range(3), key=lambda c: max(softmax(a)[c], softmax(b)[c])) != winner
        assert max(range(3), key=lambda c: max(a[c], b[c])) != winner
        paragraph = context[question["paragraphs"][winner]]
        (start, end), span_log_prob = best_span(span_log_probs(tokenizer, paragraph, *SPAN_SCORES))
        assert answers[question["id"]] == answers_ba[question["id"]] == paragraph[start:end]
        assert {alone[0][question["id"]], alone[1][question["id"]]} != {paragraph[start:end]}
        best = errors[question["id"]]["nbest"][0]
        assert best["paragraph"] == question["paragraphs"][winner]
        assert best["score"] == pytest.approx(math.log(mean_probability[winner]) + span_log_prob, abs=2e-4)
        assert errors[question["id"]]["paragraph_selection"] == question["paragraphs"][winner]
    # Each member alone prefers its own favourite: the first question's answer is A's, the second's B's.
    first, second = ENSEMBLE_QUESTIONS
    assert answers[first] == alone[0][first] != alone[1][first]
    assert answers[second] == alone[1][second] != alone[0][second]


def test_span_ensemble_averages_the_members_span_probabilities_not_their_logits(planted, ensemble_data):
    models, tokenizer = planted
    root = ensemble_data["root"]
    by_hand = {n: span_log_probs(tokenizer, SPAN_PARAGRAPH, *SPAN_ENSEMBLE_SCORES[n]) for n in ("c", "d")}
    mean_probability = {span: (math.exp(by_hand["c"][span]) + math.exp(by_hand["d"][span])) / 2
                        for span in by_hand["c"]}
    (start, end), _ = best_span({span: math.log(p) for span, p in mean_probability.items()})
    averaged_logits = {n: ({c: (SPAN_ENSEMBLE_SCORES["c"][i][c] + SPAN_ENSEMBLE_SCORES["d"][i][c]) / 2
                            for c in SPAN_ENSEMBLE_SCORES["c"][i]}) for i, n in enumerate(("start", "end"))}
    (logit_start, logit_end), _ = best_span(span_log_probs(tokenizer, SPAN_PARAGRAPH, averaged_logits["start"],
                                                           averaged_logits["end"]))
    summed_logs = {span: by_hand["c"][span] + by_hand["d"][span] for span in by_hand["c"]}
    assert SPAN_PARAGRAPH[start:end] == "甲洪荒日乙"
    assert SPAN_PARAGRAPH[logit_start:logit_end] == SPAN_PARAGRAPH[slice(*max(summed_logs, key=summed_logs.get))] \
        == "丙玄黃丁"

    flags = ["--n_best_size", 200, "--analysis_dir"]
    answers = infer(ensemble_data, root / "cd.csv", [models["mc"]], [models["qa-c"], models["qa-d"]], *flags,
                    root / "cd")
    answers_dc = infer(ensemble_data, root / "dc.csv", [models["mc"]], [models["qa-d"], models["qa-c"]])
    alone = [infer(ensemble_data, root / f"{n}.csv", [models["mc"]], [models[f"qa-{n}"]])["spans"] for n in "cd"]
    assert answers["spans"] == answers_dc["spans"] == "甲洪荒日乙"
    assert alone == ["甲洪荒日乙", "丙玄黃丁"]
    # One candidate, so the scores are log P_ensemble(span): the n best, with their probabilities.
    nbest = read_errors(root / "cd")["spans"]["nbest"]
    ranked = sorted(mean_probability.items(), key=lambda item: -item[1])
    for answer, (span, probability) in zip(nbest[:3], ranked):  # the 4th ties with others
        assert (answer["start"], answer["start"] + len(answer["text"])) == span
        assert answer["score"] == pytest.approx(math.log(probability), abs=2e-4)
    assert [answer["score"] for answer in nbest[:12]] == pytest.approx(
        [math.log(probability) for _, probability in ranked[:12]], abs=2e-4)
