"""Drive the compose stack as its users would, through the ports it publishes on 127.0.0.1
(nginx, Prometheus) and `docker compose exec`; exit non-zero, saying what failed, when any
check fails. Run by deploy/test/run.sh after `up --wait`.

Checks: keys made with `cascade keys create` in a replica; chat whole and streamed with the
openai SDK; a response cached by one replica served by the other; a team budget shared by both
replicas that refuses at its cap whichever replica answers; both replicas' targets up in
Prometheus and its request counters equal to what was sent; every Grafana panel's query
returning data; the ledger (a Redis Stream) holding one record per answered request; a replica
killed under a steady stream of requests costing no request beyond the one in flight on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai
import requests
import yaml

HERE = Path(__file__).parent
DASHBOARD = HERE.parent / "grafana" / "dashboards" / "cascade.json"


class Smoke:
    def __init__(self, url: str, prometheus: str, compose: list[str]) -> None:
        self.url, self.prometheus, self.compose = url, prometheus, compose
        self.answered: list[str] = []  # request ids of answers (each must have a record)
        self.sent = 0  # completion requests sent to cascade
        self.failures: list[str] = []
        self.probes_refused = 0  # GET /v1/models refused while a key reached the replicas

    # -- helpers -------------------------------------------------------------------------

    def check(self, ok: bool, what: str) -> None:
        print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
        if not ok:
            self.failures.append(what)

    def exec(self, *command: str, replica: int = 1) -> str:
        found = subprocess.run(  # noqa: S603 - the compose command run.sh gave
            [*self.compose, "exec", "-T", "--index", str(replica), "cascade", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return found.stdout

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def chat(self, key: str, model: str, text: str, **extra: Any) -> tuple[int, dict[str, str]]:
        """(status, headers) of one whole chat completion."""
        self.sent += 1
        try:
            raw = self.client(key).chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": text}], **extra
            )
        except openai.APIStatusError as exc:
            return exc.status_code, dict(exc.response.headers)
        raw.parse()
        self.answered.append(raw.headers["x-request-id"])
        return 200, dict(raw.headers)

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = requests.get(
            f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=10
        ).json()
        return list(answer["data"]["result"]) if answer.get("status") == "success" else []

    def per_replica(self, promql: str) -> dict[str, float]:
        return {r["metric"].get("instance", "?"): float(r["value"][1]) for r in self.query(promql)}

    # -- the checks ----------------------------------------------------------------------

    def keys(self) -> tuple[str, str]:
        made = [
            self.exec("cascade", "keys", "create", "--team", team).strip().splitlines()[-1]
            for team in ("search", "ops")
        ]
        self.check(all(k.startswith("sk-") for k in made), "keys made with `cascade keys create`")
        deadline = time.monotonic() + 15  # every replica re-reads the keys file
        known = 0
        while time.monotonic() < deadline and known < 4:  # both keys, twice (both replicas)
            known = known + 1 if self.ask_key(made[known % 2]) else 0
            time.sleep(0.2)
        self.check(known >= 4, "the keys work on both replicas (the shared keys volume)")
        unknown = self.chat("sk-not-a-key", "auto", "Hi")[0]
        self.check(unknown == 401, f"an unknown key is refused (401): {unknown}")
        return made[0], made[1]

    def ask_key(self, key: str) -> bool:
        """Whether the replica nginx picks knows the key (GET /v1/models: no record)."""
        found = requests.get(
            f"{self.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        self.probes_refused += found.status_code == 401  # counted as auth refusals
        return found.status_code == 200

    def dashboard_traffic(self, key: str) -> None:
        """What the dashboard's panels show: local answers kept and rejected, a tier skipped
        for a feature it lacks (tools on the local tier)."""
        for model, text in [("escalating", "What is 17 * 23?"), ("local", "Say hello.")] * 2:
            status, _ = self.chat(key, model, text, max_tokens=16)
            self.check(status == 200, f"chat on route {model}: {status}")
        tool = {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object"}},
        }
        status, headers = self.chat(
            key, "local", "Look up the weather.", tools=[tool], max_tokens=16
        )
        self.check(
            status == 200,
            f"tools on route local: {status} ({headers.get('x-cascade-reason')})",
        )

    def chat_paths(self, key: str) -> None:
        status, headers = self.chat(key, "auto", "What is the capital of France?", max_tokens=24)
        self.check(
            status == 200 and "x-cascade-reason" in headers,
            f"chat, whole: {status}, {headers.get('x-cascade-tier')} "
            f"({headers.get('x-cascade-reason')})",
        )
        self.sent += 1
        with self.client(key).chat.completions.with_streaming_response.create(
            model="auto",
            messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=24,
            stream=True,
        ) as response:
            chunks = list(response.parse())
            self.answered.append(response.headers["x-request-id"])
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.check(bool(text), f"chat, streamed: {len(chunks)} chunks, {len(text)} characters")

    def shared_cache(self, key: str) -> None:
        seen = [
            self.chat(key, "large", "cache me", temperature=0, max_tokens=8)[1].get(
                "x-cascade-cache", "-"
            )
            for _ in range(6)
        ]
        time.sleep(5)  # two scrapes
        hits = self.per_replica('sum by (instance) (cascade_cache_lookups_total{result="hit"})')
        self.check(
            seen[1:] == ["hit"] * 5 and len(hits) == 2 and all(v > 0 for v in hits.values()),
            f"one replica's cached answer served by both: {seen}, hits per replica {hits}",
        )

    def shared_budget(self, key: str, budget_usd: float) -> None:
        statuses = [self.chat(key, "large", f"budget {n}", max_tokens=8)[0] for n in range(14)]
        admitted = statuses.count(200)
        first_refusal = statuses.index(429) if 429 in statuses else len(statuses)
        time.sleep(5)
        spent = self.per_replica('sum by (instance) (cascade_team_cost_usd_total{team="search"})')
        self.check(
            admitted > 0
            and statuses[first_refusal:] == [429] * (len(statuses) - first_refusal)
            and first_refusal < len(statuses) - 2,
            f"the team budget refuses at its cap, and after: {statuses}",
        )
        self.check(
            len(spent) == 2
            and all(v > 0 for v in spent.values())
            and sum(spent.values()) <= budget_usd + 1e-9,
            f"both replicas spent from one ${budget_usd} budget: {spent}",
        )

    def prometheus_agrees(self) -> None:
        up = self.per_replica('up{job="cascade"}')
        self.check(len(up) == 2 and set(up.values()) == {1.0}, f"both replicas' targets up: {up}")
        counted = sum(self.per_replica("sum by (instance) (cascade_requests_total)").values())
        refused = sum(self.per_replica("sum by (instance) (cascade_auth_refusals_total)").values())
        self.check(
            counted + refused == self.sent + self.probes_refused,
            f"Prometheus counted what was sent: {counted:g} requests + {refused:g} auth "
            f"refusals, {self.sent} completions + {self.probes_refused} refused key probes sent",
        )

    def dashboard(self) -> None:
        panels = json.loads(DASHBOARD.read_text())["panels"]
        empty = []
        total = 0
        for panel in panels:
            for target in panel.get("targets", ()):
                total += 1
                promql = target["expr"].replace("$__rate_interval", "1m")
                if not self.query(promql):
                    empty.append(f"{panel['title']}: {promql}")
        self.check(not empty, f"every Grafana panel's query returns data ({total} queries)")
        for line in empty:
            print(f"          no data: {line}")

    def ledger(self) -> None:
        script = (
            "import json, redis; r = redis.Redis.from_url('redis://redis:6379/0'); "
            "print(json.dumps([f[b'request_id'].decode() for _, f in "
            "r.xrange('cascade:ledger') if b'request_id' in f]))"
        )
        time.sleep(2)  # the ledger writes in batches
        stored = json.loads(self.exec("python", "-c", script))
        missing = set(self.answered) - set(stored)
        twice = len(stored) - len(set(stored))
        self.check(
            not missing and not twice,
            f"the ledger holds one record per answered request: {len(self.answered)} answered, "
            f"{len(stored)} records, {len(missing)} missing, {twice} twice",
        )

    def replica_killed(self, key: str, container: str) -> None:
        results: list[int] = []
        stop = threading.Event()

        def steady() -> None:
            while not stop.is_set():
                results.append(self.chat(key, "large", f"steady {len(results)}", max_tokens=8)[0])

        worker = threading.Thread(target=steady)
        worker.start()
        time.sleep(3)
        before = len(results)
        subprocess.run(["docker", "kill", container], check=True, capture_output=True)  # noqa: S603, S607
        time.sleep(10)
        stop.set()
        worker.join()
        failed = [s for s in results if s != 200]
        self.check(
            len(failed) <= 1 and len(results) - before > 10,
            f"a replica killed under a steady stream: {len(results)} requests, "
            f"{len(failed)} failed (at most the one in flight on it): {failed}",
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--compose", required=True, help="the compose command, as one string")
    args = parser.parse_args()
    compose = shlex.split(args.compose)
    smoke = Smoke(args.url, args.prometheus, compose)
    policy_dir = Path(os.environ["DEPLOY_TEST_POLICIES"])
    budget = yaml.safe_load((policy_dir / "deploy-test.yaml").read_text())["teams"]["search"]
    search, ops = smoke.keys()
    smoke.chat_paths(ops)
    smoke.shared_cache(ops)
    smoke.shared_budget(search, budget["limits"]["usd_per_day"])
    smoke.dashboard_traffic(ops)
    time.sleep(5)  # two scrapes
    smoke.prometheus_agrees()
    smoke.dashboard()
    smoke.ledger()
    project = os.environ.get("COMPOSE_PROJECT_NAME", "cascade")
    smoke.replica_killed(ops, f"{project}-cascade-2")
    print(f"\n{len(smoke.failures)} checks failed" if smoke.failures else "\nevery check passed")
    sys.exit(1 if smoke.failures else 0)


if __name__ == "__main__":
    main()
