"""Exact match and character-level F1 for Chinese answers."""

import subprocess
import sys

import pytest

from conftest import ROOT
from metrics import compute_qa_metrics, normalize_answer


def test_normalization_ignores_width_case_space_and_punctuation():
    assert normalize_answer(" 景宗。") == "景宗"
    assert normalize_answer("ＡＢＣ－１２３") == normalize_answer("abc-123") == "abc123"
    assert normalize_answer("「臺北市」") == "臺北市"


def test_exact_match_and_f1_values():
    references = {"a": ["景宗"], "b": ["臺北市信義區"], "c": ["1951年"], "d": ["甲乙", "丙丁"]}
    predictions = {"a": "景宗。", "b": "臺北市", "c": "", "d": "丙丁"}
    metrics = compute_qa_metrics(predictions, references)
    # b: precision 3/3, recall 3/6 -> F1 2/3; d matches its second gold answer.
    assert metrics["exact_match"] == pytest.approx(50.0)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)


def test_missing_prediction_counts_as_empty():
    assert compute_qa_metrics({}, {"a": ["景宗"]}) == {"exact_match": 0.0, "f1": 0.0}


def test_repeated_characters_count_once_each():
    metrics = compute_qa_metrics({"a": "啊啊啊啊"}, {"a": ["啊啊"]})
    assert metrics["f1"] == pytest.approx(100 * 2 * (0.5 * 1.0) / 1.5)


def test_one_shared_character_gives_its_f1():
    # precision 1/1, recall 1/2: F1 2/3.
    assert compute_qa_metrics({"a": "景"}, {"a": ["景宗"]})["f1"] == pytest.approx(100 * 2 / 3)


def test_a_missing_prediction_shares_no_character_with_any_gold_answer():
    assert compute_qa_metrics({}, {"a": ["XX"], "b": ["x"]}) == {"exact_match": 0.0, "f1": 0.0}


def test_an_answer_sharing_no_character_with_the_gold_one_gets_no_f1():
    assert compute_qa_metrics({"a": "甲乙"}, {"a": ["丙"]}) == {"exact_match": 0.0, "f1": 0.0}


def test_the_metrics_and_the_modules_that_only_compare_strings_import_without_torch():
    """metrics.py holds no torch: converting SQuAD data or scoring answers does not pay torch's import (seconds)."""
    code = ("import sys, metrics, analysis, convert_squad, adl_data, outputs, cli; "
            "sys.exit('torch' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
