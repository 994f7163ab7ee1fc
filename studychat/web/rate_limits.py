"""Rate limit of POST /chat (CHAT_RATE_LIMIT), counted in the Redis all web processes share.

The client is the participantId when the body names one, else the client's IP address as
the proxy in front reports it (werkzeug's ProxyFix trusts PROXY_FIX_X_FOR hops of
X-Forwarded-For, so a client cannot forge its address by sending that header itself).

When Redis is down the limiter's error is not swallowed: /chat answers 503 like every
other Redis outage. Failing open would admit nothing anyway, since a chat turn cannot be
queued without Redis, and failing closed means a half-broken Redis never lifts the limit.
Routes without a limit never touch the limiter's storage, so /save and
/check_participation keep working through a Redis outage.

Only flask-limiter's public API is used: the limit is a default that request_filter
leaves to POST /chat alone. Its hooks still run on every request, at about 0.1 ms of
CPU per poll (docs/security.md has the measurement).
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded
from redis import Redis
from werkzeug.middleware.proxy_fix import ProxyFix

from studychat.exceptions import BadRequest
from studychat.settings import Settings
from studychat.web.errors import error_response
from studychat.web.schemas import MAX_ID_CHARS, is_unicode, json_body

# Prefix of the limiter's Redis keys (the `limits` library adds its own "LIMITS:").
KEY_PREFIX = "ratelimit"
CHAT_ENDPOINT = "chat.chat"
# Headers of a limited answer that a browser on another origin may read (CORS).
RATE_LIMIT_HEADERS = [
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]


def client_key() -> str:
    """Who a request counts against: its participantId when well-formed, else its IP."""
    try:
        body = json_body()
    except BadRequest:  # a body too deep to parse: the route itself answers 400
        body = None
    participant_id = body.get("participantId") if isinstance(body, dict) else None
    keyed = isinstance(participant_id, str) and 0 < len(participant_id) <= MAX_ID_CHARS
    if keyed and is_unicode(str(participant_id)):
        return f"participant:{participant_id}"
    return "ip:" + (request.remote_addr or "unknown")


def trust_proxies(app: Flask, hops: int) -> None:
    """Take the client address from the last `hops` X-Forwarded-For entries (0: none)."""
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]


def init_rate_limits(app: Flask, settings: Settings, connection: Redis) -> None:
    """Limit the chat route to CHAT_RATE_LIMIT per client, with JSON 429 answers."""
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
    limit = settings.CHAT_RATE_LIMIT
    if not limit:
        return
    # Registered before the limiter's own hook, so it runs after it (Flask runs them reversed).
    app.after_request(drop_retry_after_unless_refused)
    limiter = Limiter(
        key_func=client_key,
        app=app,
        # The limit of /chat, as a default that request_filter leaves to /chat alone.
        default_limits=[limit],
        default_limits_per_method=False,
        storage_uri=settings.REDIS_URL,
        # The app's own pool: the same timeouts and TLS settings as every other Redis call.
        # (limits takes any redis-py option; flask-limiter's annotation names str and int only)
        storage_options={"connection_pool": connection.connection_pool},  # type: ignore[dict-item]
        strategy="moving-window",
        headers_enabled=True,
        key_prefix=KEY_PREFIX,
    )
    limiter.request_filter(not_a_chat_turn)


def not_a_chat_turn() -> bool:
    """Every request but POST /chat is exempt: polls never touch the limiter's storage."""
    return request.endpoint != CHAT_ENDPOINT


def drop_retry_after_unless_refused(response: Response) -> Response:
    """Keep Retry-After on 429 only: flask-limiter adds it to every limited answer."""
    if response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


def handle_rate_limited(error: RateLimitExceeded):
    """429 naming the limit; flask-limiter adds Retry-After and X-RateLimit-* headers."""
    return error_response(
        429,
        f"Too many chat requests: at most {error.limit.limit} for each participant; "
        "see the Retry-After header for when to try again.",
    )
