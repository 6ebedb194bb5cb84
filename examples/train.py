"""Train the examples' small real models from datasets bundled with scikit-learn (no downloads).

Writes `model.joblib` files under each example's `models/` folder (git-ignored). Idempotent:
a model already trained is kept unless `--force`. Called by `make demo` and the e2e tests.
"""

from __future__ import annotations

import argparse
import ast
import codecs
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import sklearn.datasets
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

HERE = Path(__file__).parent
SEED = 0  # fixed so every machine trains the same models


def digits_high() -> Any:
    """Stage 1 of the digits pipeline: is the digit 5 or more? (0 = low, 1 = high)."""
    data = load_digits()
    high = (data.target >= 5).astype(int)
    return LogisticRegression(max_iter=2000, random_state=SEED).fit(data.data, high)


def digits_high_specialist() -> Any:
    """Stage 2: which digit, trained only on 5-9, run only when stage 1 says 'high'."""
    data = load_digits()
    mask = data.target >= 5
    model = LogisticRegression(max_iter=2000, random_state=SEED)
    return model.fit(data.data[mask], data.target[mask])


def iris(model: Any) -> Callable[[], Any]:
    def train() -> Any:
        data = load_iris()
        return model.fit(data.data, data.target)

    return train


def wine(model: Any) -> Callable[[], Any]:
    def train() -> Any:
        data = load_wine()
        return model.fit(data.data, data.target)

    return train


def iris_raw_scale() -> Any:
    """A predictor that expects standardised features (the transformer example scales them)."""
    data = load_iris()
    scaled = StandardScaler().fit_transform(data.data)
    return LogisticRegression(max_iter=1000, random_state=SEED).fit(scaled, data.target)


def zen_text() -> str:
    """The Zen of Python (PEP 20), as CPython ships it: rot13 in the `this` module, whose
    import prints it, so its source is read instead."""
    spec = importlib.util.find_spec("this")
    assert spec is not None  # part of the standard library
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    text = next(
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )
    return codecs.decode(text, "rot13")


def dataset_descriptions() -> str:
    """The descriptions of scikit-learn's bundled datasets (BSD-licensed prose in the wheel)."""
    folder = Path(sklearn.datasets.__file__).parent / "descr"
    texts = (path.read_text() for path in sorted(folder.glob("*.rst")))
    lines = (line for text in texts for line in text.splitlines())
    # Prose only: no reStructuredText directives, field lists or title underlines.
    return "\n".join(
        line for line in lines if not line.lstrip().startswith(("..", ":", "|", "=", "-", "*", "+"))
    )


def markov(text: Callable[[], str]) -> Callable[[], Any]:
    """A word-level Markov chain of order 2 over `text`: for each pair of words, how often
    each word follows it (examples/llm-stream/generator/markov.py generates from it)."""

    def train() -> Any:
        words = text().split()
        table: dict[tuple[str, str], dict[str, int]] = {}
        for first, second, third in zip(words, words[1:], words[2:], strict=False):
            following = table.setdefault((first, second), {})
            following[third] = following.get(third, 0) + 1
        return {"table": table, "start": (words[0], words[1])}

    return train


MODELS: dict[str, Callable[[], Any]] = {
    "digits-pipeline/models/digit-high": digits_high,
    "digits-pipeline/models/digit-high-specialist": digits_high_specialist,
    "iris-ensemble/models/iris-logreg": iris(LogisticRegression(max_iter=1000, random_state=SEED)),
    "iris-ensemble/models/iris-tree": iris(DecisionTreeClassifier(random_state=SEED)),
    "iris-ensemble/models/iris-knn": iris(KNeighborsClassifier(n_neighbors=5)),
    "iris-grpc/models/iris": iris(LogisticRegression(max_iter=1000, random_state=SEED)),
    "wine-canary/models/wine-v1": wine(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))
    ),
    "wine-canary/models/wine-v2": wine(RandomForestClassifier(n_estimators=50, random_state=SEED)),
    "iris-transformer/models/iris-scaled": iris_raw_scale,
    "iris-kserve-transformer/models/iris-scaled": iris_raw_scale,
    "llm-stream/models/zen-writer": markov(zen_text),
    "llm-stream/models/data-writer": markov(dataset_descriptions),
}


def train_all(force: bool = False) -> list[Path]:
    written = []
    for relative, train in MODELS.items():
        path = HERE / relative / "model.joblib"
        if path.exists() and not force:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(train(), path)
        written.append(path)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--force", action="store_true", help="retrain models that exist")
    args = p.parse_args()
    for path in train_all(args.force):
        print(f"trained {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
