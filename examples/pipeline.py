"""The example pipeline with runnable's Python SDK, run on runlog-store (runnable-config.yaml).

    cd examples && ../.venv/bin/python pipeline.py

(``RUNNABLE_CONFIGURATION_FILE`` and ``RUNNABLE_PARAMETERS_FILE`` name other files, and
``RUNNABLE_PRM_branches=64`` sets a parameter, as for any runnable pipeline;
``EXAMPLE_BRANCH_SECONDS=2`` makes every branch sleep 2 seconds, to watch it run with
``runlog serve``.)

prepare -> train (a map: load, fit, score in every branch, run in parallel worker processes)
-> evaluate (a parallel step of two branches: one puts every branch's shard into the catalog)
-> report (the fan-in: gets the shards back and checks it saw every branch). ``calibration`` is
an object parameter (pickled into the catalog). pipeline.yaml is the same in runnable's YAML.
"""

from __future__ import annotations

import functions
from runnable import Catalog, Map, Parallel, Pipeline, PythonTask, json, metric, pickled


def branch() -> Pipeline:
    """What each branch of the map does with its item."""
    return Pipeline(
        steps=[
            PythonTask(
                name="load",
                function=functions.load,
                catalog=Catalog(get=["data/settings.json"]),
                returns=[json("rows")],
            ),
            PythonTask(name="fit", function=functions.fit, returns=[json("weight")]),
            PythonTask(
                name="score",
                function=functions.score,
                returns=[metric("accuracy"), json("seen")],
            ),
        ]
    )


def main() -> Pipeline:
    prepare = PythonTask(
        name="prepare",
        function=functions.prepare,
        catalog=Catalog(put=["data/settings.json"]),
        returns=[json("items"), pickled("calibration")],
    )
    train = Map(name="train", branch=branch(), iterate_on="items", iterate_as="item")
    evaluate = Parallel(
        name="evaluate",
        branches={
            "shards": Pipeline(
                steps=[
                    PythonTask(
                        name="count",
                        function=functions.count_shards,
                        catalog=Catalog(put=["data/shards/*.json"]),
                        returns=[json("shard_count")],
                    )
                ]
            ),
            "settings": Pipeline(
                steps=[
                    PythonTask(
                        name="check",
                        function=functions.check_settings,
                        catalog=Catalog(get=["data/settings.json"]),
                        returns=[json("settings_ok")],
                    )
                ]
            ),
        },
    )
    report = PythonTask(
        name="report",
        function=functions.report,
        catalog=Catalog(get=["data/shards/*.json"], put=["data/report.json"]),
        returns=[metric("best_accuracy"), json("fan_in_saw")],
    )
    pipeline = Pipeline(steps=[prepare, train, evaluate, report])
    pipeline.execute(configuration_file="runnable-config.yaml", parameters_file="parameters.yaml")
    return pipeline


if __name__ == "__main__":
    main()
