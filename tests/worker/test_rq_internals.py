"""Each internal of RQ listed in studychat.worker.rq_internals, checked against the installed RQ.

An RQ upgrade that renames, removes or reshapes one of them fails the test named after it.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.utils import parse_composite_key
from rq.worker import BaseWorker

from studychat.chat.task_queue import SERIALIZER
from studychat.worker import rq_internals
from studychat.worker.concurrent_worker import ConcurrentWorker
from studychat.worker.started_job import StartedJob


def parameters(function) -> set[str]:
    return set(inspect.signature(function).parameters)


# (class, method, parameters passed by name) of every method listed.
METHODS = [
    (owner, name, passed)
    for owner, listed in (
        (BaseWorker, rq_internals.WORKER_METHODS),
        (Job, rq_internals.JOB_METHODS),
        (Execution, rq_internals.EXECUTION_METHODS),
    )
    for name, passed in sorted(listed.items())
]


@pytest.mark.parametrize(
    ("owner", "name", "passed"), METHODS, ids=[f"{o.__name__}.{n}" for o, n, _ in METHODS]
)
def test_method(owner, name, passed):
    method = getattr(owner, name)
    assert callable(method)
    assert set(passed) <= parameters(method), f"{owner.__name__}.{name} lost {passed}"


@pytest.mark.parametrize("name", rq_internals.PERFORM_JOB_HOOKS)
def test_perform_job_hook(name):
    assert f"self.{name}(" in inspect.getsource(BaseWorker.perform_job)


def statements(function) -> list[str]:
    """The statements of `function`'s body, without its docstring, as ast prints them."""
    (definition,) = ast.parse(textwrap.dedent(inspect.getsource(function))).body
    assert isinstance(definition, ast.FunctionDef)
    body = definition.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return [ast.unparse(statement) for statement in body]


def test_started_job_performs_as_rq_does_less_what_the_start_transaction_sends():
    installed = statements(Job.perform)
    assert installed[0] == rq_internals.PERFORM_LEFT_TO_START
    assert statements(StartedJob.perform) == installed[1:]


@pytest.mark.parametrize("name", rq_internals.JOB_ATTRIBUTES)
def test_job_attribute(connection, name):
    assert hasattr(Job(connection=connection), name), f"a Job has no {name} any more"


@pytest.fixture()
def worker(connection: Redis) -> Iterator[BaseWorker]:
    yield ConcurrentWorker([Queue("contract", connection=connection)], connection=connection)


@pytest.mark.parametrize("name", rq_internals.WORKER_ATTRIBUTES)
def test_worker_attribute(worker, name):
    assert hasattr(worker, name), f"a BaseWorker has no {name} any more"


@pytest.mark.parametrize("name", rq_internals.WORKER_PROPERTIES)
def test_worker_property(name):
    assert isinstance(inspect.getattr_static(BaseWorker, name), property)


def test_dequeue_any_parameters():
    assert set(rq_internals.DEQUEUE_ANY_PARAMETERS) <= parameters(Queue.dequeue_any)


@pytest.mark.parametrize("name", rq_internals.INTERMEDIATE_QUEUE_METHODS)
def test_intermediate_queue_method(connection, name):
    queue = Queue("contract", connection=connection)
    assert isinstance(queue.intermediate_queue, IntermediateQueue)
    assert callable(getattr(queue.intermediate_queue, name))


@pytest.mark.parametrize("name", rq_internals.DEATH_PENALTY_ATTRIBUTES)
def test_death_penalty_attribute(name):
    penalty = BaseDeathPenalty(5, JobTimeoutException)
    assert hasattr(penalty, name)


def test_started_registry_member_layout(connection):
    queue = Queue("contract", connection=connection, serializer=SERIALIZER)
    worker = ConcurrentWorker([queue], connection=connection, serializer=SERIALIZER)
    job = queue.enqueue("studychat.chat.jobs.run_chat", kwargs={"messages": []})
    worker.prepare_execution(job)
    assert worker.execution is not None
    members = connection.zrange(queue.started_job_registry.key, 0, -1)
    expected = rq_internals.STARTED_REGISTRY_MEMBER.format(
        job_id=job.id, execution_id=worker.execution.id
    )
    assert [member.decode() for member in members] == [expected]
    assert parse_composite_key(expected) == (job.id, worker.execution.id)


def test_cleanup_of_a_kept_result_expires_the_listed_keys_and_nothing_else():
    (branch,) = [
        node
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(Job.cleanup))))
        if isinstance(node, ast.If) and ast.unparse(node.test) == "ttl > 0"
    ]
    expires = [ast.unparse(node) for node in branch.body if isinstance(node, ast.Expr)]
    assert expires == list(rq_internals.CLEANUP_EXPIRES)


def test_successful_job_count_field_is_what_rq_reads_and_adds_to(connection):
    queue = Queue("contract", connection=connection, serializer=SERIALIZER)
    worker = ConcurrentWorker([queue], connection=connection, serializer=SERIALIZER)
    worker.register_birth()
    worker.increment_successful_job_count()
    connection.hincrby(worker.key, rq_internals.SUCCESSFUL_JOB_COUNT, 3)
    worker.refresh()
    assert worker.successful_job_count == 4


@pytest.mark.parametrize("text", sorted(rq_internals.PER_JOB_LOG_FORMATS))
def test_per_job_log_format(text):
    source = inspect.getsource(BaseWorker.perform_job) + inspect.getsource(
        BaseWorker.handle_job_success
    )
    assert f"'{text}'" in source
