"""Chat jobs queued before the move to the studychat package name `jobs.run_chat`.

RQ finds a job's function by its dotted path, so those jobs still run; new ones are
queued as `studychat.chat.jobs.run_chat`.
"""

from studychat.chat.jobs import run_chat

__all__ = ["run_chat"]
