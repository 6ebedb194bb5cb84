"""`python -m graph_controller.model_servers.sklearn`: serve a scikit-learn model with KServe.

Loads `model.joblib` (or .pkl/.pickle) from `--model_dir`, as KServe's sklearnserver does, and
serves it with `kserve.ModelServer` on `--http_port`, v1 (`/v1/models/<name>:predict`) and v2
(`/v2/models/<name>/infer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
from kserve import InferRequest, InferResponse, Model
from kserve.errors import InferenceError
from kserve.utils.utils import get_predict_input, get_predict_response

from graph_controller.model_servers.serving import parser, serve

MODEL_FILES = ("model.joblib", "model.pkl", "model.pickle")


class SKLearnModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self._model: Any = None

    def load(self) -> bool:
        paths = [self.model_dir / f for f in MODEL_FILES if (self.model_dir / f).exists()]
        if len(paths) != 1:
            raise FileNotFoundError(
                f"expected exactly one of {', '.join(MODEL_FILES)} in {self.model_dir}, "
                f"found {len(paths)}"
            )
        self._model = joblib.load(paths[0])
        self.ready = True
        return True

    def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        try:
            instances = get_predict_input(payload)
            result = self._model.predict(instances)
        except Exception as error:  # sklearn raises many types for bad input: a 4xx/5xx for all
            raise InferenceError(f"{self.name}: {error}") from error
        return get_predict_response(payload, result, self.name)


def main() -> None:
    args, _ = parser("Serve a scikit-learn model with KServe").parse_known_args()
    model = SKLearnModel(args.model_name, args.model_dir)
    model.load()
    serve(model, args)


if __name__ == "__main__":
    main()
