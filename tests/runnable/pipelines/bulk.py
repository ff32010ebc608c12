"""One step whose catalog puts every file under small/ and big.bin (the catalog benchmark,
benches/test_bench_catalog_pipeline.py, writes them before the run)."""

import steps
from runnable import Catalog, Pipeline, PythonTask


def main() -> Pipeline:
    pipeline = Pipeline(
        steps=[
            PythonTask(
                name="publish",
                function=steps.nothing,
                catalog=Catalog(put=["small/*", "big.bin"]),
            )
        ]
    )
    pipeline.execute(**steps.files())
    return pipeline


if __name__ == "__main__":
    main()
