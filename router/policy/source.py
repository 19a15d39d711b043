"""YAML read safely and with bounds, keeping where every value sits in the file."""

from __future__ import annotations

from typing import Any

import yaml

MAX_ALIASES = 64  # aliases beyond this are an expansion attack, not a policy
MAX_DEPTH = 32

DocPath = tuple[str | int, ...]


class SourceError(Exception):
    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs and absurd nesting while composing."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise SourceError(
                    f"more than {MAX_ALIASES} YAML aliases (anchors '*')",
                    mark.line + 1,
                    mark.column + 1,
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise SourceError(
                    f"nested deeper than {MAX_DEPTH} levels", mark.line + 1, mark.column + 1
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _marks(node: yaml.Node, path: DocPath, out: dict[DocPath, tuple[int, int]]) -> None:
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if str(key.value) in seen:  # YAML would silently keep the last one
                raise SourceError(
                    f"duplicate key '{key.value}'",
                    key.start_mark.line + 1,
                    key.start_mark.column + 1,
                )
            seen.add(str(key.value))
            _marks(value, (*path, str(key.value)), out)
            out[(*path, str(key.value), "<key>")] = (
                key.start_mark.line + 1,
                key.start_mark.column + 1,
            )
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _marks(item, (*path, index), out)


def read_yaml(text: bytes) -> tuple[Any, dict[DocPath, tuple[int, int]]]:
    """The document and a map from each value's path to its (line, column), 1-based."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        marks: dict[DocPath, tuple[int, int]] = {}
        _marks(node, (), marks)
        return loader.construct_document(node), marks
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise SourceError(
            f"not valid YAML: {exc.problem}",
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def locate(marks: dict[DocPath, tuple[int, int]], path: DocPath) -> tuple[int, int] | None:
    """Where `path` is, or its nearest ancestor that exists (a missing key's parent)."""
    for end in range(len(path), -1, -1):
        if (found := marks.get(path[:end])) is not None:
            return found
    return None
