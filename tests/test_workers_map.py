"""Workers.map: the import order's scan runs on the pool, and a broken pool never loses the run."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

from modelint.workers import PARALLEL_THRESHOLD, Workers


def test_map_on_the_pool_gives_what_a_loop_gives() -> None:
    items = ["x" * n for n in range(PARALLEL_THRESHOLD + 8)]
    with Workers(2) as workers:
        assert workers.map(len, items) == [len(item) for item in items]


def test_map_goes_on_in_this_process_when_the_pool_breaks() -> None:
    class BrokenPool:
        def map(self, *args, **kwargs):
            raise BrokenProcessPool("a process was killed")

        def shutdown(self, wait: bool = True) -> None:
            pass

    workers = Workers(2)
    workers._pool = BrokenPool()
    items = ["ab"] * (PARALLEL_THRESHOLD + 1)
    assert workers.map(len, items) == [2] * len(items)
    assert workers._pool is None  # (started again for the analyses that follow)
    workers.close()
