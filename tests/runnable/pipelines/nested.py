"""A map inside a branch of a parallel step: runnable's Pool cannot nest."""

import steps
from runnable import Map, Parallel, Pipeline, PythonTask, json


def main() -> Pipeline:
    inner = Pipeline(steps=[PythonTask(name="work", function=steps.first, returns=[json("a")])])
    outer = Parallel(
        name="outer",
        branches={
            "mapped": Pipeline(
                steps=[Map(name="inner", branch=inner, iterate_on="items", iterate_as="item")]
            ),
            "plain": Pipeline(
                steps=[PythonTask(name="plain", function=steps.plain, returns=[json("p")])]
            ),
        },
    )
    pipeline = Pipeline(
        steps=[
            PythonTask(name="prepare", function=steps.make_items, returns=[json("items")]),
            outer,
            PythonTask(name="report", function=steps.nested_report, returns=[json("n")]),
        ]
    )
    pipeline.execute(**steps.files())
    return pipeline


if __name__ == "__main__":
    main()
