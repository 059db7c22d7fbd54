"""Real concurrency for the race tests: work started in threads at the same moment."""
from __future__ import annotations

import threading


def all_at_once(count: int, work) -> list:
    """Run ``work(index)`` in ``count`` threads released together; their results (or errors) in index order."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # noqa: BLE001  (reported as the result, so the test's assertion names it)
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results
