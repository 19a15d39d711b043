"""How a cascade that found no answer is told to the client: the status, OpenAI's error."""

from __future__ import annotations

from router.errors import APIError, invalid, overloaded, upstream_failed
from router.outcomes import CascadeFailure

_REQUEST_REFUSED = frozenset({400, 413, 422})


def upstream_ours(error: APIError) -> bool:
    """An upstream 401/403/429 passed through: the gateway's key or quota, not the client."""
    return error.code == "upstream_rejected" and error.status in (401, 403, 429)


def failure_error(failure: CascadeFailure, *, prompt_param: str, route: str) -> APIError:
    """The HTTP status of a cascade that found no answer."""
    status = failure.upstream_status
    retry_after = {"Retry-After": failure.retry_after} if failure.retry_after else {}
    if failure.reason == "saturated":
        error = overloaded("every tier of this route is saturated; retry shortly")
    elif failure.reason == "rejected":
        error = invalid(failure.message, prompt_param, "context_length_exceeded")
    elif failure.reason == "unsupported":
        error = _unsupported(failure, route)
    elif failure.reason == "refused":  # the provider's content policy, in its own words
        error = APIError(status or 400, failure.message, code=failure.code or "content_filter")
    elif status is not None and (
        (failure.passthrough and 400 <= status < 500) or status in _REQUEST_REFUSED
    ):  # the upstream refused the request itself: the client's to fix, not a gateway fault
        error = APIError(status, failure.message, code="upstream_rejected")
    elif status == 429:  # a route whose last tier is rate-limited: come back later
        error = overloaded(failure.message)
    elif failure.reason == "timeout":
        error = upstream_failed(failure.message, 504)
    else:
        error = upstream_failed(failure.message, 503 if failure.reason == "unavailable" else 502)
    error.headers.update(retry_after)
    return error


def _unsupported(failure: CascadeFailure, route: str) -> APIError:
    skipped = [a.error or "" for a in failure.attempts if a.outcome == "skipped"]
    considered = ", ".join(sorted({a.tier for a in failure.attempts}))
    reason = skipped[-1].removeprefix("skipped: ") if skipped else "a feature it uses"
    return invalid(
        f"no tier of route '{route}' serves {reason} (considered: {considered})",
        None,
        "unsupported_feature",
    )
