# One image for both processes of the service: the web process (this CMD, the Procfile's
# `web` line) and the worker (`python worker.py`, the Procfile's `worker` line).
# Used by compose.yaml on one machine and by DigitalOcean App Platform (.do/app.yaml).
FROM python:3.11-slim

# No .pyc files in the image, logs reach `docker logs` at once, pip keeps no cache.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Runtime dependencies only (no test tools), in their own layer: a code change does not
# reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The code stays owned by root: the process that serves requests cannot rewrite it.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY . .
USER app

# gunicorn.conf.py binds 0.0.0.0:$PORT (default 5000, as in studychat/settings.py).
EXPOSE 5000

# slim has no curl: ask /healthz with Python's standard library; any error or non-2xx fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '5000') + '/healthz', timeout=4)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
