"""A KServe transformer: standardise iris measurements, then let KServe call the predictor.

Run as KServe runs a transformer container: `--model_name`, `--predictor_host` (the
predictor's host:port) and `--http_port` come from the controller (or `infergraph up`).
`preprocess` turns the request into what the predictor expects; the inherited `predict`
sends it to `http://<predictor_host>/v1/models/<model_name>:predict`.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from kserve import Model, ModelServer, model_server
from kserve.model import PredictorConfig
from sklearn.datasets import load_iris

# kserve 0.21 answers through FastAPI's ORJSONResponse, which FastAPI deprecates with a warning
# on every response; nothing here can act on it.
warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated", category=UserWarning)


class IrisTransformer(Model):  # type: ignore[misc]
    def __init__(self, name: str, predictor: PredictorConfig) -> None:
        super().__init__(name, predictor)
        data = load_iris().data
        self.mean: list[float] = data.mean(axis=0).tolist()
        self.std: list[float] = data.std(axis=0).tolist()
        self.ready = True

    def preprocess(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        rows = payload["instances"]
        scaled = [
            [(x - m) / s for x, m, s in zip(row, self.mean, self.std, strict=True)] for row in rows
        ]
        return {"instances": scaled}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    args, _ = parser.parse_known_args()
    predictor = PredictorConfig(
        predictor_host=args.predictor_host, predictor_protocol=args.predictor_protocol
    )
    model = IrisTransformer(args.model_name, predictor)
    ModelServer(http_port=args.http_port, enable_grpc=args.enable_grpc).start([model])


if __name__ == "__main__":
    main()
