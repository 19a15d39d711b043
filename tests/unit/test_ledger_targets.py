from __future__ import annotations

from pathlib import Path

import pytest

from router.ledger import LedgerError, parse_ledger_url
from router.ledger.times import parse_time


def test_sqlite_and_jsonl_paths_follow_sqlalchemy() -> None:
    assert parse_ledger_url("sqlite:///var/ledger.db").path == Path("var/ledger.db")
    assert parse_ledger_url("sqlite:////srv/ledger.db").path == Path("/srv/ledger.db")
    target = parse_ledger_url("jsonl:///var/d.jsonl")
    assert (target.scheme, target.path) == ("jsonl", Path("var/d.jsonl"))


def test_redis_urls_and_stream_name() -> None:
    target = parse_ledger_url("redis://127.0.0.1:6380/2?stream=team:ledger")
    assert (target.scheme, target.url, target.stream) == (
        "redis",
        "redis://127.0.0.1:6380/2",
        "team:ledger",
    )
    assert parse_ledger_url("redis", "redis://r:1/0").url == "redis://r:1/0"
    with pytest.raises(LedgerError, match="CASCADE_REDIS_URL"):
        parse_ledger_url("redis")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite://host/x.db", "postgres://x/y", "ledger.db"])
def test_bad_urls_name_the_accepted_forms(url: str) -> None:
    with pytest.raises(LedgerError, match=r"sqlite:///PATH"):
        parse_ledger_url(url)


def test_a_password_in_a_url_is_never_echoed() -> None:
    with pytest.raises(LedgerError) as caught:
        parse_ledger_url("mysql://admin:hunter2@db/x")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in str(parse_ledger_url("redis://:hunter2@r:6379/0"))


def test_times_become_record_timestamps() -> None:
    assert parse_time("2026-11-23") == "2026-11-23T00:00:00.000Z"
    assert parse_time("2026-11-23T10:00:00Z") == "2026-11-23T10:00:00.000Z"
    assert parse_time("2026-11-23T11:30+01:00") == "2026-11-23T10:30:00.000Z"
    now = 1_800_000_000.0
    assert parse_time("24h", now) == parse_time("2027-01-14T08:00:00Z")
    assert parse_time("90m", now) == "2027-01-15T06:30:00.000Z"
    with pytest.raises(ValueError, match="24h"):
        parse_time("yesterday")
