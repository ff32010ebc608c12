"""One step whose catalog puts large.bin (written by the test before the run)."""

import steps
from runnable import Catalog, Pipeline, PythonTask


def main() -> Pipeline:
    pipeline = Pipeline(
        steps=[
            PythonTask(name="publish", function=steps.nothing, catalog=Catalog(put=["large.bin"]))
        ]
    )
    pipeline.execute(**steps.files())
    return pipeline


if __name__ == "__main__":
    main()
