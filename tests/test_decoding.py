"""decoding.py (how inference.py chooses an answer from the scores) and analysis.category, piece by piece, against
values worked out by hand: the end-to-end checks of the same rules are in test_joint_and_ensembles.py. Fast: these are
the tests that benchmarks/mutation_test.sh runs for decoding.py."""

import math
import warnings

import numpy as np

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
