"""Stop strings over streamed text: emit what cannot be the start of a stop string."""

from __future__ import annotations


class StopMatcher:
    """Feed text pieces; get back the text safe to emit and whether a stop string was hit."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if not self._stops:
            return piece
        text = self._held + piece
        cut = min((i for s in self._stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """Text held back at the end of generation (it was not a stop after all)."""
        held, self._held = self._held, ""
        return held
