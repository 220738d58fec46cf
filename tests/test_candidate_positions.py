"""Where the relevant paragraph lands among a question's candidates in training data: the per-question shuffle of the
joined candidates for the end-to-end model (adl_data.to_squad_examples, context_mode="candidates", shuffle_seed) and
convert_squad.py's random position of the gold paragraph among --num_candidates. Over thousands of questions the
position must be close to uniform over every slot (a chi-square bound: a fixed permutation, a missing slot or a gold
paragraph that is never last fails it), independent from one question to the next, and different for another seed.
Seeds are fixed, so the tests are deterministic: the bounds are those of p = 0.001."""

import collections
import itertools
import random

import pytest

import convert_squad
from adl_data import load_context, to_squad_examples
from conftest import read_json, write_json

QUESTIONS = 4000
SLOTS = 4
# Chi-square at p = 0.001 with 3, 15 and 23 degrees of freedom (4 slots, 4 x 4 pairs of slots, 24 permutations).
CHI2_3, CHI2_15, CHI2_23 = 16.27, 37.70, 49.73


def chi_square(counts, cells):
    expected = sum(counts.values()) / len(cells)
    return sum((counts.get(cell, 0) - expected) ** 2 / expected for cell in cells)


def assert_uniform_and_independent(slots):
    """`slots`: the relevant paragraph's position of each question, in question order."""
    counts = collections.Counter(slots)
    assert sorted(counts) == list(range(SLOTS))
    assert chi_square(counts, range(SLOTS)) < CHI2_3, counts
    # One question's slot says nothing about the next one's.
    pairs = collections.Counter(zip(slots[0::2], slots[1::2]))
    assert chi_square(pairs, list(itertools.product(range(SLOTS), repeat=2))) < CHI2_15, pairs


# ---------------------------------------------------------------------------------------------------------------------
# adl_data.to_squad_examples(context_mode="candidates", shuffle_seed=...)


@pytest.fixture(scope="module")
def candidate_questions():
    """QUESTIONS questions over a context of 40 paragraphs, 4 candidates each, the relevant one always first in the
    file (so a shuffle that does not move it shows), its answer the paragraph's first two characters."""
    generator = random.Random(5)
    context = [f"第{index}段" + "".join(generator.choice("天地玄黃宇宙洪荒") for _ in range(8)) for index in range(40)]
    assert len(set(context)) == len(context)
    questions = []
    for number in range(QUESTIONS):
        candidates = generator.sample(range(len(context)), SLOTS)
        questions.append({"id": f"q{number}", "question": "問題", "paragraphs": candidates, "relevant": candidates[0],
                          "answer": {"text": context[candidates[0]][:2], "start": 0}})
    return context, questions


def joined_orders(context, questions, seed):
    """The permutation of each question's candidates (file positions in the order joined), and the columns."""
    columns = to_squad_examples(questions, context, context_mode="candidates", shuffle_seed=seed)
    orders = [tuple(question["paragraphs"].index(context.index(text)) for text in texts)
              for question, texts in zip(questions, columns["candidates"])]
    return orders, columns


def test_the_joined_candidates_are_shuffled_uniformly_and_independently_per_question(candidate_questions):
    context, questions = candidate_questions
    orders, columns = joined_orders(context, questions, seed=42)
    assert all(sorted(order) == list(range(SLOTS)) for order in orders)
    assert_uniform_and_independent([order.index(0) for order in orders])
    # Every one of the 24 permutations, about as often as the others.
    permutations = collections.Counter(orders)
    assert chi_square(permutations, list(itertools.permutations(range(SLOTS)))) < CHI2_23, permutations
    # The answer is still where the labels say, in the joined text.
    for question, text, answers in zip(questions, columns["context"], columns["answers"]):
        start = answers["answer_start"][0]
        assert text[start : start + len(answers["text"][0])] == question["answer"]["text"]
        assert text[start:].startswith(context[question["relevant"]])


def test_the_shuffle_depends_on_the_seed_and_question_id_only(candidate_questions):
    """The same seed gives each question the same order, whatever the other questions and their order; another seed
    another order (the same for about 1 in 24 questions); without a seed, the file order."""
    context, questions = candidate_questions
    orders, _ = joined_orders(context, questions, seed=42)
    again, _ = joined_orders(context, questions, seed=42)
    assert again == orders
    subset = questions[::-7]  # other neighbours, reversed
    alone, _ = joined_orders(context, subset, seed=42)
    assert alone == orders[::-7]
    other, _ = joined_orders(context, questions, seed=43)
    same = sum(a == b for a, b in zip(orders, other)) / len(orders)
    assert same < 0.06, same  # 1/24 = 0.042 expected
    assert_uniform_and_independent([order.index(0) for order in other])
    unshuffled, _ = joined_orders(context, questions, seed=None)
    assert set(unshuffled) == {tuple(range(SLOTS))}


# ---------------------------------------------------------------------------------------------------------------------
# convert_squad.py: the gold paragraph's random position among --num_candidates


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory):
    """A SQuAD file of 40 paragraphs with 100 questions each; each paragraph's answer is a word of its own, so any
    other paragraph can be a negative."""
    generator = random.Random(9)
    paragraphs = []
    for index in range(40):
        answer = f"答案{index:02d}號"
        text = "".join(generator.choice("天地玄黃宇宙洪荒日月盈昃") for _ in range(20))
        paragraphs.append({"context": text + answer + "。", "qas": [
            {"id": f"p{index}-q{number}", "question": f"第{index}段的第{number}問{text[number % 20]}是什麼?",
             "answers": [{"text": answer, "answer_start": len(text)}]}
            for number in range(QUESTIONS // 40)]})
    return write_json(tmp_path_factory.mktemp("squad-many") / "squad.json",
                      {"version": "test", "data": [{"title": "t", "paragraphs": paragraphs}]})


def converted_slots(squad_file, output_dir, seed):
    convert_squad.main([str(squad_file), "--output_dir", str(output_dir), "--num_candidates", str(SLOTS),
                        "--seed", str(seed)])
    load_context(output_dir / "context.json")
    records = read_json(output_dir / "train.json")
    assert len(records) == QUESTIONS and all(len(set(r["paragraphs"])) == SLOTS for r in records)
    return [r["paragraphs"].index(r["relevant"]) for r in records]


def test_convert_squad_puts_the_gold_paragraph_uniformly_in_every_slot(squad_file, tmp_path):
    slots = converted_slots(squad_file, tmp_path / "seed0", seed=0)
    assert_uniform_and_independent(slots)
    other = converted_slots(squad_file, tmp_path / "seed1", seed=1)
    assert_uniform_and_independent(other)
    same = sum(a == b for a, b in zip(slots, other)) / len(slots)
    assert 0.2 < same < 0.3, same  # 1/4 expected
