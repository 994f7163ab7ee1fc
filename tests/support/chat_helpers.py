"""Driving chats against an app like a frontend does."""

from __future__ import annotations

from redis import Redis
from rq.job import Job

from studychat.chat.task_queue import SERIALIZER


def start_chats(client, count: int, participant_id: str = "P-test") -> list[str]:
    """POST /chat `count` times; the job ids."""
    ids = []
    for index in range(count):
        body = {
            "messages": [{"role": "user", "content": f"turn {index}"}],
            "participantId": participant_id,
        }
        answer = client.post("/chat", json=body)
        assert answer.status_code == 202, answer.get_data(as_text=True)
        ids.append(answer.get_json()["jobId"])
    return ids


def fetch_job(connection: Redis, job_id: str) -> Job:
    """The RQ job as the worker left it."""
    return Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
