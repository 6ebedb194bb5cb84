"""Two small real generative models, and a guard before them, served by KServe's ModelServer.

`MarkovWriter` is a word-level Markov chain of order 2: `examples/train.py` counts, in a text
that ships in an installed package, which word follows each pair of words, and writes the table
to `models/<name>/model.joblib`. Generating walks the table from the prompt's last two words (or
the text's first pair), drawing each next word by its counts with a seeded random source, so a
prompt always gets the same continuation. It is a language model in the oldest sense, not an
LLM: it produces plausible-looking text in its corpus's style, token by token, and it streams.

`predict` returns an async iterator: KServe's v1 endpoint then answers with a chunked
StreamingResponse, one chunk per word, which the router passes through to the client.

`PromptGuard` is the guard step: it answers the request with a `verdict` added, `block` when the
prompt holds a word from its list, `allow` otherwise, so the graph's condition can stop there.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import joblib
from kserve import Model
from kserve.errors import InvalidInput

MAX_WORDS = 200  # a generation's length cap: the request's max_words may ask for fewer
DEFAULT_WORDS = 30
SEED = 0  # every prompt gets the same continuation, so the example's answer can be checked
BLOCKED = ("password", "secret")  # what the guard refuses to pass on


def _prompt(payload: Any, name: str) -> tuple[str, int]:
    prompt = payload.get("prompt") if isinstance(payload, dict) else None
    if not isinstance(prompt, str):
        raise InvalidInput(f'{name}: expected {{"prompt": "<text>"}}, got {str(payload)[:80]}')
    words = payload.get("max_words", DEFAULT_WORDS)
    if not isinstance(words, int) or not 1 <= words <= MAX_WORDS:
        raise InvalidInput(f"{name}: max_words must be an integer from 1 to {MAX_WORDS}")
    return prompt, words


class MarkovWriter(Model):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.table: dict[tuple[str, str], dict[str, int]] = {}
        self.first_pair: tuple[str, str] = ("", "")

    def load(self) -> bool:
        # model_dir is this code's folder (storageUri); the trained table sits beside it.
        trained = joblib.load(Path(self.model_dir).parent / "models" / self.name / "model.joblib")
        self.table, self.first_pair = trained["table"], tuple(trained["start"])
        self.ready = True
        return True

    def words(self, prompt: str, count: int) -> list[str]:
        """The continuation of `prompt`: `count` words, or fewer where the table ends."""
        rng = random.Random(f"{SEED}:{prompt}")
        given = prompt.split()
        state = (given[-2], given[-1]) if len(given) >= 2 else self.first_pair
        if state not in self.table:
            state = self.first_pair
        out: list[str] = []
        for _ in range(count):
            following = self.table.get(state)
            if not following:
                break
            choices, weights = zip(*sorted(following.items()), strict=True)
            word = rng.choices(choices, weights)[0]
            out.append(word)
            state = (state[1], word)
        return out

    async def predict(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> AsyncIterator[str]:
        prompt, count = _prompt(payload, self.name)
        return self._stream(self.words(prompt, count))

    async def _stream(self, words: list[str]) -> AsyncIterator[str]:
        for index, word in enumerate(words):
            yield word if index == 0 else " " + word
            await asyncio.sleep(0)  # each word its own chunk, as a model emits tokens


class PromptGuard(Model):  # type: ignore[misc]
    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        prompt, _ = _prompt(payload, self.name)
        lowered = prompt.lower()
        hit = next((word for word in BLOCKED if word in lowered), None)
        if hit is None:
            return {**payload, "verdict": "allow"}
        return {**payload, "verdict": "block", "reason": f"mentions '{hit}'"}
