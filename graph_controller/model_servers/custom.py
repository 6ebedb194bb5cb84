"""`python -m graph_controller.model_servers.custom`: serve a user's kserve.Model subclass.

The model folder (`--model_dir`, from storageUri) holds the user's module; `--model_class
module:Class` names the class. It is built as `Class(name)` and gets `model_dir` set before
`load()`, then served by `kserve.ModelServer` like any KServe custom model.
"""

from __future__ import annotations

import importlib
import sys

from kserve import Model

from graph_controller.model_servers.serving import parser, serve


def load_class(spec: str, model_dir: str) -> type[Model]:
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise SystemExit(f"--model_class must be 'module:Class', got {spec!r}")
    sys.path.insert(0, model_dir)
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise SystemExit(f"{spec} is not a kserve.Model subclass in {model_dir}")
    return cls


def main() -> None:
    p = parser("Serve a kserve.Model subclass from the model folder")
    p.add_argument("--model_class", required=True, help="module:Class to serve")
    args, _ = p.parse_known_args()
    model = load_class(args.model_class, args.model_dir)(args.model_name)
    model.model_dir = args.model_dir
    model.load()
    serve(model, args)


if __name__ == "__main__":
    main()
