"""A pre-processing model: standardise iris measurements before the classifier sees them.

Served by the `infergraph-custom` runtime. It learns the feature means and deviations from the
iris data bundled with scikit-learn at load time, and answers `{"instances": <scaled rows>}`,
which the graph's next step receives with `data: $response`.
"""

from __future__ import annotations

from typing import Any

from kserve import Model
from sklearn.datasets import load_iris


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
        rows = payload["instances"]
        scaled = [
            [(x - m) / s for x, m, s in zip(row, self.mean, self.std, strict=True)] for row in rows
        ]
        return {"instances": scaled}
