"""An RQ worker that keeps many I/O-bound jobs in flight in one process, on threads.

RQ's stock worker forks a process per job and runs one at a time. Model calls are
almost pure waiting, so this worker runs up to `concurrency` jobs at once on a
thread pool while keeping RQ's bookkeeping intact:

- a job is taken from the queue only when a slot is free;
- each thread has its own `execution` (RQ keeps one per worker), so every job gets
  its own StartedJobRegistry entry, heartbeat and cleanup;
- job timeouts use one watchdog thread, not SIGALRM (signals reach only the main thread);
- one heartbeat thread refreshes every job in flight and requeues the jobs of
  workers that died (see job_recovery);
- SIGTERM stops dequeuing, lets jobs in flight finish for a grace period, then puts
  the rest back on the queue, so a deploy loses nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import BaseWorker, WorkerStatus

import job_recovery
from job_timeouts import WatchdogDeathPenalty

logger = logging.getLogger(__name__)

# A job's heartbeat holds for this many beats (plus a few seconds): short, so that the
# jobs of a killed worker are noticed and run again within seconds, not minutes.
BEATS_BEFORE_ABANDONED = 3


@dataclass
class InFlight:
    """A job this worker is running, and its execution once registered."""

    job: Job
    queue: Queue
    execution: Execution | None = None


class _PerThread(threading.local):
    execution: Execution | None = None
    working_time: float = 0


class ConcurrentWorker(BaseWorker):
    """Runs up to `concurrency` jobs at once on threads, with RQ's guarantees per job."""

    death_penalty_class = WatchdogDeathPenalty
    # One log line per job is enough at hundreds of jobs a second.
    log_result_lifespan = False

    def __init__(
        self, *args, concurrency: int = 64, shutdown_grace_s: float = 20.0, **kwargs
    ) -> None:
        self._per_thread = _PerThread()
        kwargs.setdefault("job_monitoring_interval", 5)
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self.shutdown_grace_s = shutdown_grace_s
        self._slots = threading.BoundedSemaphore(concurrency)
        self._in_flight: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="rq-job")
        self._stopped = threading.Event()

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

    def work(self, logging_level: str | None = "INFO", burst: bool = False, **_: object) -> bool:
        """Dequeue and run jobs until asked to stop (or, in burst mode, until idle)."""
        self.bootstrap(logging_level)
        self._install_signal_handlers()
        beat = threading.Thread(target=self._heartbeat_loop, name="rq-heartbeat", daemon=True)
        beat.start()
        worked = False
        try:
            worked = self._dequeue_loop(burst)
        finally:
            self._finish_in_flight()
            self._stopped.set()
            self.teardown()
        return worked

    def _dequeue_loop(self, burst: bool) -> bool:
        worked = False
        while not self._stop_requested:
            if not self._slots.acquire(timeout=1):
                continue
            job_and_queue = self._dequeue()
            if job_and_queue is None:
                self._slots.release()
                if burst and self.in_flight_count() == 0:
                    break
                continue
            self._start(*job_and_queue)
            worked = True
        return worked

    def _dequeue(self) -> tuple[Job, Queue] | None:
        """One job from the queues, or None after a short wait."""
        self.set_state(WorkerStatus.IDLE if not self.in_flight_count() else WorkerStatus.BUSY)
        try:
            return self.queue_class.dequeue_any(
                self._ordered_queues,
                self.dequeue_timeout,
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
                death_penalty_class=self.death_penalty_class,
            )
        except DequeueTimeout:
            return None
        except Exception:
            logger.exception("dequeue failed; retrying")
            self._stopped.wait(1)
            return None

    def _start(self, job: Job, queue: Queue) -> None:
        with self._lock:
            self._in_flight[job.id] = InFlight(job, queue)
        self._pool.submit(self._run, job, queue)

    def _run(self, job: Job, queue: Queue) -> None:
        """Run one job on this thread with its own execution record."""
        try:
            self.prepare_execution(job)
            with self._lock:
                if job.id in self._in_flight:
                    self._in_flight[job.id].execution = self.execution
            self.perform_job(job, queue)
        except Exception:
            logger.exception("job %s: worker bookkeeping failed", job.id)
        finally:
            self.execution = None
            with self._lock:
                self._in_flight.pop(job.id, None)
            self._slots.release()

    def set_state(self, state: str, pipeline=None) -> None:
        """Write the worker's state only when it changes, not once per job."""
        if state != self._state:
            super().set_state(state, pipeline=pipeline)

    def set_current_job_id(self, job_id: str | None = None, pipeline=None) -> None:
        """Keep the worker hash's single `current_job` field out of per-job bookkeeping."""

    def _heartbeat_loop(self) -> None:
        """Refresh the worker's and every running job's heartbeat; requeue dead workers' jobs."""
        while not self._stopped.wait(self.job_monitoring_interval):
            try:
                self._beat()
                job_recovery.requeue_abandoned(self.queues, self.connection, self.serializer)
            except Exception:
                logger.exception("heartbeat failed; will retry")

    def _beat(self) -> None:
        with self._lock:
            running = [entry for entry in self._in_flight.values() if entry.execution]
        with self.connection.pipeline() as pipeline:
            self.heartbeat(self.worker_ttl, pipeline=pipeline)
            for entry in running:
                ttl = self.get_heartbeat_ttl(entry.job)
                entry.execution.heartbeat(entry.job.started_job_registry, ttl, pipeline=pipeline)
                entry.job.heartbeat(job_recovery.utcnow(), ttl, pipeline=pipeline, xx=True)
            pipeline.execute()

    def clean_registries(self) -> None:
        """Requeue abandoned jobs before RQ's own cleanup would mark them failed."""
        job_recovery.requeue_abandoned(self.queues, self.connection, self.serializer)
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
        for entry in left:
            job_recovery.hand_back(entry.job, entry.queue, entry.execution)
        if left:
            logger.warning("handed %d unfinished jobs back to the queue", len(left))
            self.teardown()
            # Threads still waiting on the model must not finish these jobs a second time.
            os._exit(0)
        self._pool.shutdown(wait=True)
