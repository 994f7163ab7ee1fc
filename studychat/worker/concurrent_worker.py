"""An RQ worker that keeps many I/O-bound jobs in flight in one process, on threads.

RQ's stock worker forks a process per job and runs one at a time. Model calls are
almost pure waiting, so this worker runs up to `concurrency` jobs at once on a
thread pool while keeping RQ's bookkeeping intact:

- jobs are taken from the queue only into free slots: every job waiting, up to the free
  slots, in one round trip, else the first one to come (see job_batches), with those
  that come within a short window after it while jobs come fast (see take_window);
- the jobs taken together are recorded as started in one transaction, and the successes
  of the jobs that end within moments in one more (see success_batches): the keys RQ
  writes, in 2 round trips per batch, where RQ's worker takes 9 per job (it watches a
  job's dependents before recording its success; chat jobs have none). The start's
  transaction also sends the PERSIST that RQ's Job.perform would send alone (see
  started_job) and asks whether an earlier run of each job stored its answer, which
  the job would ask alone (outcomes.stored_before_run);
- each thread has its own `execution` (RQ keeps one per worker), so every job gets
  its own StartedJobRegistry entry, heartbeat and cleanup;
- job timeouts use one watchdog thread, not SIGALRM (signals reach only the main thread);
- one heartbeat thread refreshes every job in flight whose heartbeat is half an
  interval old (a job just started has a fresh one) and requeues the jobs of workers
  that died (see recovery);
- SIGTERM stops dequeuing, lets jobs in flight finish for a grace period, then puts
  the rest back on the queue, so a deploy loses nothing;
- no loop ends because Redis is unreachable: each waits with a bounded backoff and
  carries on when Redis is back, and the outage is logged once when it starts and once
  when it ends (see outage_watch). A worker that finds itself gone from a Redis that came
  back empty registers again.

It builds on RQ's worker internals; every one it touches is listed in rq_internals,
where a contract test per entry catches an RQ upgrade that changes it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from redis.client import Pipeline, PubSub
from redis.commands.core import Script
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from studychat import outage_watch
from studychat.chat.outcomes import has_outcome, outcome_key, seen_at_start
from studychat.outage_watch import REDIS_UNAVAILABLE, Backoff
from studychat.worker import job_batches, recovery
from studychat.worker.rq_internals import PER_JOB_LOG_FORMATS, SUCCESSFUL_JOB_COUNT
from studychat.worker.started_job import StartedJob
from studychat.worker.success_batches import SuccessBatches
from studychat.worker.take_window import TakeWindow
from studychat.worker.timeouts import WatchdogDeathPenalty

logger = logging.getLogger(__name__)

# A job's heartbeat holds for this many beats (plus a few seconds): short, so that the
# jobs of a killed worker are noticed and run again within seconds, not minutes.
BEATS_BEFORE_ABANDONED = 3
# Jobs taken from the queue in one round trip at most: a burst is taken in few trips,
# and no worker holds a long run of jobs that it cannot start at once.
TAKE_AT_MOST = 32


@dataclass
class InFlight:
    """A job this worker is running, and its execution once registered."""

    job: Job
    queue: Queue
    execution: Execution
    # Whether an earlier run stored its outcome, as seen when it was recorded as started.
    answered: bool = False
    # When its heartbeat was last written (time.monotonic()): recording it as started
    # writes the same records with the same lifetime.
    beaten_at: float = field(default_factory=time.monotonic)


def due_for_a_beat(entries: list[InFlight], interval: float, at: float) -> list[InFlight]:
    """The jobs whose heartbeat is at least half an interval old.

    A younger one is skipped: the next beat comes a whole interval later and finds it
    due, so no job goes more than 1.5 intervals without a beat, well inside the
    lifetime of BEATS_BEFORE_ABANDONED intervals. Most model calls end before their
    first beat, and each skipped one spares about six Redis commands.
    """
    return [entry for entry in entries if at - entry.beaten_at >= interval / 2]


def working_time(entry: InFlight) -> timedelta:
    """How long a finished job ran."""
    assert entry.job.started_at is not None and entry.job.ended_at is not None
    return entry.job.ended_at - entry.job.started_at


def expire_finished(job: Job, result_ttl: int, pipeline: Pipeline) -> None:
    """RQ's cleanup of a finished job, less what a job without dependents needs not.

    For a kept result RQ's Job.cleanup sets the expiry of the job's key and of its
    dependents' and dependencies' keys; jobs run here have neither (their dependents are
    never enqueued, see _write_success), so those two commands would touch nothing.
    """
    if result_ttl > 0:
        pipeline.expire(job.key, result_ttl)
    else:
        job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)


class _PerThread(threading.local):
    execution: Execution | None = None
    working_time: float = 0


class QuietJobSuccess(logging.Filter):
    """Drop RQ's two lines per succeeded job; the job's own line says what they say."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but those two."""
        return not (record.levelno == logging.INFO and record.msg in PER_JOB_LOG_FORMATS)


class ConcurrentWorker(BaseWorker):
    """Runs up to `concurrency` jobs at once on threads, with RQ's guarantees per job."""

    death_penalty_class = WatchdogDeathPenalty
    # One log line per job is enough at hundreds of jobs a second.
    log_result_lifespan = False

    def __init__(
        self,
        *args,
        concurrency: int = 64,
        shutdown_grace_s: float = 20.0,
        take_window_s: float = 0.0,
        **kwargs,
    ) -> None:
        self._per_thread = _PerThread()
        kwargs.setdefault("job_monitoring_interval", 5)
        # Its jobs' keys are made persistent when they are recorded as started.
        kwargs.setdefault("job_class", StartedJob)
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self.shutdown_grace_s = shutdown_grace_s
        self._slots = threading.BoundedSemaphore(concurrency)
        self._in_flight: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="rq-job")
        self._stopped = threading.Event()
        self._take_script: Script | None = None
        self._successes: SuccessBatches[InFlight] = SuccessBatches(
            self.connection, self._write_successes, self._successes_not_written
        )
        self._queue_drained = False
        self._take_window = TakeWindow(take_window_s)
        # One log line per job is enough at hundreds of jobs a second (jobs.run_chat's).
        if not any(isinstance(each, QuietJobSuccess) for each in self.log.filters):
            self.log.addFilter(QuietJobSuccess())

    # RQ keeps one execution per worker; each thread here needs its own.
    @property
    def execution(self) -> Execution | None:
        return self._per_thread.execution

    @execution.setter
    def execution(self, value: Execution | None) -> None:
        self._per_thread.execution = value

    @property
    def current_job_working_time(self) -> float:
        return self._per_thread.working_time

    @current_job_working_time.setter
    def current_job_working_time(self, value: float) -> None:
        self._per_thread.working_time = value

    @property
    def dequeue_timeout(self) -> int:
        """Wait briefly for a job, so the loop keeps noticing stop requests."""
        return 2

    def get_heartbeat_ttl(self, job: Job) -> int:
        """How long a job's heartbeat holds: a few missed beats, never the job's timeout."""
        return BEATS_BEFORE_ABANDONED * self.job_monitoring_interval + 5

    def in_flight_count(self) -> int:
        """Number of jobs running now."""
        with self._lock:
            return len(self._in_flight)

    # Of RQ's options only burst and logging_level apply to this loop.
    def work(  # type: ignore[override]
        self, burst: bool = False, logging_level: str | None = "INFO", **_: object
    ) -> bool:
        """Dequeue and run jobs until asked to stop (or, in burst mode, until idle)."""
        self._install_signal_handlers()
        if not self._bootstrap_when_redis_is_up(logging_level):
            return False
        beat = threading.Thread(target=self._heartbeat_loop, name="rq-heartbeat", daemon=True)
        beat.start()
        self._successes.start()
        worked = False
        try:
            worked = self._dequeue_loop(burst)
        finally:
            self._finish_in_flight()
            self._successes.stop()
            self._stopped.set()
            self._teardown_if_redis_is_up()
        return worked

    def _bootstrap_when_redis_is_up(self, logging_level: str | None) -> bool:
        """Register with Redis, waiting while it is unreachable; False when stopped first."""
        backoff = Backoff()
        while not self._stop_requested:
            try:
                self.bootstrap(logging_level)
                self._take_script = self._batch_take_script()
                outage_watch.REDIS.succeeded()
                return True
            except REDIS_UNAVAILABLE as error:
                outage_watch.REDIS.failed(error, "starting the worker")
                time.sleep(backoff.next_delay())
        return False

    def _batch_take_script(self) -> Script | None:
        """The script that takes waiting jobs in one trip, when this worker and Redis allow."""
        if len(self._ordered_queues) == 1 and job_batches.can_take_batches(self.connection):
            return job_batches.take_script(self.connection)
        return None

    def _teardown_if_redis_is_up(self) -> None:
        """Say goodbye to Redis; when it is down, the worker's key simply expires."""
        try:
            self.teardown()
        except REDIS_UNAVAILABLE as error:
            outage_watch.REDIS.failed(error, "stopping the worker")

    def _dequeue_loop(self, burst: bool) -> bool:
        worked = False
        backoff = Backoff()
        while not self._stop_requested:
            if not self._slots.acquire(timeout=1):
                continue
            slots = 1 + self._acquire_free_slots(TAKE_AT_MOST - 1)
            try:
                taken = self._take(slots)
            except Exception as error:
                self._release_slots(slots)
                self._report_failure(error, "waiting for jobs")
                time.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._release_slots(slots - len(taken))
            if taken:
                self._start(taken)
                worked = True
            elif burst and self.in_flight_count() == 0:
                break
        return worked

    def _acquire_free_slots(self, at_most: int) -> int:
        """Take up to `at_most` more slots without waiting; return how many."""
        acquired = 0
        while acquired < at_most and self._slots.acquire(blocking=False):
            acquired += 1
        return acquired

    def _release_slots(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def _take(self, slots: int) -> list[tuple[Job, Queue]]:
        """The jobs waiting now, up to `slots`; else the first to come within a short wait."""
        self.set_state(WorkerStatus.IDLE if not self.in_flight_count() else WorkerStatus.BUSY)
        if self._take_script is None:
            job_and_queue = self._dequeue()
            return [job_and_queue] if job_and_queue is not None else []
        queue, first = self._ordered_queues[0], None
        # After a take that emptied the queue, wait for the next job as RQ does, rather
        # than ask an empty queue once more first.
        if self._queue_drained:
            first = job_batches.wait_for_one(queue, self.dequeue_timeout)
            if first is None:
                return []
            self._wait_for_company()
        jobs = job_batches.take_waiting(self._take_script, queue, slots, self.job_class, first)
        self._take_window.note_taken(len(jobs))
        self._queue_drained = len(jobs) < slots
        outage_watch.REDIS.succeeded()
        return [(job, queue) for job in jobs]

    def _wait_for_company(self) -> None:
        """Let the jobs of the next moments join the first one's take, while jobs come fast."""
        wait_s = self._take_window.wait_s()
        if wait_s:
            time.sleep(wait_s)

    def _dequeue(self) -> tuple[Job, Queue] | None:
        """One job from the queues, or None after a short wait."""
        try:
            job_and_queue = self.queue_class.dequeue_any(
                self._ordered_queues,
                self.dequeue_timeout,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )
        except DequeueTimeout:
            job_and_queue = None
        outage_watch.REDIS.succeeded()
        return job_and_queue

    @staticmethod
    def _report_failure(error: Exception, doing: str) -> None:
        """An outage of Redis is said once; any other failure is logged in full."""
        if isinstance(error, REDIS_UNAVAILABLE):
            outage_watch.REDIS.failed(error, doing)
        else:
            logger.exception("worker failed while %s; will retry", doing)

    def _start(self, taken: list[tuple[Job, Queue]]) -> None:
        """Record the jobs as started, then run each on a thread of the pool."""
        try:
            entries = self._record_started(taken)
        except Exception as error:
            # They stay in the intermediate list, from where recovery requeues them.
            self._release_slots(len(taken))
            self._report_failure(error, "starting jobs")
            return
        with self._lock:
            self._in_flight.update((entry.job.id, entry) for entry in entries)
        for entry in entries:
            self._pool.submit(self._run, entry)

    def _record_started(self, taken: list[tuple[Job, Queue]]) -> list[InFlight]:
        """In one transaction, what RQ records per job before running it, and whether an
        earlier run of each stored its outcome (which the job would otherwise ask itself).
        """
        with self.connection.pipeline() as pipeline:
            for job, _ in taken:
                pipeline.exists(outcome_key(job.id))
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            executions = [self._record_one_started(*each, pipeline) for each in taken]
            answered = pipeline.execute()[: len(taken)]
        pairs = zip(taken, executions, answered, strict=True)
        return [InFlight(job, queue, run, bool(seen)) for (job, queue), run, seen in pairs]

    def _record_one_started(self, job: Job, queue: Queue, pipeline) -> Execution:
        """RQ's prepare_execution and prepare_job_execution for one job, in `pipeline`, and
        the PERSIST with which Job.perform begins (see StartedJob).
        """
        ttl = self.get_heartbeat_ttl(job)
        execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=self.name)
        job.prepare_for_execution(self.name, pipeline=pipeline)
        pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
        pipeline.persist(job.key)
        return execution

    def _run(self, entry: InFlight) -> None:
        """Run one started job on this thread with its own execution record."""
        try:
            self.execution = entry.execution
            with seen_at_start(entry.job.id, entry.answered):
                self.perform_job(entry.job, entry.queue)
        except Exception as error:
            # Whatever RQ could not record is put right by recovery once Redis is back.
            self._report_failure(error, f"recording job {entry.job.id}")
        finally:
            self.execution = None
            with self._lock:
                self._in_flight.pop(entry.job.id, None)
            self._slots.release()

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Nothing left to do: the job was recorded as started when it was taken."""

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """Note when the job ended; its last heartbeat is saved with its outcome."""
        job.ended_at = job.last_heartbeat = now()

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry
    ) -> None:
        """Hand the success to be recorded with others that end within moments (success_batches)."""
        if job.repeats_left:  # RQ schedules repeats; chat jobs never repeat
            return super().handle_job_success(job, queue, started_job_registry)
        assert job.started_at is not None and job.ended_at is not None and self.execution
        self._successes.add(InFlight(job, queue, self.execution))
        return None

    def _write_successes(self, pipeline: Pipeline, ended: list[InFlight]) -> None:
        """Queue RQ's record of these successes on `pipeline`, the worker's counters once."""
        for entry in ended:
            self._write_success(pipeline, entry)
        # RQ adds to them per job; one addition each for the batch leaves the same sums
        # in two commands per batch instead of two per job.
        pipeline.hincrby(self.key, SUCCESSFUL_JOB_COUNT, len(ended))
        self.increment_total_working_time(sum(map(working_time, ended), timedelta()), pipeline)

    def _write_success(self, pipeline: Pipeline, ended: InFlight) -> None:
        """Queue RQ's record of one job's success on `pipeline`, less its watch on dependents."""
        job, execution = ended.job, ended.execution
        assert job.started_at is not None and job.ended_at is not None
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        if result_ttl != 0:
            job._handle_success(
                result_ttl,
                pipeline=pipeline,
                worker_name=self.name,
                execution_id=execution.id,
                execution_started_at=execution.created_at,
                execution_ended_at=job.ended_at,
            )
        expire_finished(job, result_ttl, pipeline)
        execution.delete(job=job, pipeline=pipeline)

    def _successes_not_written(self, error: Exception, count: int) -> None:
        # Their jobs stay in the StartedJobRegistry: recovery runs them again, and each,
        # its answer already stored, then records only its success.
        self._report_failure(error, f"recording {count} successes")

    def set_state(self, state: str, pipeline=None) -> None:
        """Write the worker's state only when it changes, not once per job."""
        if state != self._state:
            super().set_state(state, pipeline=pipeline)

    def subscribe(self) -> None:
        """Listen for RQ's commands (`rq` CLI, dashboard), riding through Redis outages."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=60, daemon=True, exception_handler=self._on_pubsub_error
        )

    def _on_pubsub_error(self, error: Exception, pubsub: PubSub, thread: object) -> None:
        """Wait and let redis-py resubscribe when Redis is back; nothing else is expected."""
        self._report_failure(error, "listening for commands")
        time.sleep(2.0)

    def set_current_job_id(self, job_id: str | None = None, pipeline=None) -> None:
        """Keep the worker hash's single `current_job` field out of per-job bookkeeping."""

    def _heartbeat_loop(self) -> None:
        """Refresh the worker's and every running job's heartbeat; requeue dead workers' jobs."""
        while not self._stopped.wait(self.job_monitoring_interval):
            try:
                self._register_again_if_forgotten()
                self._beat()
                recovery.requeue_abandoned(self.queues, self.connection)
                outage_watch.REDIS.succeeded()
            except Exception as error:
                self._report_failure(error, "sending heartbeats")

    def _register_again_if_forgotten(self) -> None:
        """Register anew, jobs in flight too, when Redis came back without them (data lost)."""
        if self.connection.exists(self.key):
            return
        logger.warning("this worker was gone from Redis; registering it and its jobs again")
        self.register_birth()
        super().set_state(self._state)  # the birth record carries no state
        with self._lock:
            running = list(self._in_flight.values())
        for entry in running:
            # Not yet answered: saved again, so that participants polling it wait for
            # its answer instead of being told it does not exist.
            if not has_outcome(self.connection, entry.job.id):
                entry.job.save()

    def _beat(self) -> None:
        """The worker's heartbeat, and that of every job in flight that is due one."""
        at = time.monotonic()
        with self._lock:
            running = list(self._in_flight.values())
        due = due_for_a_beat(running, self.job_monitoring_interval, at)
        with self.connection.pipeline() as pipeline:
            self.heartbeat(self.worker_ttl, pipeline=pipeline)
            for entry in due:
                job, ttl = entry.job, self.get_heartbeat_ttl(entry.job)
                entry.execution.heartbeat(job.started_job_registry, ttl, pipeline=pipeline)
                job.heartbeat(recovery.utcnow(), ttl, pipeline=pipeline, xx=True)
            pipeline.execute()
        for entry in due:
            entry.beaten_at = at

    def clean_registries(self) -> None:
        """Requeue abandoned jobs before RQ's own cleanup would mark them failed."""
        recovery.requeue_abandoned(self.queues, self.connection)
        super().clean_registries()

    def request_stop(self, signum, frame) -> None:
        """First SIGTERM/SIGINT: stop taking jobs, finish (or hand back) those in flight."""
        if self._stop_requested:
            logger.warning("second stop signal: handing jobs in flight back now")
            self.shutdown_grace_s = 0
            return
        logger.info("warm shutdown: %d jobs in flight", self.in_flight_count())
        self._stop_requested = True

    def _finish_in_flight(self) -> None:
        """Wait for jobs in flight up to the grace period, then put the rest back on the queue."""
        deadline = time.monotonic() + self.shutdown_grace_s
        while self.in_flight_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left = list(self._in_flight.values())
        if not left:
            self._pool.shutdown(wait=True)
            return
        handed_back = sum(self._hand_back(entry) for entry in left)
        logger.warning("handed %d of %d unfinished jobs back to the queue", handed_back, len(left))
        self._successes.stop()
        self._teardown_if_redis_is_up()
        # Threads still waiting on the model must not finish these jobs a second time.
        os._exit(0)

    def _hand_back(self, entry: InFlight) -> bool:
        """Return one job to its queue; with Redis down, recovery will requeue it instead."""
        try:
            recovery.hand_back(entry.job, entry.queue, entry.execution)
        except REDIS_UNAVAILABLE as error:
            outage_watch.REDIS.failed(error, "handing jobs back")
            return False
        return True
