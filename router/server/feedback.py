"""POST /v1/feedback: an application says what it knows of an answer (router/feedback.py).

Accepted only from a key of the team whose request it was (403 otherwise; 404 for an id no
record has), and kept in the ledger as its own record; the request's record is never changed.
Whose answer it was comes, in order, from this process's recent requests (the last
`CASCADE_FEEDBACK_RECENT`, 100,000 by default), then the ledger: a SQLite ledger by its index
on request_id, a Redis ledger by the owners its sink keeps per UTC day for two days (so any
replica can check an answer another served). A JSONL ledger is never scanned for it: there,
feedback is accepted for the requests this process served recently.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from router import feedback
from router.errors import APIError
from router.ledger.owners import Owner
from router.server import intake
from router.server.state import CALLER, FEEDBACK, INTAKE, LEDGER, REDACTOR, SHADOW, Runtime


def _to_autotune(
    request: web.Request, runtime: Runtime, owner: Owner, verdict: str
) -> dict[str, bool]:
    """Good or bad on a local answer its step judged, handed to autotune where the route's
    `shadow.autotune.feedback` asks for it; says so in the answer (`autotune: true`)."""
    if not owner.local or owner.value is None or owner.route is None or owner.final_tier is None:
        return {}
    if verdict not in ("good", "bad"):
        return {}
    taken = request.app[SHADOW].feedback(
        runtime.loaded.policy,
        version=runtime.loaded.version,
        route=owner.route,
        tier=owner.final_tier,
        value=owner.value,
        good=verdict == "good",
    )
    return {"autotune": True} if taken else {}


async def post_feedback(request: web.Request) -> web.Response:
    """One item (`{request_id, score | label, ...}`: 200 with the stored feedback, 404 / 403
    for an id that is unknown / another team's) or a batch (`{"feedback": [...]}`: 200 with
    each item's status; the ones found and the caller's are stored)."""
    with intake.runtime_of(request).in_use() as runtime:
        limits = runtime.loaded.policy.limits
        caller = request[CALLER]
        async with request.app[INTAKE].turn(caller.team) as turn:
            raw = await intake.read_json(
                request, limits.max_body_bytes, limits.max_json_depth, turn
            )
            with turn.charged():
                items, batch = feedback.parse(raw, limits.max_feedback_items)
        owners = request.app[FEEDBACK]
        redactor = request.app[REDACTOR]
        results: list[dict[str, Any]] = []
        for item in items:
            owner = await owners.find(item.request_id)
            if owner is None:
                status = "not_found"
            elif owner.team != caller.team:
                status = "forbidden"
            else:
                record = feedback.FeedbackRecord(
                    feedback_of=item.request_id,
                    team=caller.team,
                    key_id=caller.key_id,
                    verdict=item.verdict,
                    score=item.score,
                    label=item.label,
                    comment=None if item.comment is None else redactor(item.comment),
                    source=item.source,
                    route=owner.route,
                    final_tier=owner.final_tier,
                    local=owner.local,
                )
                request.app[LEDGER].submit(record)
                tuned = _to_autotune(request, runtime, owner, item.verdict)
                results.append({**feedback.as_dict(record), "status": "stored", **tuned})
                continue
            results.append({"request_id": item.request_id, "status": status})
    if batch:
        stored = sum(r["status"] == "stored" for r in results)
        body = {"object": "list", "stored": stored, "data": results}
        return web.json_response(body, dumps=lambda o: orjson.dumps(o).decode())
    result = results[0]
    if result["status"] == "not_found":
        raise APIError(404, "no answer with this request_id", param="request_id", code="not_found")
    if result["status"] == "forbidden":
        raise APIError(
            403,
            "this request_id is another team's answer: feedback comes from its own team's keys",
            param="request_id",
            code="not_your_request",
        )
    result.pop("status")
    return web.json_response(result, dumps=lambda o: orjson.dumps(o).decode())
