"""The guard step in front of the generators: a kserve.Model served by the `custom` runtime.

It reads the OpenAI request the client sent (a chat's `messages`, or a completion's `prompt`)
and answers a verdict, `block` when the text holds a word from its list, `allow` otherwise; the
graph's condition on it decides whether the request goes on to a generator.
"""

from __future__ import annotations

from typing import Any

from kserve import Model
from kserve.errors import InvalidInput

BLOCKED = ("password", "secret")  # what the guard refuses to pass on


def _text(payload: Any, name: str) -> str:
    """The request's text: every chat message's content, or the completion's prompt."""
    if isinstance(payload, dict):
        messages = payload.get("messages")
        if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
            parts = [m.get("content") for m in messages]
            if all(isinstance(p, str) for p in parts):
                return "\n".join(parts)  # type: ignore[arg-type]
        if isinstance(payload.get("prompt"), str):
            return str(payload["prompt"])
    raise InvalidInput(
        f'{name}: expected an OpenAI request, {{"messages": [{{"role": ..., "content": '
        f'"<text>"}}]}} or {{"prompt": "<text>"}}, got {str(payload)[:80]}'
    )


class PromptGuard(Model):  # type: ignore[misc]
    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        lowered = _text(payload, self.name).lower()
        hit = next((word for word in BLOCKED if word in lowered), None)
        if hit is None:
            return {"verdict": "allow"}
        return {"verdict": "block", "reason": f"mentions '{hit}'"}
