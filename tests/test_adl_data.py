"""Reading and validating ADL files; writing the submission CSV."""

import csv
import io
import json
import logging
import os

import pytest

from adl_data import load_context, load_questions, locate_answer, to_multiple_choice_examples, to_squad_examples
from cli import InputError
from outputs import OutputPlan, binary, check_output_path, csv_field, json_text, write_atomically, write_predictions_csv

CONTEXT = ["景宗是朝鮮王朝的第二十代君主。", "辛壬士禍發生於景宗在位時，景宗在位四年。", "臺北市是臺灣的首都。"]


def good_record(**changes):
    record = {"id": "q1", "question": "辛壬士禍發生於誰在位時?", "paragraphs": [0, 1, 2], "relevant": 0,
              "answer": {"text": "景宗", "start": 0}}
    record.update(changes)
    return record


def write(tmp_path, value, name="train.json"):
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def load(tmp_path, records, **needs):
    return load_questions(write(tmp_path, records), CONTEXT, **needs)


def test_good_file_is_read_with_only_the_fields_asked_for(tmp_path):
    record = good_record(extra="ignored")
    assert load(tmp_path, [record]) == [{"id": "q1", "question": record["question"], "paragraphs": [0, 1, 2]}]
    full = load(tmp_path, [record], need_answer=True)[0]
    assert full["relevant"] == 0 and full["answer"] == {"text": "景宗", "start": 0}


def test_test_file_without_labels_is_fine_unless_labels_are_needed(tmp_path):
    record = {"id": "t1", "question": "問題?", "paragraphs": [2, 0]}
    assert load(tmp_path, [record])[0]["paragraphs"] == [2, 0]
    with pytest.raises(InputError, match=r"record 0 \(id 't1'\): field 'relevant': missing"):
        load(tmp_path, [record], need_relevant=True)


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "file is empty"),
        ("[", "not valid JSON"),
        ('[{"id": "q1", "question": "問"', "not valid JSON"),
        ("{}", "expected a JSON list of questions, found an object"),
        ("[]", "contains no questions"),
        ("[3]", r"record 0: expected a JSON object, found a number"),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        load(tmp_path, content)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"id": 7}, "field 'id': expected a string, found a number"),
        ({"id": " "}, "field 'id': is empty"),
        ({"question": ""}, "field 'question': is empty"),
        ({"question": None}, "field 'question': expected a string, found null"),
        ({"paragraphs": []}, "field 'paragraphs': is empty"),
        ({"paragraphs": "0,1"}, "field 'paragraphs': expected a list"),
        ({"paragraphs": [0, 3]}, r"field 'paragraphs'\[1\]: paragraph index 3 is out of range \(the context file has 3"),
        ({"paragraphs": [-1, 0]}, r"field 'paragraphs'\[0\]: paragraph index -1 is out of range"),
        ({"paragraphs": [0, "1"]}, r"field 'paragraphs'\[1\]: expected a paragraph index \(integer\), found a string"),
        ({"paragraphs": [0, True]}, r"field 'paragraphs'\[1\]: expected a paragraph index \(integer\), found a boolean"),
        ({"relevant": 2, "paragraphs": [0, 1]}, r"field 'relevant': paragraph 2 is not among 'paragraphs' \[0, 1\]"),
        ({"relevant": 1.0}, "field 'relevant': expected an integer, found a number"),
        ({"answer": "景宗"}, "field 'answer': expected an object"),
        ({"answer": {"text": "景宗"}}, "field 'answer': field 'start': missing"),
        ({"answer": {"start": 0}}, "field 'answer': field 'text': missing"),
        ({"answer": {"text": "景\u0000宗", "start": 0}}, r"field 'answer\.text': character 1 is '\\x00'"),
        ({"answer": {"text": "", "start": 0}}, "field 'answer.text': is empty"),
        ({"answer": {"text": "世宗", "start": 0}}, r"'世宗' does not occur in paragraph 0"),
    ],
)
def test_bad_fields_name_file_record_and_field(tmp_path, changes, message):
    records = [good_record(id="q0"), good_record(**changes)]
    with pytest.raises(InputError, match=message) as error:
        load(tmp_path, records, need_answer=True)
    text = str(error.value)
    assert text.startswith(str(tmp_path / "train.json")) and "record 1" in text and "\n" not in text


def test_missing_field(tmp_path):
    record = good_record()
    del record["question"]
    with pytest.raises(InputError, match=r"record 0 \(id 'q1'\): field 'question': missing"):
        load(tmp_path, [record])


def test_duplicate_ids(tmp_path):
    with pytest.raises(InputError, match=r"record 1 \(id 'q1'\): field 'id': duplicate of record 0"):
        load(tmp_path, [good_record(), good_record()])


def test_answer_start_is_repaired_when_the_text_occurs_once(tmp_path, caplog):
    record = good_record(relevant=2, answer={"text": "臺灣", "start": 0})
    with caplog.at_level(logging.WARNING):
        answer = load(tmp_path, [record], need_answer=True)[0]["answer"]
    assert answer == {"text": "臺灣", "start": 4}
    assert "repaired to 4" in caplog.text and "record 0" in caplog.text


def test_answer_start_is_an_error_when_the_text_occurs_several_times(tmp_path):
    record = good_record(relevant=1, answer={"text": "景宗", "start": 3})
    with pytest.raises(InputError, match=r"occurs 2 times in paragraph 1 \(at \[7, 13\]\)"):
        load(tmp_path, [record], need_answer=True)


def test_locate_answer_says_where_without_raising():
    paragraph = CONTEXT[1]  # 景宗 at 7 and 13
    assert locate_answer(paragraph, "景宗", 7) == (7, [])
    assert locate_answer(paragraph, "四年", 0) == (paragraph.index("四年"), [paragraph.index("四年")])
    assert locate_answer(paragraph, "景宗", 0) == (None, [7, 13])
    assert locate_answer(paragraph, "世宗", 0) == (None, [])
    assert locate_answer(paragraph, "辛壬", -1) == (0, [0])


def test_an_answer_at_the_paragraphs_first_character_is_where_it_says_even_when_it_occurs_again():
    """Start 0 is a valid start: the answer is taken there, not searched for (甲乙 occurs twice, so a search fails)."""
    assert locate_answer("甲乙甲乙", "甲乙", 0) == (0, [])


def test_a_binary_writer_gets_a_binary_file_and_a_text_writer_a_utf8_one_without_newline_translation(tmp_path):
    """What OutputPlan.write opens for each writer: bytes as they are for a figure (binary), text in UTF-8 otherwise.
    And strict JSON: NaN is our bug, never written as the non-JSON NaN."""
    plan = OutputPlan()
    figure, table = plan.add(tmp_path / "figure.png"), plan.add(tmp_path / "pred.csv")
    plan.write({figure: binary(lambda file: file.write(b"\x89PNG\r\n")), table: lambda file: file.write("id,景宗\n")})
    assert figure.read_bytes() == b"\x89PNG\r\n"
    assert table.read_bytes() == "id,景宗\n".encode("utf-8")
    assert json_text({"景": [1.5, None]}, indent=1) == '{\n "景": [\n  1.5,\n  null\n ]\n}'
    with pytest.raises(ValueError):
        json_text({"score": float("nan")})


def test_csv_field_quotes_each_thing_a_reader_could_split_or_trim_and_nothing_else():
    assert csv_field("a,b") == '"a,b"'  # a comma alone
    assert csv_field('說"好"') == '"說""好"""'  # a quote alone, doubled
    assert csv_field(" a") == '" a"' and csv_field("a ") == '"a "'
    assert csv_field("a\nb") == '"a\nb"' and csv_field("a\u2028b") == '"a\u2028b"'
    assert csv_field("景宗") == "景宗" and csv_field("甲，乙") == "甲，乙" and csv_field("") == ""  # full-width comma


def test_an_answer_occurring_again_inside_itself_is_not_repaired():
    """Overlapping occurrences count: 哈哈 is at 0, 1 and 4 of 哈哈哈，哈哈, so a wrong start cannot be repaired."""
    assert locate_answer("哈哈哈，哈哈", "哈哈", 2) == (None, [0, 1, 4])
    assert locate_answer("哈哈哈", "哈哈", 5) == (None, [0, 1])


def test_context_file_checks(tmp_path):
    assert load_context(write(tmp_path, CONTEXT, "context.json")) == CONTEXT
    with pytest.raises(InputError, match="no such file"):
        load_context(tmp_path / "missing.json")
    with pytest.raises(InputError, match="expected a JSON list of paragraph strings"):
        load_context(write(tmp_path, {"0": "段落"}, "context.json"))
    with pytest.raises(InputError, match="paragraph 1: is empty"):
        load_context(write(tmp_path, ["段落", "  "], "context.json"))
    with pytest.raises(InputError, match="paragraph 0: expected a string"):
        load_context(write(tmp_path, [1], "context.json"))


def test_non_utf8_and_bom(tmp_path):
    path = tmp_path / "context.json"
    path.write_bytes(json.dumps(["段落"], ensure_ascii=False).encode("big5"))
    with pytest.raises(InputError, match=r"not UTF-8 \(invalid byte 0x"):
        load_context(path)
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(["段落"], ensure_ascii=False).encode("utf-8"))
    assert load_context(path) == ["段落"]


def test_squad_examples_use_the_chosen_paragraph(tmp_path):
    questions = load(tmp_path, [good_record(relevant=1, answer={"text": "辛壬士禍", "start": 0})], need_answer=True)
    examples = to_squad_examples(questions, CONTEXT)
    assert examples["context"] == [CONTEXT[1]]
    assert examples["answers"] == [{"text": ["辛壬士禍"], "answer_start": [0]}]
    without_answer = [{key: value for key, value in questions[0].items() if key != "answer"}]
    assert "answers" not in to_squad_examples(without_answer, CONTEXT)


def test_multiple_choice_examples_label_the_relevant_candidate(tmp_path):
    questions = load(tmp_path, [good_record(paragraphs=[2, 1, 0], relevant=1)], need_relevant=True)
    examples = to_multiple_choice_examples(questions, CONTEXT)
    assert examples == {"question": [questions[0]["question"]], "candidates": [[CONTEXT[2], CONTEXT[1], CONTEXT[0]]],
                        "label": [1]}
    test_questions = load(tmp_path, [good_record(paragraphs=[2, 1, 0], relevant=1)])
    assert "label" not in to_multiple_choice_examples(test_questions, CONTEXT)


def test_csv_quotes_commas_quotes_and_newlines_and_keeps_order(tmp_path):
    answers = {"b": "景宗", "a": '他說:"好",然後', "c": "第一行\n第二行", "d": ""}
    path = write_predictions_csv(tmp_path / "sub" / "pred.csv", ["b", "a", "c", "d"], answers)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("id,answer\nb,景宗\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["id", "answer"], ["b", "景宗"], ["a", '他說:"好",然後'], ["c", "第一行\n第二行"], ["d", ""]]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    def fail(file):
        file.write("id,answer\n")
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "pred.csv", fail)
    assert list(tmp_path.iterdir()) == []


def test_output_path_checks(tmp_path):
    with pytest.raises(InputError, match="output path is a directory"):
        check_output_path(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create the output folder"):
        check_output_path(blocker / "pred.csv")


def test_written_files_get_the_usual_permissions(tmp_path):
    old_umask = os.umask(0o022)
    try:
        path = write_predictions_csv(tmp_path / "pred.csv", ["a"], {"a": "景宗"})
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o644
