"""gunicorn settings for the web process (`gunicorn -c gunicorn.conf.py app:app`).

Every request is I/O-bound (validate, then Redis or MongoDB), and two kinds hold a
connection open for a long time: GET /stream (server-sent events) and the long poll
of /check_response. With gevent workers an open connection costs a greenlet, not a
thread, so hundreds of them fit in one process; a thread-per-request worker would
run out of threads at a few dozen. WEB_CONCURRENCY (Heroku sets it by dyno size)
chooses the number of processes, WEB_CONNECTIONS the open connections each may hold.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
# Heroku's router closes idle connections after 55 s; keep ours shorter than its timeout.
keepalive = 5
timeout = 30
graceful_timeout = 25
accesslog = "-"
errorlog = "-"


def on_starting(server):
    """Refuse to start while a required setting is missing, naming every one."""
    from settings import check_settings_or_exit

    check_settings_or_exit()
