"""Every part of RQ beyond its public API that the worker relies on, in one place.

ConcurrentWorker runs many jobs of one worker on threads, which RQ's own workers never
do, so it builds on RQ's worker internals; recovery reads RQ's registries as RQ lays
them out. An RQ upgrade that renames, removes or changes any of these must fail a named
test: tests/worker/test_rq_internals.py checks each entry against the installed RQ.
Name a new dependency here before using it.
"""

from __future__ import annotations

# Methods of rq.worker.BaseWorker the worker calls or overrides, with the parameters it
# passes or receives by name.
WORKER_METHODS: dict[str, tuple[str, ...]] = {
    "_install_signal_handlers": (),
    "bootstrap": ("logging_level",),
    "teardown": (),
    "register_birth": (),
    "perform_job": ("job", "queue"),
    # the hooks of perform_job the worker overrides (PERFORM_JOB_HOOKS)
    "prepare_job_execution": ("job", "remove_from_intermediate_queue"),
    "handle_execution_ended": ("job", "queue", "heartbeat_ttl"),
    "handle_job_success": ("job", "queue", "started_job_registry"),
    "increment_total_working_time": ("job_execution_time", "pipeline"),
    "heartbeat": ("timeout", "pipeline"),
    "set_state": ("state", "pipeline"),
    "set_current_job_id": ("job_id", "pipeline"),
    "get_heartbeat_ttl": ("job",),
    "clean_registries": (),
    "request_stop": ("signum", "frame"),
    "subscribe": (),
    "handle_payload": ("message",),
}
# BaseWorker.perform_job calls these; the worker overrides them to record a job's start
# with the others taken at the same time, and its success with those ending at once.
PERFORM_JOB_HOOKS: tuple[str, ...] = (
    "prepare_job_execution",
    "handle_execution_ended",
    "handle_job_success",
)
# Attributes of a BaseWorker instance the worker reads or sets.
WORKER_ATTRIBUTES: tuple[str, ...] = (
    "_state",
    "_stop_requested",
    "_ordered_queues",
    "execution",
    "current_job_working_time",
    "pubsub",
    "pubsub_thread",
    "pubsub_channel_name",
    "worker_ttl",
    "job_monitoring_interval",
    "death_penalty_class",
    "log_result_lifespan",
    "queue_class",
    "job_class",
    "serializer",
)
# Class-level names the worker overrides.
WORKER_PROPERTIES: tuple[str, ...] = ("dequeue_timeout",)
# Queue.dequeue_any's keyword parameters the worker passes.
DEQUEUE_ANY_PARAMETERS: tuple[str, ...] = (
    "queues",
    "timeout",
    "connection",
    "job_class",
    "serializer",
    "death_penalty_class",
)
# Methods of the intermediate queue (jobs between the queue and the started registry).
INTERMEDIATE_QUEUE_METHODS: tuple[str, ...] = ("get_job_ids", "set_first_seen", "get_first_seen")
# Execution methods the worker and recovery call, with parameters passed by name.
EXECUTION_METHODS: dict[str, tuple[str, ...]] = {
    "create": ("job", "ttl", "pipeline", "worker_name"),
    "heartbeat": ("started_job_registry", "ttl", "pipeline"),
    "delete": ("job", "pipeline"),
}
# Job methods the worker calls while recording a job's start and success, with the
# parameters it passes by name.
JOB_METHODS: dict[str, tuple[str, ...]] = {
    "prepare_for_execution": ("worker_name", "pipeline"),
    "restore": ("raw_data",),
    "get_result_ttl": ("default_ttl",),
    "_handle_success": (
        "result_ttl",
        "pipeline",
        "worker_name",
        "execution_id",
        "execution_started_at",
        "execution_ended_at",
    ),
    "cleanup": ("ttl", "pipeline", "remove_from_queue"),
}
# Job attributes the worker reads: the prefix of a job's hash, as the take script builds
# it, and RQ's count of repeats (a repeating job is left to RQ's own success handling).
JOB_ATTRIBUTES: tuple[str, ...] = ("redis_job_namespace_prefix", "repeats_left")
# StartedJob.perform is Job.perform less this statement, which the worker sends in the
# transaction that records the job as started; the rest (RQ's job stack, Job._execute,
# Job._result) it repeats as RQ has it.
PERFORM_LEFT_TO_START = "self.connection.persist(self.key)"
# The field of the worker's hash that counts its successful jobs (Worker.successful_job_count,
# which `rq info` and rq-dashboard show): the worker adds a batch's successes to it at once,
# where RQ's increment_successful_job_count adds one.
SUCCESSFUL_JOB_COUNT = "successful_job_count"
# What Job.cleanup does for a positive ttl: the keys it sets to expire. The worker sets
# only the first (expire_finished); the others belong to dependencies its jobs never have.
CLEANUP_EXPIRES: tuple[str, ...] = (
    "connection.expire(self.key, ttl)",
    "connection.expire(self.dependents_key, ttl)",
    "connection.expire(self.dependencies_key, ttl)",
)
# Attributes the shared watchdog reads from rq.timeouts.BaseDeathPenalty.
DEATH_PENALTY_ATTRIBUTES: tuple[str, ...] = ("_timeout", "_exception")
# The started registry keeps `<job id>:<execution id>` members scored by when their
# heartbeat expires; recovery splits them with rq.utils.parse_composite_key.
STARTED_REGISTRY_MEMBER = "{job_id}:{execution_id}"
# The two INFO lines RQ's worker writes for every job that succeeds (the format strings of
# BaseWorker.perform_job and handle_job_success); the job's own line says as much.
PER_JOB_LOG_FORMATS: frozenset[str] = frozenset(
    {"Worker %s: %s: %s (%s)", "Successfully completed job %s in %ss on worker %s"}
)
