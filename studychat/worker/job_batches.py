"""Taking every job waiting on a queue in one round trip, the way RQ's dequeue takes one.

RQ takes a job with two round trips (BLMOVE to the queue's intermediate list, then the
job's hash) and records it as started with two more. Under load many jobs wait at once:
here one script moves up to `limit` of them to the intermediate list, exactly where
RQ's BLMOVE puts them, and returns their hashes, so that recovery and RQ's own tools
see the same keys whichever way a job was taken. On an empty queue the worker waits
with BLMOVE as RQ does, and the script then reads that job's hash with the others.
"""

from __future__ import annotations

from redis import Redis
from redis.commands.core import Script
from rq.job import Job
from rq.queue import Queue
from rq.utils import get_version

from studychat.redis_scripts import script_for

# LMOVE, which RQ's dequeue uses for a single queue, came with Redis 6.2.
LMOVE_SINCE = (6, 2, 0)

TAKE_WAITING = """
local taken = {}
if ARGV[3] ~= '' then
  taken[1] = ARGV[3]
  taken[2] = redis.call('HGETALL', ARGV[2] .. ARGV[3])
end
for _ = #taken / 2 + 1, tonumber(ARGV[1]) do
  local job_id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not job_id then break end
  taken[#taken + 1] = job_id
  taken[#taken + 1] = redis.call('HGETALL', ARGV[2] .. job_id)
end
return taken
"""


def can_take_batches(connection: Redis) -> bool:
    """True when this Redis can move jobs as RQ's single-queue dequeue does."""
    return get_version(connection) >= LMOVE_SINCE


def take_script(connection: Redis) -> Script:
    """The script that takes waiting jobs, loaded into Redis now.

    A Redis that restarted has forgotten it; the script is then sent again on first use.
    """
    connection.script_load(TAKE_WAITING)
    return script_for(connection, TAKE_WAITING)


def wait_for_one(queue: Queue, timeout: int) -> str | None:
    """The next job's id within `timeout` s, moved to the intermediate list as RQ moves it."""
    connection = queue.connection
    job_id = connection.blmove(queue.key, queue.intermediate_queue_key, timeout, "LEFT", "RIGHT")
    return job_id.decode() if isinstance(job_id, bytes) else job_id


def take_waiting(
    script: Script, queue: Queue, limit: int, job_class: type[Job], first: str | None = None
) -> list[Job]:
    """Up to `limit` jobs, now in the intermediate list: `first` (taken already), then waiting.

    [] when none wait and no `first` is given.
    """
    keys = [queue.key, queue.intermediate_queue_key]
    args: list[int | str] = [limit, job_class.redis_job_namespace_prefix, first or ""]
    taken = script(keys=keys, args=args, client=queue.connection)
    jobs = []
    for job_id, fields in zip(taken[::2], taken[1::2], strict=True):
        # A job whose hash is gone stays in the intermediate list, as RQ's dequeue leaves
        # it; recovery clears it there.
        if fields:
            jobs.append(restore(job_class, job_id, fields, queue))
    return jobs


def restore(job_class: type[Job], job_id: bytes, fields: list[bytes], queue: Queue) -> Job:
    """A job built from its hash's flat field list, as Job.fetch builds it."""
    job = job_class(job_id.decode(), connection=queue.connection, serializer=queue.serializer)
    job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
    return job
