"""decoding.py (how inference.py chooses an answer from the scores) and analysis.category, piece by piece, against
values worked out by hand: the end-to-end checks of the same rules are in test_joint_and_ensembles.py. Fast: these are
the tests that benchmarks/mutation_test.sh runs for decoding.py."""

import math
import warnings

import numpy as np
import pytest

import analysis
import decoding

# ---------------------------------------------------------------------------------------------------------------------
# The pieces at their edges: ties, probabilities that underflow, answers next to the gold one


def test_tied_paragraphs_keep_the_candidates_order_however_many_there_are():
    """Stable beyond the 16 elements that numpy sorts by insertion (stable by chance) in its default sort."""
    log_probs = np.array([0.0, -1.0, -1.0, 0.0, -1.0] * 10)
    expected = [i for i in range(50) if i % 5 in (0, 3)] + [i for i in range(50) if i % 5 in (1, 2, 4)]
    assert decoding.top_paragraphs(log_probs, 50) == expected
    assert decoding.top_paragraphs(log_probs, 3) == [0, 3, 5]


def test_probabilities_that_underflow_to_zero_give_minus_infinity_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decoding.paragraph_log_probs([[0.0, -2000.0]]).tolist() == [0.0, -math.inf]
        # One model gives the span probability 1, the other gives it e^-2000 = 0 and another span e^-1000 = 0.
        merged = decoding.merge_span_candidates(
            [
                decoding.SpanCandidates(np.array([0]), np.array([2]), np.array([0.0])),
                decoding.SpanCandidates(np.array([0, 5]), np.array([2, 7]), np.array([-2000.0, -1000.0])),
            ],
            n_best_size=5,
        )
    assert merged.starts.tolist() == [0, 5] and merged.ends.tolist() == [2, 7]
    assert merged.log_probs.tolist() == [math.log(0.5), -math.inf]


def test_an_answer_touching_the_gold_answer_does_not_overlap_it():
    question = {"relevant": 3, "answer": {"text": "乙丙", "start": 5}}  # the gold characters are [5, 7)
    assert analysis.category(question, 3, 5, 7, "乙丙") == "right"
    assert analysis.category(question, 4, 5, 7, "乙丁") == "wrong paragraph"
    assert analysis.category(question, 3, 4, 6, "甲乙") == "partial overlap"
    assert analysis.category(question, 3, 6, 8, "丙丁") == "partial overlap"
    assert analysis.category(question, 3, 3, 5, "甲甲") == "wrong span"  # ends where the gold answer starts
    assert analysis.category(question, 3, 7, 9, "丁丁") == "wrong span"  # starts where it ends
    assert analysis.category(question, 3, 0, 2, "戊戊") == "wrong span"


# ---------------------------------------------------------------------------------------------------------------------
# Each function on values worked out by hand


def test_paragraph_probabilities_are_each_models_softmax_averaged():
    # Model 1: softmax(0, log 3) = (1/4, 3/4); model 2: (1/2, 1/2); their mean (3/8, 5/8).
    log_probs = decoding.paragraph_log_probs([[0.0, math.log(3.0)], [5.0, 5.0]])
    assert log_probs.tolist() == pytest.approx([math.log(3 / 8), math.log(5 / 8)], abs=1e-12)


def test_paragraph_probabilities_of_large_or_float32_scores_are_exact():
    """Scores far from 0 do not overflow, and float32 scores (as models give them) are worked in float64: in float32,
    e^-100 is a denormal and its log is -99.98."""
    large = decoding.paragraph_log_probs([[1000.0, 999.0]])
    assert large.tolist() == pytest.approx([-math.log1p(math.exp(-1)), -1 - math.log1p(math.exp(-1))], abs=1e-12)
    far = decoding.paragraph_log_probs([np.array([0.0, -100.0], dtype=np.float32)])
    assert far.tolist() == pytest.approx([0.0, -100.0], abs=1e-9)


def test_one_models_span_candidates_are_returned_as_they_are():
    candidates = decoding.SpanCandidates(np.array([3, 0]), np.array([5, 2]), np.array([-0.1, -2.4]))
    assert decoding.merge_span_candidates([candidates], n_best_size=1) is candidates


def test_an_ensemble_ranks_spans_by_their_mean_probability_then_the_first_models_order():
    first = decoding.SpanCandidates(np.array([5, 0, 8]), np.array([7, 2, 9]), np.log([0.7, 0.3, 1e-9]))
    second = decoding.SpanCandidates(np.array([0, 5]), np.array([2, 7]), np.log([0.6, 0.4]))
    merged = decoding.merge_span_candidates([first, second], n_best_size=2)
    # (5, 7): (0.7 + 0.4) / 2 = 0.55 before (0, 2): (0.3 + 0.6) / 2 = 0.45, whatever their places; (8, 9) cut.
    assert merged.starts.tolist() == [5, 0] and merged.ends.tolist() == [7, 2]
    assert merged.log_probs.tolist() == pytest.approx([math.log(0.55), math.log(0.45)], abs=1e-12)
    tied = decoding.merge_span_candidates(
        [
            decoding.SpanCandidates(np.array([3, 0]), np.array([4, 2]), np.log([0.5, 0.5])),
            decoding.SpanCandidates(np.array([0, 3]), np.array([2, 4]), np.log([0.5, 0.5])),
        ],
        n_best_size=5,
    )
    assert tied.starts.tolist() == [3, 0] and tied.ends.tolist() == [4, 2]


def test_models_without_any_span_give_no_candidates_with_the_arrays_types():
    empty = decoding.SpanCandidates.empty()
    merged = decoding.merge_span_candidates([empty, decoding.SpanCandidates.empty()], n_best_size=5)
    for candidates in (empty, merged):
        assert [candidates.starts.shape, candidates.ends.shape, candidates.log_probs.shape] == [(0,), (0,), (0,)]
        assert [candidates.starts.dtype, candidates.ends.dtype, candidates.log_probs.dtype] == [
            np.int64,
            np.int64,
            np.float64,
        ]


def test_decode_scores_each_span_by_its_paragraph_and_keeps_the_n_best():
    """P(paragraph 7) = 0.6 and its spans have 0.5 each: 0.3; P(paragraph 2) = 0.4 and its span 0.9: 0.36, best even
    though paragraph 2 is decoded second; the tie at 0.3 keeps the spans' order; n_best_size 2 cuts the third."""
    context = [""] * 8
    context[7], context[2] = "甲乙丙丁", "戊己庚"
    answers = decoding.decode(
        [7, 2],
        np.log([0.6, 0.4]),
        [
            decoding.SpanCandidates(np.array([2, 0]), np.array([4, 2]), np.log([0.5, 0.5])),
            decoding.SpanCandidates(np.array([1]), np.array([3]), np.log([0.9])),
        ],
        context,
        n_best_size=2,
    )
    assert [(a.paragraph, a.start, a.end, a.text) for a in answers] == [(2, 1, 3, "己庚"), (7, 2, 4, "丙丁")]
    assert [a.score for a in answers] == pytest.approx([math.log(0.36), math.log(0.3)], abs=1e-12)
    assert decoding.joint_score(math.log(0.5), np.log([0.5, 0.2])).tolist() == pytest.approx(
        [math.log(0.25), math.log(0.1)], abs=1e-12
    )


def test_decode_of_paragraphs_without_spans_gives_no_answer():
    context = ["甲乙", "丙丁"]
    assert decoding.decode([1, 0], [0.0, -1.0], [decoding.SpanCandidates.empty()] * 2, context, n_best_size=5) == []
    one = decoding.decode(
        [1, 0],
        [-0.1, -2.0],
        [decoding.SpanCandidates.empty(), decoding.SpanCandidates(np.array([0]), np.array([1]), np.array([0.0]))],
        context,
        n_best_size=5,
    )
    assert [(a.paragraph, a.start, a.end, a.text, a.score) for a in one] == [(0, 0, 1, "甲", -2.0)]
