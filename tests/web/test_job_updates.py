"""Long polls and streams woken by the worker's messages, with real Redis and worker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis import Redis

from studychat import outage_watch
from studychat.chat.answer_stream import (
    UPDATES_CHANNEL,
    deltas_key,
    mark_ended,
    read_deltas,
)
from studychat.chat.outcomes import outcome_key
from studychat.web.job_updates import JobUpdates
from studychat.web.returning_requests import ReturningShare
from studychat.web.services import services
from tests.support.polling import wait_for
from tests.support.redis_monitor import commands_on
from tests.support.upstream import control

pytestmark = pytest.mark.timeout(60)

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def has_ended(connection: Redis, job_id: str) -> bool:
    """Whether the job's stream of deltas holds its end marker (what end_job writes)."""
    return any(text is None for _, text in read_deltas(connection, job_id, "0"))


@contextmanager
def waiting_in_background(updates: JobUpdates, job_id: str, seconds: float) -> Iterator[list[bool]]:
    """Wait on a thread for the job to end; whether it did is in the list after the block."""
    result: list[bool] = []
    connection = updates.connection

    def wait() -> None:
        result.append(updates.wait_for(job_id, seconds, lambda: has_ended(connection, job_id)))

    thread = threading.Thread(target=wait)
    thread.start()
    wait_for(lambda: updates.waiting() == 1)
    try:
        yield result
    finally:
        thread.join(seconds + 5)


def ends_within(updates: JobUpdates, job_id: str, seconds: float) -> bool:
    """Whether a wait of 30 s for the job ends within `seconds`, having seen it ended."""
    result: list[bool] = []
    waiting = threading.Thread(
        target=lambda: result.append(
            updates.wait_for(job_id, 30, lambda: has_ended(updates.connection, job_id))
        ),
        daemon=True,
    )
    waiting.start()
    waiting.join(seconds)
    return result == [True]


def end_job(connection: Redis, job_id: str, channel: str = UPDATES_CHANNEL) -> None:
    """What the worker does once a job's outcome is stored: the end marker and its message."""
    with connection.pipeline() as pipeline:
        mark_ended(pipeline, job_id, streamed=True, channel=channel)
        pipeline.execute()


def looks_in_a_wait(updates: JobUpdates, job_id: str, seconds: float) -> int:
    """How many times a wait of `seconds` for a job that does not end looks at it."""
    looks: list[bool] = []
    assert updates.wait_for(job_id, seconds, lambda: looks.append(False) or False) is False
    return len(looks)


def subscribers(connection: Redis, channel: str) -> int:
    """How many clients subscribe to `channel` by its name (PUBSUB NUMSUB)."""
    return connection.pubsub_numsub(channel)[0][1]


def listening(connection: Redis, **options: Any) -> JobUpdates:
    updates = JobUpdates(connection, **options)
    updates.wait_for("warm-up", 0.01, lambda: False)  # the first wait starts the subscription
    wait_for(lambda: updates.listening)
    return updates


@pytest.fixture()
def slow_model_client(own_app, own_stack_env, start_worker, upstream):
    """A test client of the app with a worker running and a model that answers in 1.5 s."""
    start_worker(own_stack_env)
    control(upstream, {"latency": 1.5})
    return own_app.test_client()


def long_poll_looks(client, connection: Redis, job_id: str) -> int:
    """Long-poll the job to its answer; how many times the poll read the job's outcome."""
    with commands_on(connection, outcome_key(job_id)) as commands:
        answer = client.post("/check_response", json={"jobId": job_id, "wait": 20})
    assert answer.status_code == 200
    assert "response" in answer.get_json()
    return len([command for command in commands if "HMGET" in command.upper()])


def test_a_long_poll_reads_its_job_only_when_woken(own_app, slow_model_client, connection):
    client = slow_model_client
    job_id = client.post("/chat", json=CHAT).get_json()["jobId"]
    # Not the first poll of its origin (which the app answers once, at once: lean_polls).
    assert client.post("/check_response", json={"jobId": job_id}).get_json() == {"processing": True}
    # Looking every 0.2 s through the model's 1.5 s would have been 7 looks or more; woken,
    # a poll looks when it starts and when its message comes (plus at most one while the
    # process's subscription is being made).
    assert 1 <= long_poll_looks(client, connection, job_id) <= 3
    assert services(own_app).job_updates.waiting() == 0


def test_a_long_poll_right_after_its_chat_looks_only_when_its_answer_comes(
    own_app, slow_model_client, connection
):
    client = slow_model_client
    # The origin's first poll of a job (which the app answers once, at once: lean_polls).
    earlier = client.post("/chat", json=CHAT).get_json()["jobId"]
    assert client.post("/check_response", json={"jobId": earlier}).status_code == 200
    updates = services(own_app).job_updates
    updates.wait_for("warm-up", 0.01, lambda: False)  # the first wait subscribes...
    wait_for(lambda: updates.listening)  # ...and the subscription is up before the chat
    job_id = client.post("/chat", json=CHAT).get_json()["jobId"]
    # Queued by this process and not written to since: nothing to look at before the
    # worker's message, then one look that hands the answer over.
    assert long_poll_looks(client, connection, job_id) == 1


def test_an_open_stream_reads_the_deltas_only_when_woken(slow_model_client, connection):
    client = slow_model_client
    job_id = client.post("/chat", json=CHAT).get_json()["jobId"]  # not streamed: one delta
    with commands_on(connection, deltas_key(job_id)) as looks:
        events = client.get(f"/stream/{job_id}").get_data(as_text=True)
    assert "event: done" in events
    # As for the long poll: 7 reads or more at one per 0.2 s, here one per message.
    assert 1 <= len([look for look in looks if "XREAD" in look.upper()]) <= 3


def test_a_streamed_answer_is_read_once_per_batch_of_deltas(slow_model_client, connection):
    client = slow_model_client
    body = {"messages": [{"role": "user", "content": "one two three four five"}], "stream": True}
    job_id = client.post("/chat", json=body).get_json()["jobId"]
    with commands_on(connection, deltas_key(job_id)) as commands:
        events = client.get(f"/stream/{job_id}").get_data(as_text=True)
    assert "event: done" in events
    kinds = [command.split()[0].upper() for command in commands]
    first_batch = kinds.index("XADD")
    # While the model thinks (1.5 s) the stream reads once, not every 0.2 s (7 times or
    # more); then once for each batch of deltas the worker adds (the end marker is one).
    assert kinds[:first_batch].count("XREAD") <= 2
    assert kinds.count("XREAD") <= kinds.count("XADD") + 2


def test_a_wait_ends_when_the_job_ends(connection):
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    with waiting_in_background(updates, job_id, 30) as result:
        end_job(connection, job_id)
    assert result == [True]
    updates.close()


def test_a_wait_for_a_job_queued_here_and_not_heard_of_looks_only_at_its_end(connection):
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    updates.note_queued(job_id)
    looks: list[bool] = []
    assert updates.wait_for(job_id, 0.5, lambda: looks.append(False) or False) is False
    assert len(looks) == 1  # none when the wait began: nothing was written to the job yet
    updates.close()


def test_a_job_queued_here_and_heard_of_before_its_wait_is_looked_at_at_once(connection):
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    updates.note_queued(job_id)
    end_job(connection, job_id)
    # Messages are handled in order: once a wait for a later one ends, this one was heard.
    later = str(uuid.uuid4())
    with waiting_in_background(updates, later, 30) as result:
        end_job(connection, later)
    assert result == [True]
    # The wait looks at once and sees the end, rather than sleep through its 30 s.
    assert ends_within(updates, job_id, 10)
    updates.close()


def test_a_job_queued_before_the_subscription_was_lost_is_looked_at_first(connection):
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    updates.note_queued(job_id)
    connection.client_kill_filter(_type="pubsub")
    wait_for(lambda: not updates.listening)
    assert not updates.surely_pending(job_id)  # a poll looks: its message may be lost
    end_job(connection, job_id)  # its message is lost, or comes to the new subscription
    wait_for(lambda: updates.listening)
    assert not updates.surely_pending(job_id)
    assert ends_within(updates, job_id, 10)
    updates.close()


def test_short_polls_that_come_back_to_their_process_start_the_subscription(connection):
    updates = JobUpdates(connection, returning_polls=ReturningShare(sample=10))
    jobs = [str(uuid.uuid4()) for _ in range(10)]
    for job_id in jobs:
        updates.note_queued(job_id)
    assert not any(updates.surely_pending(job_id) for job_id in jobs)  # nobody listens yet
    assert updates.started  # ten polls of ten jobs queued here
    wait_for(lambda: updates.listening)
    updates.close()


def test_short_polls_of_jobs_queued_elsewhere_leave_it_unstarted(connection):
    updates = JobUpdates(connection, returning_polls=ReturningShare(sample=10))
    mine = str(uuid.uuid4())
    updates.note_queued(mine)
    # Half come back (two processes behind a router): not worth a message per answer.
    for number in range(30):
        updates.surely_pending(mine if number % 2 else str(uuid.uuid4()))
    assert not updates.started
    assert connection.pubsub_numsub(UPDATES_CHANNEL) == [(UPDATES_CHANNEL.encode(), 0)]
    updates.close()


def test_a_job_queued_here_is_surely_pending_until_heard_of(connection):
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    updates.note_queued(job_id)
    assert updates.surely_pending(job_id)
    assert not updates.surely_pending(str(uuid.uuid4()))  # one queued elsewhere
    end_job(connection, job_id)
    wait_for(lambda: not updates.surely_pending(job_id))
    updates.close()


def test_a_job_unheard_of_is_taken_for_pending_only_for_a_while(connection):
    updates = listening(connection, trusted_for_s=0.3)
    job_id = str(uuid.uuid4())
    updates.note_queued(job_id)
    assert updates.surely_pending(job_id)
    # An outcome nobody announced (a job cancelled with RQ's tools) shows after that while.
    wait_for(lambda: not updates.surely_pending(job_id), timeout=5)
    updates.close()


def test_the_worker_announces_a_job_to_the_process_that_queued_it(
    own_app, slow_model_client, connection
):
    client = slow_model_client
    with commands_on(connection, "PUBLISH") as commands:
        job_id = client.post("/chat", json=CHAT).get_json()["jobId"]
        long_poll_looks(client, connection, job_id)
    published = [command.replace('"', "").split() for command in commands]
    to = [
        channel for name, channel, job in published if name.upper() == "PUBLISH" and job == job_id
    ]
    assert to == [services(own_app).job_updates.channel]


def test_each_process_hears_of_the_jobs_it_queued_only(connection):
    one, other = listening(connection), listening(connection)
    assert one.channel != other.channel
    job_id = str(uuid.uuid4())
    one.note_queued(job_id)
    end_job(connection, job_id, one.channel)
    wait_for(lambda: not one.surely_pending(job_id))
    # Each message goes to one process: with two, each used to hear every answer.
    assert subscribers(connection, one.channel) == 1
    assert subscribers(connection, other.channel) == 1
    assert connection.pubsub_numpat() == 0
    one.close()
    other.close()


def test_a_wait_relies_on_messages_only_for_jobs_it_hears_of(connection):
    updates = listening(connection)
    mine = str(uuid.uuid4())
    updates.note_queued(mine)
    with connection.pipeline() as pipeline:  # a delta: written to, and still going
        pipeline.publish(updates.channel, mine)
        pipeline.execute()
    wait_for(lambda: not updates.surely_pending(mine))
    # It looks when the wait begins and when it runs out, and sleeps in between...
    assert looks_in_a_wait(updates, mine, 0.6) == 2
    # ...but a job queued elsewhere is announced to another process: it looks every 0.2 s.
    assert looks_in_a_wait(updates, str(uuid.uuid4()), 0.6) >= 3
    updates.close()


def test_waits_mostly_for_jobs_queued_elsewhere_make_it_hear_of_every_job(connection):
    updates = listening(connection, returning_waits=ReturningShare(sample=4))
    for _ in range(4):
        updates.wait_for(str(uuid.uuid4()), 0.01, lambda: False)
    wait_for(lambda: updates.hearing_all)
    assert connection.pubsub_numpat() == 1
    assert subscribers(connection, updates.channel) == 0  # each message heard once
    elsewhere = str(uuid.uuid4())
    assert looks_in_a_wait(updates, elsewhere, 0.6) == 2  # when it begins and runs out
    with waiting_in_background(updates, elsewhere, 30) as result:
        end_job(connection, elsewhere, f"{UPDATES_CHANNEL}:another-process")
    assert result == [True]
    updates.close()


def test_a_process_hearing_every_job_does_so_again_after_losing_its_subscription(connection):
    updates = listening(connection, returning_waits=ReturningShare(sample=1))
    updates.wait_for(str(uuid.uuid4()), 0.01, lambda: False)
    wait_for(lambda: updates.hearing_all)
    connection.client_kill_filter(_type="pubsub")
    wait_for(lambda: not updates.hearing_all)
    wait_for(lambda: updates.hearing_all)
    assert connection.pubsub_numpat() == 1
    updates.close()


def test_a_wait_runs_out_when_the_job_does_not_end(connection):
    updates = listening(connection)
    assert updates.wait_for(str(uuid.uuid4()), 0.3, lambda: 0) == 0
    assert updates.waiting() == 0
    updates.close()


def test_a_wait_ends_although_its_message_came_while_the_subscription_was_down(connection):
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    with waiting_in_background(updates, job_id, 30) as result:
        connection.client_kill_filter(_type="pubsub")
        end_job(connection, job_id)  # published before or after the subscription is back
    assert result == [True]
    wait_for(lambda: updates.listening)
    updates.close()


def test_a_job_that_ended_before_the_wait_needs_no_message(connection):
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    end_job(connection, job_id)
    assert updates.wait_for(job_id, 30, lambda: has_ended(connection, job_id)) is True
    updates.close()


def test_waits_look_for_themselves_while_redis_is_away(own_redis, connection, caplog):
    outage_watch.REDIS.succeeded()  # no outage left over from another test of this process
    updates = listening(connection)
    job_id = str(uuid.uuid4())
    own_redis.stop()
    wait_for(lambda: not updates.listening)
    own_redis.start()
    # The outage is said once each way, as by every other loop that rides through one.
    wait_for(lambda: "Redis is back after" in caplog.text)
    assert "Redis unavailable" in caplog.text
    # Back, but the subscription may not be yet: the wait must not depend on it.
    with waiting_in_background(updates, job_id, 30) as result:
        end_job(connection, job_id)
    assert result == [True]
    updates.close()


def test_a_subscription_that_hangs_without_closing_is_made_anew(connection):
    updates = JobUpdates(connection, ping_every_s=0.2, silence_limit_s=1.0)
    updates.wait_for("warm-up", 0.01, lambda: False)  # the first wait starts the subscription
    wait_for(lambda: updates.listening)
    connection.client_pause(4000)  # Redis answers nobody for 4 s, and closes nothing
    # Its sign of life unanswered, the subscription is no longer relied on...
    wait_for(lambda: not updates.listening, timeout=10)
    # ...and once Redis answers again it is made anew.
    wait_for(lambda: updates.listening, timeout=30)
    job_id = str(uuid.uuid4())
    with waiting_in_background(updates, job_id, 30) as result:
        end_job(connection, job_id)
    assert result == [True]
    updates.close()
