"""Python's cyclic garbage collector, set for processes that hold hundreds of turns at once.

By default CPython looks through its youngest objects whenever 700 more container
objects (dicts, lists, instances) have been made than freed, and survivors move to older
generations, which are looked through in turn. The web and the worker hold hundreds of
requests and jobs at once, each keeping its objects for the seconds a model takes: most
young objects are still alive when looked at, so they move up, and the oldest generation
grows until a full collection walks every object of the process. In the worker with
1,000 model calls in flight that was 14 full collections in 9,000 jobs, about 0.14 s
each with every thread stopped, and 8 % of the worker's CPU spent collecting
(docs/benchmark.md, fourteenth round).

So each process, once started, does two things (the standard library's own remedies):

- it freezes what startup made (modules, settings, the app, its clients): those live as
  long as the process, and frozen objects are never looked through again;
- it looks through its youngest objects every YOUNGEST_EVERY allocations instead of 700:
  by then most of a turn's objects have been freed by reference counting, which frees
  nearly everything here, so fewer survive to be walked again and again.

Cyclic garbage waits a little longer to be freed: at 10,000 objects, a few MB at most.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

# Net allocations of container objects between collections of the youngest generation.
YOUNGEST_EVERY = 10_000


def tune_garbage_collector() -> None:
    """Freeze what startup made and collect the youngest generation less often."""
    gc.collect()  # startup's own garbage is freed, not frozen for good
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_EVERY, middle, oldest)
    logger.info(
        "garbage collector: %d objects of startup frozen, youngest generation collected"
        " every %d allocations",
        gc.get_freeze_count(),
        YOUNGEST_EVERY,
    )
