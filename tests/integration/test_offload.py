"""Large bodies checked first in a worker process (CASCADE_OFFLOAD_BYTES): the worker refuses
exactly what the serving loop would, and a server sends a body there only while another team
is asking."""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import time
import weakref
from pathlib import Path

import orjson
import requests

from router.api import validation
from router.api.surfaces import CHAT, RESPONSES, Surface, unpack
from router.errors import APIError
from router.policy.model import LimitsSpec
from router.server.offload import Offload
from tests.support.hostile import hostile_bodies
from tests.support.keys import team_keys
from tests.support.metrics import by_label
from tests.support.processes import ServerProcess, start_cascade, start_fake_upstream

KEYS = {"bulk": "sk-bulk-team", "other": "sk-other-team"}
NARROW = "sk-narrow-key"


def _inline(data: bytes, surface: Surface, limits: LimitsSpec) -> tuple[object, ...] | None:
    try:
        surface.read(validation.json_body(data, limits.max_json_depth), limits)
    except APIError as exc:
        return exc.status, exc.message, exc.type, exc.param, exc.code
    return None


async def test_the_worker_refuses_exactly_what_the_loop_would() -> None:
    limits = LimitsSpec()
    responses = orjson.dumps({"model": "m", "input": "hi", "max_output_tokens": -1})
    cases = [(body, CHAT) for body in hostile_bodies()] + [
        (b"not json", CHAT),
        (orjson.dumps({"model": "m", "messages": []}), CHAT),
        (responses, RESPONSES),
        (orjson.dumps({"model": "m", "input": "hi"}), RESPONSES),
    ]
    offload = Offload(1)
    try:
        assert (await offload.check(cases[0][0], CHAT.endpoint, limits)).outcome == "starting"
        await offload.started()
        for data, surface in cases:
            expected = _inline(data, surface, limits)
            try:
                checked = await offload.check(data, surface.endpoint, limits)
                found = None
            except APIError as exc:
                found = (exc.status, exc.message, exc.type, exc.param, exc.code)
            assert found == expected
            if found is None:  # accepted: a chat request comes back read, as the loop reads it
                assert checked.outcome == "accepted"
                if surface is CHAT:
                    assert checked.packed is not None
                    raw = orjson.loads(data)
                    assert unpack(checked.packed, raw) == surface.read(raw, limits)
                else:
                    assert checked.packed is None  # a Responses body is read again
        assert sum(_inline(data, surface, limits) is None for data, surface in cases) >= 2
        # a refusal is freed as soon as it is handled: no reference cycle through the frames
        # it was raised in (garbage the collector would find, with the event loop held)
        gc.disable()
        try:
            refusals = []
            refused = [case for case in cases if _inline(*case, limits) is not None]
            for data, surface in refused:
                try:
                    await offload.check(data, surface.endpoint, limits)
                except APIError as exc:
                    refusals.append(weakref.ref(exc))
            assert len(refusals) == len(refused) >= 4
            assert [refusal() for refusal in refusals] == [None] * len(refused)
        finally:
            gc.enable()
    finally:
        offload.close()


async def _too_long_inline(data: bytes, limits: LimitsSpec) -> tuple[object, ...] | None:
    """What the loop refuses a readable chat body with at its prompt-size check when no tier
    counts tokens."""

    async def no_count(_prompt: object) -> None:
        return None

    client = CHAT.read(orjson.loads(data), limits).client
    try:
        await validation.prompt_tokens(
            client.prompt, client.billable, limits.max_prompt_tokens, no_count, exact=False
        )
    except APIError as exc:
        return exc.status, exc.message, exc.type, exc.param, exc.code
    return None


async def test_the_worker_refuses_a_prompt_over_the_limit_by_its_estimate() -> None:
    """When no tier counts tokens, the estimate decides: the worker gives the loop's
    refusal, without the messages (the loop never rebuilds them)."""
    limits = LimitsSpec()
    many = hostile_bodies()[2]  # 1 MB, 2,048 messages: ~245,760 tokens by the estimate
    fits = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 9000}]})
    offload = Offload(1)
    try:
        await offload.started()
        for data in (many, fits):
            expected = await _too_long_inline(data, limits)
            packed = (await offload.check(data, CHAT.endpoint, limits, estimated=True)).packed
            assert packed is not None
            too_long = packed.too_long
            found = None if too_long is None else (too_long.status, too_long.message)
            assert found == (None if expected is None else expected[:2])
            if too_long is not None:
                assert (too_long.type, too_long.param, too_long.code) == expected[2:]  # type: ignore[index]
                assert packed.turns == () and packed.client.model == "remote"
            else:  # within it: handed back whole
                raw = orjson.loads(data)
                assert unpack(packed, raw) == CHAT.read(raw, limits)
        # a tier that counts tokens decides on the loop: the worker does not refuse
        packed = (await offload.check(many, CHAT.endpoint, limits)).packed
        assert packed is not None and packed.too_long is None and len(packed.turns) == 2048
    finally:
        offload.close()


def _policy(tmp_path: Path, upstream: ServerProcess, more: str) -> Path:
    """One route to the fake upstream, and `more`."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: fake}}
routes:
  auto: {{cascade: [{{tier: large}}]}}
{more}
""")
    return policy


def test_a_server_offloads_large_bodies_only_while_another_team_asks(tmp_path: Path) -> None:
    upstream = start_fake_upstream(tmp_path / "upstream.log")
    narrow = hashlib.sha256(NARROW.encode()).hexdigest()  # a key that may ask for auto only
    teams = f"{team_keys(KEYS)}\n  narrow: {{keys: [{{sha256: {narrow}, models: [auto]}}]}}"
    policy = _policy(tmp_path, upstream, f"teams:\n{teams}\nauth: {{metrics: open}}")
    server = start_cascade(
        policy, "none", tmp_path / "cascade.log", env={"CASCADE_OFFLOAD_BYTES": "4096"}
    )
    tools = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ask = [{"role": "user", "content": "hi"}]
    refused = orjson.dumps({"model": "auto", "messages": ask, "tools": [tools] * 200})
    accepted = orjson.dumps(
        {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "x" * 8000}]}
    )
    small = orjson.dumps({"model": "auto", "max_tokens": 4, "messages": ask})

    def post(team: str, body: bytes) -> requests.Response:
        key = NARROW if team == "narrow" else KEYS[team]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        return requests.post(
            f"{server.url}/v1/chat/completions", data=body, headers=headers, timeout=30
        )

    def offloaded() -> dict[str, float]:
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        return by_label(text, "cascade_offloaded_bodies_total", "outcome")

    try:
        worker = _children(server.process.pid)  # it tells teams apart: started with it
        assert len(worker) == 1
        alone = post("bulk", refused)  # no other team has asked: parsed on the loop
        assert alone.status_code == 400
        assert offloaded() == {}
        assert post("other", small).status_code == 200  # now another team is asking
        deadline = time.monotonic() + 30
        while "refused" not in offloaded():  # until the worker is up (~1 s)
            assert time.monotonic() < deadline
            assert post("other", small).status_code == 200  # still asking
            shared = post("bulk", refused)
            assert shared.status_code == 400 and shared.json() == alone.json()
        started = offloaded()  # bodies that came while the worker started: on the loop
        # it runs only when the serving loop does not want the CPU they share
        assert os.sched_getscheduler(worker[0]) == os.SCHED_IDLE
        assert started["refused"] == 1.0 and set(started) <= {"refused", "starting"}
        answer = post("bulk", accepted)  # read there, handed back, answered here
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        sent = requests.get(f"{upstream.url}/_fault", timeout=10).json()["bodies"][-1]
        assert sent["messages"] == orjson.loads(accepted)["messages"]  # passed on whole
        assert offloaded() == {**started, "accepted": 1.0}
        assert post("bulk", small).status_code == 200  # under the size: never offloaded
        # under the size but dense (CASCADE_OFFLOAD_OBJECTS, 1,000): 1,200 arrays in 3.7 KB
        schema = {"name": "s", "schema": {"enum": [[]] * 1200}}
        format_ = {"type": "json_schema", "json_schema": schema}
        dense = orjson.dumps({"model": "auto", "messages": ask, "response_format": format_})
        assert len(dense) < 4096
        assert post("bulk", dense).status_code == 400  # over the enum limit, there
        started["refused"] += 1
        assert offloaded() == {**started, "accepted": 1.0}
        time.sleep(1.2)  # the other team's ask is no longer recent: alone again
        assert post("bulk", refused).status_code == 400
        # over max_prompt_tokens by its estimate (no tier counts tokens): on the loop alone
        long_ = {"model": "auto", "messages": [{"role": "user", "content": "x" * 40_000}]}
        on_loop = post("bulk", orjson.dumps(long_))
        assert on_loop.status_code == 400
        assert on_loop.json()["error"]["code"] == "context_length_exceeded"
        assert offloaded() == {**started, "accepted": 1.0}
        # while another team asks, refused by the worker with the same error; and a key that
        # may not ask for the model gets its 403 first, as on the loop
        elsewhere = orjson.dumps(long_ | {"model": "large"})
        assert post("other", small).status_code == 200
        assert post("bulk", orjson.dumps(long_)).json() == on_loop.json()
        forbidden = post("narrow", elsewhere)
        assert forbidden.status_code == 403 and "large" in forbidden.json()["error"]["message"]
        assert offloaded() == {**started, "accepted": 1.0, "refused": started["refused"] + 2}
    finally:
        server.stop()
        upstream.stop()


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def test_a_server_whose_callers_are_one_team_starts_no_worker(tmp_path: Path) -> None:
    upstream = start_fake_upstream(tmp_path / "upstream.log")
    policy = _policy(tmp_path, upstream, "limits: {max_prompt_tokens: 100000}")
    server = start_cascade(policy, "none", tmp_path / "cascade.log")  # offload by default
    body = {
        "model": "auto",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "x" * 70_000}],
    }
    try:
        for _ in range(3):
            answer = requests.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
            assert answer.status_code == 200
        assert _children(server.process.pid) == []  # every caller is `default`: never needed
    finally:
        server.stop()
        upstream.stop()


async def test_a_worker_that_dies_leaves_the_body_to_the_loop_and_is_replaced() -> None:
    limits = LimitsSpec()
    now = [0.0]
    lost_with: list[int | None] = []
    offload = Offload(1, restart_s=10, on_lost=lost_with.append, clock=lambda: now[0])
    try:
        await offload.started()
        body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert (await offload.check(body, CHAT.endpoint, limits)).outcome == "accepted"
        first = offload.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # killed, e.g. by the OOM killer
        lost = await offload.check(body, CHAT.endpoint, limits)  # could not tell
        assert lost.outcome == "worker_lost" and lost.packed is None
        # not restarted by every body: at most once every restart_s
        assert (await offload.check(body, CHAT.endpoint, limits)).outcome == "worker_lost"
        assert offload.pid == first
        now[0] += 10
        assert (await offload.check(body, CHAT.endpoint, limits)).outcome == "worker_lost"
        assert offload.pid != first  # replaced
        await offload.started()
        refused = hostile_bodies()[3]  # the new worker answers again
        expected = _inline(refused, CHAT, limits)
        try:
            await offload.check(refused, CHAT.endpoint, limits)
            found = None
        except APIError as exc:
            found = (exc.status, exc.message, exc.type, exc.param, exc.code)
        assert found == expected and found is not None
        assert lost_with == [-signal.SIGKILL]  # told, with how it ended
    finally:
        offload.close()
