"""The feedback file a student gets back is in the language of their notebook (the judge reports the
language the notebook chose with ``set_language``; the grader keeps it in the CSV's ``language``)."""

from pathlib import Path

import pytest

from lesson_utils import i18n
from lesson_utils.classroom.grade import FIXED_COLUMNS, Lesson, write_feedback


def row_for(lesson: Lesson, language: str) -> dict:
    row = {"student": "li", "language": language, "status": "graded", "reason": "", "points": 1, "max points": 5,
           "percent": 20.0}  # fmt: skip
    for index, q in enumerate(lesson.questions):
        short = lesson.short(q.qid)
        right = index == 0
        row[short], row[f"{short} points"] = ("correct", lesson.points[q.qid]) if right else ("incorrect", 0)
        row[f"{short} message"] = "" if right else "the checker's message"
    return row


@pytest.mark.parametrize("language", ["", "en", "xx", None])
def test_english_feedback(tmp_path: Path, language: str):
    lesson = Lesson("lesson01")
    write_feedback(tmp_path / "li.md", row_for(lesson, language), lesson)
    text = (tmp_path / "li.md").read_text(encoding="utf-8")
    assert "**1 of 5 points** (20.0%). Status: graded." in text
    assert "## q1: correct (" in text and "## q2: incorrect (0 of " in text
    assert f"Hint: {lesson.questions[1]._hint}" in text


def test_chinese_feedback_has_no_english_of_the_grader(tmp_path: Path):
    lesson = Lesson("lesson01")
    write_feedback(tmp_path / "li.md", row_for(lesson, "zh_CN"), lesson)
    text = (tmp_path / "li.md").read_text(encoding="utf-8")
    zh = i18n.translator("zh_CN")
    assert text.startswith("# li：lesson01\n") and "**得分 1 / 5**（20.0%）。状态：已评分。" in text
    assert "## q1：正确（" in text and "## q2：不正确（0 / " in text
    hint = zh(lesson.questions[1]._hint)
    assert hint != lesson.questions[1]._hint and f"提示：{hint}" in text
    for english in ("points", "Status", "Hint", "correct"):
        assert english not in text, english
    assert i18n.language() == "en", "writing it chose no language for the grading process"


def test_the_csv_keeps_the_language():
    assert FIXED_COLUMNS.index("language") == FIXED_COLUMNS.index("lesson") + 1


def test_a_folder_or_link_where_the_feedback_goes_is_replaced_not_written_through(tmp_path: Path):
    lesson = Lesson("lesson01")
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_text("someone else's")
    (tmp_path / "li.md").mkdir()
    (tmp_path / "li.md" / "inside").write_text("x")
    (tmp_path / "ada.md").symlink_to(elsewhere)
    for name in ("li", "ada"):
        write_feedback(tmp_path / f"{name}.md", row_for(lesson, "en"), lesson)
        assert (tmp_path / f"{name}.md").is_file() and not (tmp_path / f"{name}.md").is_symlink()
    assert elsewhere.read_text() == "someone else's"
