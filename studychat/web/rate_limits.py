"""Rate limits of POST /chat and POST /sessions, counted in the Redis all web processes share.

Two limits, each a flask-limiter default that request_filter leaves to those two routes:
- CHAT_RATE_LIMIT per client: a session (its token's hash, never an id the client
  chose) or, on the legacy API, the participantId. A legacy chat that names no
  participant is counted by the ceiling below alone, so a lab behind one address is
  not throttled as if it were one participant.
- CHAT_RATE_LIMIT_PER_IP, a ceiling per client address over /chat and /sessions
  together, whatever ids they carry: inventing a new participantId per request gains
  nothing beyond it. The address is the one the proxy in front reports (werkzeug's
  ProxyFix trusts PROXY_FIX_X_FOR hops of X-Forwarded-For, so a client cannot forge it).

When Redis is down the limiter's error is not swallowed: the routes answer 503 like
every other Redis outage. Failing open would admit nothing anyway, since a chat turn
cannot be queued without Redis, and failing closed means a half-broken Redis never
lifts the limit. Other routes never touch the limiter's storage, so /save and
/check_participation keep working through a Redis outage. Polls answered 200 never reach
the limiter (lean_polls.py answers them in front of Flask); other polls pay only its
hooks (about 0.1 ms of CPU; docs/security.md has the measurement).
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_limiter import Limit, Limiter, RateLimitExceeded
from redis import Redis
from werkzeug.middleware.proxy_fix import ProxyFix

from studychat.exceptions import BadRequest
from studychat.settings import Settings
from studychat.study.sessions import token_key
from studychat.web.errors import error_response
from studychat.web.schemas import MAX_ID_CHARS, is_unicode, json_body

# Prefix of the limiter's Redis keys (the `limits` library adds its own "LIMITS:").
KEY_PREFIX = "ratelimit"
CHAT_ENDPOINT = "chat.chat"
LIMITED_ENDPOINTS = frozenset({CHAT_ENDPOINT, "sessions.start_session"})
ADDRESS_SCOPE = "per-address"
PER_CLIENT = (
    "Too many chat requests: at most {limit} for each participant; "
    "see the Retry-After header for when to try again."
)
PER_ADDRESS = (
    "Too many requests from this address: at most {limit} chats and sessions together; "
    "see the Retry-After header for when to try again."
)
# Headers of a limited answer that a browser on another origin may read (CORS).
RATE_LIMIT_HEADERS = [
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]


def chat_client() -> str | None:
    """Who a chat counts against: its session, else its legacy participantId, else nobody."""
    try:
        body = json_body()
    except BadRequest:  # a body too deep to parse: the route itself answers 400
        return None
    if not isinstance(body, dict):
        return None
    token, participant_id = body.get("sessionToken"), body.get("participantId")
    if _well_formed(token):
        return token_key(str(token))
    if _well_formed(participant_id):
        return f"participant:{participant_id}"
    return None


def _well_formed(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and is_unicode(value)


def client_key() -> str:
    """The per-client limit's key (requests without a client are exempt from it)."""
    return chat_client() or ""


def address_key() -> str:
    """The client's address, as the trusted proxies report it."""
    return "ip:" + (request.remote_addr or "unknown")


def not_a_client_chat() -> bool:
    """The per-client limit counts chat turns that name a session or participant."""
    return request.endpoint != CHAT_ENDPOINT or chat_client() is None


def trust_proxies(app: Flask, hops: int) -> None:
    """Take the client address from the last `hops` X-Forwarded-For entries (0: none)."""
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)  # type: ignore[method-assign]


def configured_limits(settings: Settings) -> list[Limit]:
    """The limits the settings ask for (an empty setting asks for none)."""
    limits = []
    if settings.CHAT_RATE_LIMIT:
        limits.append(
            Limit(
                settings.CHAT_RATE_LIMIT,
                key_function=client_key,
                exempt_when=not_a_client_chat,
            )
        )
    if settings.CHAT_RATE_LIMIT_PER_IP:
        limits.append(
            Limit(
                settings.CHAT_RATE_LIMIT_PER_IP,
                key_function=address_key,
                shared=True,  # /chat and /sessions count together
                scope=ADDRESS_SCOPE,
            )
        )
    return limits


def init_rate_limits(app: Flask, settings: Settings, connection: Redis) -> None:
    """Apply the configured limits to /chat and /sessions, with JSON 429 answers."""
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
    limits = configured_limits(settings)
    if not limits:
        return
    # Registered before the limiter's own hook, so it runs after it (Flask runs them reversed).
    app.after_request(drop_retry_after_unless_refused)
    limiter = Limiter(
        key_func=address_key,
        app=app,
        default_limits=limits,  # type: ignore[arg-type]
        default_limits_per_method=False,
        storage_uri=settings.REDIS_URL,
        # The app's own pool: the same timeouts and TLS settings as every other Redis call.
        # (limits takes any redis-py option; flask-limiter's annotation names str and int only)
        storage_options={"connection_pool": connection.connection_pool},  # type: ignore[dict-item]
        strategy="moving-window",
        headers_enabled=True,
        key_prefix=KEY_PREFIX,
    )
    limiter.request_filter(not_limited)


def not_limited() -> bool:
    """Every request but POST /chat and POST /sessions: polls never touch the storage."""
    return request.endpoint not in LIMITED_ENDPOINTS


def drop_retry_after_unless_refused(response: Response) -> Response:
    """Keep Retry-After on 429 only: flask-limiter adds it to every limited answer."""
    if response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


def handle_rate_limited(error: RateLimitExceeded):
    """429 naming the limit; flask-limiter adds Retry-After and X-RateLimit-* headers."""
    sentence = PER_ADDRESS if error.limit.scope == ADDRESS_SCOPE else PER_CLIENT
    return error_response(429, sentence.format(limit=error.limit.limit))
