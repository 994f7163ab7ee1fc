"""gunicorn settings for the web process (`gunicorn -c gunicorn.conf.py app:app`).

Every request is I/O-bound (validate, then Redis or MongoDB), and two kinds hold a
connection open for a long time: GET /stream (server-sent events) and the long poll
of /check_response. With gevent workers an open connection costs a greenlet, not a
thread, so hundreds of them fit in one process; a thread-per-request worker would
run out of threads at a few dozen. WEB_CONCURRENCY (Heroku sets it by dyno size)
chooses the number of processes, WEB_CONNECTIONS the open connections each may hold.

Logs are JSON lines (logging_setup.py), gunicorn's own included. The processes share a
fresh PROMETHEUS_MULTIPROC_DIR so that /metrics sums the request counts of all of them
(request_metrics.py).
"""

import os
import shutil
import tempfile

from studychat.logging_setup import ACCESS_FORMAT, gunicorn_logconfig
from studychat.settings import ProcessSettings, load_dotenv_file

# PORT, WEB_CONCURRENCY, WEB_CONNECTIONS and LOG_LEVEL, from the environment or .env; the
# service's own settings are checked in on_starting, where a missing one is one clear line.
load_dotenv_file()
process = ProcessSettings()
bind = f"0.0.0.0:{process.PORT}"
workers = process.WEB_CONCURRENCY
worker_class = "gevent"
worker_connections = process.WEB_CONNECTIONS
# Heroku's router closes idle connections after 55 s; keep ours shorter than its timeout.
keepalive = 5
timeout = 30
graceful_timeout = 25
# gunicorn 27's runtime control socket lives in the home directory, shared by every
# gunicorn of the user; the service needs none, and two on one machine would collide.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
# gunicorn's logger, gathering only the fields of our access line (see that module).
logger_class = "studychat.web.access_log.AccessLogger"
logconfig_dict = gunicorn_logconfig(process.LOG_LEVEL)
# Method, path and status only (logging_setup adds the time taken and the request id):
# no query string, no client address, never a body.
access_log_format = ACCESS_FORMAT


def on_starting(server):
    """Refuse to start while a required setting is missing or the study file is wrong."""
    from studychat.startup import check_or_exit

    check_or_exit()
    # Set here, in the master before any worker imports prometheus_client, never at import
    # of this file (tests read it); each start gets an empty directory.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-web-")


def post_worker_init(worker):
    """Set the garbage collector of a web process once its app is loaded (gc_tuning)."""
    from studychat.gc_tuning import tune_garbage_collector

    tune_garbage_collector()


def child_exit(server, worker):
    """Let prometheus_client drop the live gauges of a worker process that has ended."""
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory of this run."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
