"""Where the worker announces a job's writes: the channel its web process named."""

from __future__ import annotations

from studychat.chat.answer_stream import UPDATES_CHANNEL, UPDATES_META, updates_channel
from studychat.chat.task_queue import enqueue_chat, make_queue
from studychat.settings import Settings
from tests.support.chat_helpers import fetch_job

MESSAGES = [{"role": "user", "content": "hello"}]


def queued_job(connection, own_stack_env, **options):
    settings = Settings(**own_stack_env)
    job_id = enqueue_chat(make_queue(connection), MESSAGES, "p-1", settings, **options)
    return fetch_job(connection, job_id)


def test_a_job_is_announced_on_the_channel_of_the_process_that_queued_it(connection, own_stack_env):
    channel = f"{UPDATES_CHANNEL}:0123abcd"
    job = queued_job(connection, own_stack_env, updates_channel=channel)
    assert updates_channel(job) == channel


def test_a_job_that_names_no_channel_of_ours_is_announced_on_the_shared_one(
    connection, own_stack_env
):
    assert updates_channel(queued_job(connection, own_stack_env)) == UPDATES_CHANNEL
    job = queued_job(connection, own_stack_env)
    job.meta[UPDATES_META] = "some-other-channel"  # never a channel outside ours
    job.save_meta()
    assert updates_channel(fetch_job(connection, job.id)) == UPDATES_CHANNEL
