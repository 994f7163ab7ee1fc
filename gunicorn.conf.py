"""gunicorn settings for the web process (`gunicorn -c gunicorn.conf.py app:app`).

The web process only validates, queues and reads Redis: every request is short and
I/O-bound, so threads serve it well. WEB_CONCURRENCY (set by Heroku per dyno size)
chooses the number of processes; WEB_THREADS the threads in each.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
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
