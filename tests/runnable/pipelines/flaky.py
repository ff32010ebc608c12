"""A map whose middle step fails for some items until the test removes a marker file; the
test then retries the run with ``runnable retry``."""

import steps
from runnable import Pipeline


def main() -> Pipeline:
    pipeline = steps.map_pipeline(steps.flaky)
    pipeline.execute(**steps.files())
    return pipeline


if __name__ == "__main__":
    main()
