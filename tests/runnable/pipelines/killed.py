"""A map whose middle step, for one item, SIGKILLs the Pool worker running it."""

import steps
from runnable import Pipeline


def main() -> Pipeline:
    pipeline = steps.map_pipeline(steps.killed_in_the_middle)
    pipeline.execute(**steps.files())
    return pipeline


if __name__ == "__main__":
    main()
