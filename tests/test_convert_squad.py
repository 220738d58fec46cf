"""convert_squad.py: SQuAD-format files to ADL context.json + train.json, on small hand-made SQuAD files."""

import json

import pytest
from conftest import SAMPLES, read_json, run_script, write_json

import convert_squad
import outputs
from adl_data import load_context, load_questions
from cli import InputError
from convert_squad import EXCLUDED, REPAIRED, SquadQuestion, convert, hard_negatives, read_squad_files

CITIES = [
    "臺北市是中華民國的首都，位於臺灣北部的臺北盆地。臺北101曾是世界最高的建築。",
    "高雄市位於臺灣南部，是重要的港口城市。高雄港是臺灣最大的港口。",
    "臺中市位於臺灣中部，氣候溫和。臺中的太陽餅很有名。",
    "臺南市是臺灣最古老的城市，有許多古蹟。赤崁樓位於臺南。",
    "新竹市以科學園區聞名，風很大，被稱為風城。",
    "花蓮縣位於臺灣東部，有太魯閣國家公園。",
    "宜蘭縣位於臺灣東北部，以溫泉和冬山河聞名。",
    "基隆市是臺灣北部的港口城市，經常下雨，被稱為雨港。",
    "澎湖是一群島嶼，夏天有花火節。",
]


def qa(question_id, question, *answers):
    return {"id": question_id, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers]}


def squad(*paragraphs):
    return {
        "version": "test",
        "data": [{"title": "城市", "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs]}],
    }


CITY_QUESTIONS = [
    # Several answers: the first is kept.
    (CITIES[0], [qa("capital", "臺灣的首都是哪一個城市?", ("臺北市", 0), ("臺北", 0))]),
    # answer_start off, the text occurs once: repaired to 19.
    (CITIES[1], [qa("harbour", "臺灣最大的港口是哪一個?", ("高雄港", 3))]),
    (CITIES[2], [qa("cake", "太陽餅是哪個城市有名的食物?", ("臺中", 0))]),
    # answer_start off, the text occurs twice: dropped.
    (CITIES[3], [qa("oldest", "臺灣最古老的城市是哪裡?", ("臺南", 5))]),
    (CITIES[4], [qa("windy", "哪個城市被稱為風城?", ("新竹市", 0)), qa("absent", "新竹市以什麼聞名?", ("竹子", 0))]),
    # Unanswerable (SQuAD 2.0 style): dropped.
    (CITIES[5], [qa("unanswerable", "花蓮縣的人口有多少?")]),
    (CITIES[6], [qa("springs", "宜蘭縣以什麼聞名?", ("溫泉和冬山河", 12))]),
    # "臺灣" is in 7 of the 9 paragraphs: the question keeps the 2 others and its own as candidates.
    (
        CITIES[7],
        [qa("rainy", "被稱為雨港的是哪個城市?", ("基隆市", 0)), qa("island", "基隆市在哪裡的北部?", ("臺灣", 4))],
    ),
    (CITIES[8], [qa("fireworks", "澎湖夏天有什麼活動?", ("花火節", 11))]),
]
KEPT = ["capital", "harbour", "cake", "windy", "springs", "rainy", "island", "fireworks"]


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory):
    return write_json(tmp_path_factory.mktemp("squad") / "cities.json", squad(*CITY_QUESTIONS))


def convert_files(output_dir, *inputs, options=()):
    """Runs the converter; returns the context, the records of train.json as written, and the report."""
    report = convert_squad.main([*map(str, inputs), "--output_dir", str(output_dir), *options])
    context = load_context(output_dir / "context.json")
    records = read_json(output_dir / "train.json")
    # Valid as written: load_questions would repair an answer not at its start, and the records would differ.
    assert load_questions(output_dir / "train.json", context, need_answer=True) == records
    return context, records, report


@pytest.fixture(scope="module")
def converted(squad_file, tmp_path_factory):
    """The cities converted with 3 candidates (so that "island" has enough paragraphs without its answer)."""
    return convert_files(tmp_path_factory.mktemp("converted"), squad_file, options=["--num_candidates", "3"])


def test_every_question_is_valid_with_its_answer_at_its_offset(converted):
    context, questions, _ = converted
    assert [q["id"] for q in questions] == KEPT
    assert sorted(context) == sorted(CITIES)
    for question in questions:
        answer, paragraph = question["answer"], context[question["relevant"]]
        assert paragraph[answer["start"] : answer["start"] + len(answer["text"])] == answer["text"]
        assert len(question["paragraphs"]) == len(set(question["paragraphs"])) == 3
    by_id = {q["id"]: q for q in questions}
    assert by_id["capital"]["answer"] == {"text": "臺北市", "start": 0}
    assert by_id["harbour"]["answer"] == {"text": "高雄港", "start": 19}


def test_no_negative_contains_the_answer(converted):
    context, questions, _ = converted
    for question in questions:
        negatives = [p for p in question["paragraphs"] if p != question["relevant"]]
        assert not [p for p in negatives if question["answer"]["text"] in context[p]], question["id"]
    island = next(q for q in questions if q["id"] == "island")
    assert sorted(context[p] for p in island["paragraphs"]) == sorted([CITIES[4], CITIES[7], CITIES[8]])


def test_report_counts_repairs_and_drops(converted, squad_file):
    counts = converted[2][str(squad_file)]
    assert counts["read"] == 11 and counts["kept"] == 8 and counts[REPAIRED] == 1 and counts[EXCLUDED] == 0
    assert {outcome: n for outcome, n in counts.items() if outcome.startswith("dropped")} == {
        convert_squad.ANSWER_AMBIGUOUS: 1,
        convert_squad.ANSWER_ABSENT: 1,
        convert_squad.NO_ANSWER: 1,
    }
    line = convert_squad.report_lines(converted[2])[0]
    assert "11 questions read, 8 kept (1 with a repaired answer_start), 3 dropped, 0 excluded" in line


def test_same_seed_same_files_and_the_relevant_paragraph_moves(converted, squad_file, tmp_path):
    options = ["--num_candidates", "3"]
    for name, seed in [("first", "0"), ("again", "0"), ("seed1", "1")]:
        convert_files(tmp_path / name, squad_file, options=[*options, "--seed", seed])
    for name in ["context.json", "train.json"]:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    first = read_json(tmp_path / "first" / "train.json")
    assert first == converted[1]  # --seed 0 is the default
    positions = [q["paragraphs"].index(q["relevant"]) for q in first]
    assert len(set(positions)) > 1
    other_seed = read_json(tmp_path / "seed1" / "train.json")
    assert [q["paragraphs"].index(q["relevant"]) for q in other_seed] != positions
    assert [sorted(q["paragraphs"]) for q in other_seed] == [sorted(q["paragraphs"]) for q in first]


def test_hard_negatives_are_the_most_similar_paragraphs_without_the_answer():
    paragraphs = [
        "北極熊住在北極，北極熊吃海豹。",
        "北極熊是白色的，北極熊也吃海豹。",
        "企鵝住在南極。",
        "北極的冬天很冷。",
        "北極熊是白色的大型熊。",
    ]
    question = SquadQuestion("bear", "北極熊吃什麼?", 0, [], "test")
    answer = {"text": "海豹", "start": 12}
    assert hard_negatives(paragraphs, [question], [answer], 2) == [[4, 3]]
    assert hard_negatives(paragraphs, [question], [answer], 3) == [[4, 3, 2]]
    assert hard_negatives(paragraphs, [question], [answer], 4) == [None]
    assert hard_negatives(paragraphs, [question], [answer], 0) == [[]]


def test_each_outcome_of_an_answer_check():
    """checked_answer on hand-made questions: the answer at answer_start, repaired to its only occurrence, absent,
    ambiguous (twice elsewhere), and each of question, answer and paragraph empty."""
    paragraphs = ["甲乙丙甲乙", "丁戊己"]

    def check(question="問?", paragraph=0, text="丙", start=2):
        return convert_squad.checked_answer(
            SquadQuestion("q", question, paragraph, [{"text": text, "answer_start": start}], "f"), paragraphs, set()
        )

    assert check() == ({"text": "丙", "start": 2}, convert_squad.AS_GIVEN)
    assert check(start=0) == ({"text": "丙", "start": 2}, REPAIRED)
    assert check(text="庚") == (None, convert_squad.ANSWER_ABSENT)
    assert check(text="甲乙", start=1) == (None, convert_squad.ANSWER_AMBIGUOUS)
    for empty in [{"question": " "}, {"text": " "}, {"paragraph": None}]:
        assert check(**empty) == (None, convert_squad.EMPTY_TEXT), empty


def test_the_report_counts_every_question_and_a_drop_skips_only_its_question():
    """Four answers as given and one repaired; the first and the last question have too few paragraphs without their
    answer (甲 is in all but one), the three between them are kept. An id twice among the converted questions names
    the file of the first."""
    paragraphs = ["甲乙", "甲丙", "甲丁", "戊己"]
    questions = [SquadQuestion("a", "甲?", 0, [{"text": "甲", "answer_start": 0}], "f"),
                 SquadQuestion("b", "戊?", 3, [{"text": "戊", "answer_start": 0}], "f"),
                 SquadQuestion("c", "己?", 3, [{"text": "己", "answer_start": 1}], "f"),
                 SquadQuestion("d", "丙?", 1, [{"text": "丙", "answer_start": 0}], "f"),
                 SquadQuestion("e", "甲?", 2, [{"text": "甲", "answer_start": 0}], "f")]
    _, records, report = convert(questions, paragraphs, num_candidates=3, seed=0)
    assert [record["id"] for record in records] == ["b", "c", "d"]
    assert report["f"] == {"read": 5, convert_squad.AS_GIVEN: 4, REPAIRED: 1, convert_squad.TOO_FEW_NEGATIVES: 2,
                           "kept": 3}  # fmt: skip
    twice = [SquadQuestion("x", "甲?", 0, [], "first.json"), SquadQuestion("x", "乙?", 0, [], "second.json")]
    with pytest.raises(InputError, match=r"second.json: question id 'x': also in first.json"):
        convert_squad.check_unique_ids(twice, [], None)


def test_hard_negatives_tied_in_similarity_keep_the_paragraph_order():
    """21 paragraphs: the gold one, then 20 in two groups of equal texts (so equal scores) interleaved: 甲乙丙 shares
    the question's bigram 甲乙, 丁戊己 shares nothing. The negatives: the first group in paragraph order, then the
    second (beyond the 16 elements that NumPy sorts by insertion, stable by chance, in its default sort)."""
    pattern = ["丁戊己", "甲乙丙", "甲乙丙", "丁戊己", "甲乙丙"] * 4
    paragraphs = ["甲乙庚", *pattern]
    question = SquadQuestion("q", "甲乙?", 0, [], "test")
    (negatives,) = hard_negatives(paragraphs, [question], [{"text": "庚", "start": 2}], 20)
    similar = [i + 1 for i, text in enumerate(pattern) if text == "甲乙丙"]
    assert negatives == similar + [i + 1 for i, text in enumerate(pattern) if text == "丁戊己"]


def test_a_blank_context_is_no_paragraph_and_its_question_is_dropped_as_empty(tmp_path):
    """A paragraph of spaces between two real ones: it gets no corpus index (context.json could not hold it), and its
    question is dropped as empty, not as an absent answer."""
    content = squad(("甲乙丙", [qa("a", "甲?", ("甲", 0))]), ("  ", [qa("b", "乙?", ("乙", 0))]),
                    ("丁戊", [qa("c", "丁?", ("丁", 0))]))
    paragraphs, questions = read_squad_files([write_json(tmp_path / "blank.json", content)])
    assert paragraphs == ["甲乙丙", "丁戊"] and [q.paragraph for q in questions] == [0, None, 1]
    assert convert_squad.checked_answer(questions[1], paragraphs, set()) == (None, convert_squad.EMPTY_TEXT)


def test_too_few_paragraphs_without_the_answer_drops_the_question(squad_file):
    paragraphs, questions = read_squad_files([squad_file])
    _, records, report = convert(questions, paragraphs, num_candidates=4, seed=0)
    assert "island" not in [r["id"] for r in records]
    assert report[str(squad_file)][convert_squad.TOO_FEW_NEGATIVES] == 1


@pytest.fixture(scope="module")
def merged(squad_file, tmp_path_factory):
    """The cities plus a question on a paragraph of samples/, merged into samples/ with samples/valid.json and an
    exclude file of two city questions (written differently) excluded."""
    folder = tmp_path_factory.mktemp("merge")
    sample_paragraph = read_json(SAMPLES / "context.json")[5]
    lighthouse = squad((sample_paragraph, [qa("lighthouse", "東犬燈塔創建於哪一年?", ("1872年", 9))]))
    exclude = [
        {"id": "x1", "question": "臺灣的首都是哪一個城市？", "paragraphs": [0]},
        {"id": "x2", "question": " 太陽餅是哪個城市有名的食物 ", "paragraphs": [0]},
        {"id": "x3", "question": "臺灣最高的山是哪一座?", "paragraphs": [0]},
    ]
    context, questions, report = convert_files(
        folder / "out",
        squad_file,
        write_json(folder / "lighthouse.json", lighthouse),
        options=[
            "--merge_into",
            str(SAMPLES),
            "--exclude",
            str(SAMPLES / "valid.json"),
            str(write_json(folder / "exclude.json", exclude)),
        ],
    )
    return context, questions, report


def test_merge_keeps_every_old_index_and_stores_identical_paragraphs_once(merged, sample_context, sample_train):
    context, questions, _ = merged
    assert context[: len(sample_context)] == sample_context
    assert len(context) == len(sample_context) + len(CITIES)
    assert questions[: len(sample_train)] == sample_train
    lighthouse = next(q for q in questions if q["id"] == "lighthouse")
    assert lighthouse["relevant"] == 5 and lighthouse["answer"] == {"text": "1872年", "start": 9}
    converted_paragraphs = set(CITIES) | {sample_context[5]}
    assert all(context[p] in converted_paragraphs for q in questions[len(sample_train) :] for p in q["paragraphs"])


def test_exclude_drops_exactly_the_overlapping_questions(merged, squad_file):
    _, questions, report = merged
    # "island" keeps its 4 candidates here: the sample paragraph writes 台灣, not 臺灣.
    new_ids = [q["id"] for q in questions[len(read_json(SAMPLES / "train.json")) :]]
    assert new_ids == [question_id for question_id in KEPT if question_id not in ("capital", "cake")] + ["lighthouse"]
    assert report[str(squad_file)][EXCLUDED] == 2


def test_a_sample_question_converted_again_is_excluded(tmp_path, sample_valid, sample_context):
    question = sample_valid[0]
    paragraph = sample_context[question["relevant"]]
    again = squad((paragraph, [qa("again", question["question"], (question["answer"]["text"], 0))]))
    with pytest.raises(InputError, match=r"no question could be converted: of 1 questions read, 1 excluded \(its "
                       r"question is in an --exclude file\)$"):
        convert_squad.main(
            [
                str(write_json(tmp_path / "again.json", again)),
                "--output_dir",
                str(tmp_path / "out"),
                "--exclude",
                str(SAMPLES / "valid.json"),
            ]
        )
    assert not (tmp_path / "out" / "train.json").exists()


def test_an_id_of_the_merged_train_json_is_an_error_unless_its_question_is_excluded(
    squad_file, tmp_path, sample_train, sample_context
):
    old = sample_train[0]
    again = write_json(
        tmp_path / "again.json",
        squad(
            (
                sample_context[old["relevant"]],
                [qa(old["id"], old["question"], (old["answer"]["text"], old["answer"]["start"]))],
            )
        ),
    )
    arguments = [str(squad_file), str(again), "--merge_into", str(SAMPLES), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(InputError, match=rf"{again}: question id '{old['id']}': also in .*train\.json"):
        convert_squad.main(arguments)
    report = convert_squad.main([*arguments, "--exclude", str(SAMPLES / "train.json")])
    assert report[str(again)][EXCLUDED] == 1
    assert len(read_json(tmp_path / "out" / "train.json")) == len(sample_train) + report[str(squad_file)]["kept"]


@pytest.mark.parametrize(
    "content,message",
    [
        ("{", r"not valid JSON"),
        ([], r"expected a SQuAD-format JSON object"),
        ({"version": "1"}, r"field 'data': missing"),
        ({"data": [{"paragraphs": [{"qas": []}]}]}, r"data\[0\]\.paragraphs\[0\]: field 'context': missing"),
        (squad(("段落。", [{"id": "q", "answers": []}])), r"qas\[0\] \(id 'q'\): field 'question': missing"),
        (squad(("段落。", [{"id": "q", "question": "問?"}])), r"\(id 'q'\): field 'answers': missing"),
        (
            squad(("段落。", [{"id": "q", "question": "問?", "answers": [{"text": "段"}]}])),
            r"\(id 'q'\): field 'answers'\[0\]: field 'answer_start': missing",
        ),
        (squad(("段落。", [qa("q", "問?", ("段", "0"))])), r"field 'answer_start': expected an integer"),
        (squad(("段落。", [qa("q", "問?", ("段", 0)), qa("q", "問?", ("段", 0))])), r"question id 'q': also in"),
    ],
)
def test_bad_input_is_one_line_naming_file_record_and_field(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(InputError, match=message) as error:
        convert_squad.main([str(path), "--output_dir", str(tmp_path / "out")])
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder


def test_command_line_error_exits_1_with_one_line_and_writes_nothing(squad_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_script("convert_squad.py", squad_file, "--output_dir", blocker / "out", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "cannot create the output folder" in result.stderr
    assert blocker.read_text() == "not a folder"


# --- Outputs: never an input, both or neither ------------------------------------------------------------------------


def copy_samples(folder):
    folder.mkdir()
    for name in ["context.json", "train.json", "valid.json"]:
        (folder / name).write_bytes((SAMPLES / name).read_bytes())
    return folder


def test_merge_into_the_output_folder_is_refused_and_changes_nothing(squad_file, tmp_path):
    data = copy_samples(tmp_path / "data")
    before = {path.name: path.read_bytes() for path in data.iterdir()}
    with pytest.raises(InputError) as error:
        convert_squad.main([str(squad_file), "--merge_into", str(data), "--output_dir", str(tmp_path / "." / "data")])
    assert str(error.value) == (
        f"--output_dir {tmp_path / 'data'}: is the --merge_into folder, whose context.json and train.json this run "
        "reads; no output may be an input: write the merged files to another folder"
    )
    assert {path.name: path.read_bytes() for path in data.iterdir()} == before


@pytest.mark.parametrize("role", ["SQuAD input", "--exclude file", "--merge_into file, through a link"])
def test_an_output_that_is_an_input_of_the_run_is_refused_before_any_work(squad_file, tmp_path, role):
    data = copy_samples(tmp_path / "data")
    if role == "SQuAD input":  # e.g. DRCD saved as data/train.json
        (data / "train.json").write_bytes(squad_file.read_bytes())
        arguments, input_file = [str(data / "train.json"), "--output_dir", str(data)], data / "train.json"
    elif role == "--exclude file":  # the homework's train.json excluded, the output written beside it
        arguments, input_file = [str(squad_file), "--output_dir", str(data), "--exclude", str(data / "train.json")], \
            data / "train.json"  # fmt: skip
    else:
        out = tmp_path / "out"
        out.mkdir()
        (out / "context.json").symlink_to(data / "context.json")
        arguments, input_file = [str(squad_file), "--output_dir", str(out), "--merge_into", str(data)], \
            data / "context.json"  # fmt: skip
    before = {path.name: path.read_bytes() for path in data.iterdir()}
    with pytest.raises(InputError, match=rf"output path is the input file {input_file}; writing it would destroy it"):
        convert_squad.main(arguments)
    assert {path.name: path.read_bytes() for path in data.iterdir()} == before


def test_context_and_train_are_written_together_or_neither(squad_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "context.json").write_text("old context", encoding="utf-8")
    json_text = outputs.json_text

    def full_disk_for_records(value, indent=None):
        if value and isinstance(value[0], dict):  # train.json's records, not context.json's paragraphs
            raise OSError(28, "No space left on device")
        return json_text(value, indent)

    monkeypatch.setattr(outputs, "json_text", full_disk_for_records)
    with pytest.raises(InputError, match=r"train\.json: cannot write \(No space left on device\)"):
        convert_squad.main([str(squad_file), "--output_dir", str(out), "--num_candidates", "3"])
    assert sorted(path.name for path in out.iterdir()) == ["context.json"]
    assert (out / "context.json").read_text(encoding="utf-8") == "old context"


# --- Characters no output can hold, and inputs that give no candidates -------------------------------------------


def with_character(text, position, character):
    return text[:position] + character + text[position:]


@pytest.mark.parametrize("field, where", [
    ("context", "data[0].paragraphs[1]: field 'context': character 3"),
    ("id", "data[0].paragraphs[1].qas[0]: field 'id': character 1"),
    ("question", "data[0].paragraphs[1].qas[0] (id 'q'): field 'question': character 3"),
    ("text", "data[0].paragraphs[1].qas[0] (id 'q'): field 'answers'[0]: field 'text': character 2"),
])  # fmt: skip
@pytest.mark.parametrize("character", ["\x00", "\ud800"], ids=["NUL", "lone surrogate"])
def test_a_nul_or_a_lone_surrogate_is_one_line_naming_file_record_field_and_position(tmp_path, field, where, character):
    texts = {"context": "高雄市位於臺灣南部，是港口城市。", "id": "q", "question": "高雄市位於哪裡?", "text": "臺灣南部"}
    texts[field] = with_character(texts[field], int(where.rsplit(" ", 1)[1]), character)
    answer = (texts["text"], texts["context"].find(texts["text"]))
    path = tmp_path / "bad.json"
    # ensure_ascii: a lone surrogate can only be written as a JSON escape, "\ud800".
    bad_paragraph = (texts["context"], [qa(texts["id"], texts["question"], answer)])
    path.write_text(json.dumps(squad(CITY_QUESTIONS[0], bad_paragraph)))
    with pytest.raises(InputError) as error:
        convert_squad.main([str(path), "--output_dir", str(tmp_path / "out"), "--num_candidates", "2"])
    assert str(error.value) == f"{path}: {where} is {ascii(character)}, which no text can hold"
    assert not (tmp_path / "out").exists()


def test_paragraphs_of_one_character_cannot_be_ranked_one_line_naming_the_input_and_why(tmp_path):
    single = write_json(
        tmp_path / "single.json", squad(("甲", [qa("a", "問甲?", ("甲", 0))]), ("乙", [qa("b", "問乙?", ("乙", 0))]))
    )
    with pytest.raises(InputError) as error:
        convert_squad.main([str(single), "--output_dir", str(tmp_path / "out"), "--num_candidates", "2"])
    assert str(error.value) == (
        f"{single}: cannot find hard negatives: no paragraph of the inputs has two characters in a row, so "
        "character-bigram TF-IDF cannot compare the 2 paragraphs with the questions (scikit-learn: empty vocabulary; "
        "perhaps the documents only contain stop words); use --num_candidates 1 (no negatives) or longer paragraphs"
    )
    assert not (tmp_path / "out").exists()
    # With one candidate, no negative is looked for, and nothing needs ranking.
    context, records, _ = convert_files(tmp_path / "one-candidate", single, options=["--num_candidates", "1"])
    assert context == ["甲", "乙"] and [(r["paragraphs"], r["relevant"]) for r in records] == [([0], 0), ([1], 1)]


def test_when_no_question_has_enough_negatives_the_error_says_why(tmp_path):
    two = write_json(tmp_path / "two.json", squad(CITY_QUESTIONS[0], CITY_QUESTIONS[5]))  # the second: unanswerable
    with pytest.raises(InputError) as error:
        convert_squad.main([str(two), "--output_dir", str(tmp_path / "out")])
    assert str(error.value) == (
        f"{two}: no question could be converted: of 2 questions read, 1 dropped: no answer (unanswerable); 1 dropped: "
        "too few paragraphs without the answer text for the negatives (--num_candidates 4 needs 3 besides each "
        "question's own; the inputs have 2 paragraphs in all)"
    )
    assert not (tmp_path / "out").exists()


def test_num_candidates_above_1000_is_refused_in_one_line(squad_file, tmp_path, capsys):
    arguments = [str(squad_file), "--output_dir", str(tmp_path / "out"), "--num_candidates"]
    assert convert_squad.parse_command_line([*arguments, "1000"]).num_candidates == 1000
    with pytest.raises(SystemExit) as exit_info:
        convert_squad.parse_command_line([*arguments, "1001"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: argument --num_candidates: must be at most 1,000, got 1001 (see --help)\n"
