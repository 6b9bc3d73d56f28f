"""What every lab grader's test asserts: the correct answers pass, each wrong answer fails with a verdict that names
its mistake, and a stub still raising NotImplementedError is "not done"."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from imgflow.core import grading


def stub(*args):
    raise NotImplementedError("TODO")


def assert_grades(grader: Callable, answers: Callable | Iterable[Callable], wrong: dict[Callable, str]) -> None:
    """`wrong` maps a wrong answer to words its verdict must contain."""
    grading.reset()
    for answer in [answers] if callable(answers) else answers:
        verdict = grader(answer)
        assert verdict.status == "passed", verdict.detail
    for fn, words in wrong.items():
        verdict = grader(fn)
        assert verdict.status == "failed" and words in verdict.detail, (words, verdict.detail)
    assert grader(stub).status == "not done"
    assert len(grading.results()) == 1   # the gradebook keeps the latest verdict per exercise
