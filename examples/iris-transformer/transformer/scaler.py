"""A pre-processing model: standardise iris measurements before the classifier sees them.

Served by the `infergraph-custom` runtime. It learns the feature means and deviations from the
iris data bundled with scikit-learn at load time, and answers `{"instances": <scaled rows>}`,
which the graph's next step receives with `data: $response`.
"""

from __future__ import annotations

from typing import Any

from kserve import Model
from kserve.errors import InvalidInput
from sklearn.datasets import load_iris

FEATURES = 4  # sepal length and width, petal length and width, in cm


class IrisScaler(Model):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.mean: list[float] = []
        self.std: list[float] = []

    def load(self) -> bool:
        data = load_iris().data
        self.mean = data.mean(axis=0).tolist()
        self.std = data.std(axis=0).tolist()
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        # InvalidInput is KServe's 400 carrying the reason; any other exception would be a 500.
        rows = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(rows, list) or not rows:
            raise InvalidInput(
                f'{self.name}: expected {{"instances": [[{FEATURES} numbers], ...]}}, '
                f"got {_shown(payload)}"
            )
        for index, row in enumerate(rows):
            if (
                not isinstance(row, list)
                or len(row) != FEATURES
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row)
            ):
                raise InvalidInput(
                    f"{self.name}: instances[{index}] must be {FEATURES} numbers, got {_shown(row)}"
                )
        scaled = [
            [(x - m) / s for x, m, s in zip(row, self.mean, self.std, strict=True)] for row in rows
        ]
        return {"instances": scaled}


def _shown(value: Any, limit: int = 80) -> str:
    """A bad value in an error message, cut short: a client may send megabytes."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
