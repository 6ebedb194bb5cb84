"""Two small real generative models, served over OpenAI's protocol.

`MarkovWriter` is a word-level Markov chain of order 2: `examples/train.py` counts, in a text
that ships in an installed package, which word follows each pair of words, and writes the table
to `models/<name>/model.joblib`. Generating walks the table from the prompt's last two words (or
the text's first pair), drawing each next word by its counts with a seeded random source, so a
prompt always gets the same continuation. It is a language model in the oldest sense, not an
LLM: it produces plausible-looking text in its corpus's style, token by token, and it streams.

The bundle's `text-generator-openai` runtime (graph_controller/model_servers/openai_server.py)
serves it: it builds `MarkovWriter(name)`, sets `model_dir`, calls `load()`, and answers OpenAI's
chat and completions requests from `generate(prompt, max_tokens)`, one streamed chunk per word.
A chat's prompt is its messages' contents joined by newlines, so the last message's last two
words pick where the chain starts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import joblib

MAX_WORDS = 200  # a generation's length cap: a request's max_tokens may ask for fewer
SEED = 0  # every prompt gets the same continuation, so the example's answer can be checked


class MarkovWriter:
    default_max_tokens = 30  # when a request gives no max_tokens

    def __init__(self, name: str) -> None:
        self.name = name
        self.model_dir = ""
        self.table: dict[tuple[str, str], dict[str, int]] = {}
        self.first_pair: tuple[str, str] = ("", "")

    def load(self) -> None:
        # model_dir is this code's folder (storageUri); the trained table sits beside it.
        trained = joblib.load(Path(self.model_dir).parent / "models" / self.name / "model.joblib")
        self.table, self.first_pair = trained["table"], tuple(trained["start"])

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

    def generate(self, prompt: str, max_tokens: int) -> Iterator[str]:
        """The continuation word by word (a token is a word here), spaced as text."""
        if max_tokens > MAX_WORDS:
            raise ValueError(f"max_tokens {max_tokens} is more than this model's {MAX_WORDS}")
        for index, word in enumerate(self.words(prompt, max_tokens)):
            yield word if index == 0 else " " + word
