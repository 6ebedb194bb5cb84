"""InferGraph router: executes a compiled InferenceGraph behind one HTTP endpoint.

Drop-in compatible with KServe's router container (`--graph-json`, port 8080, `/readyz`,
`PROPAGATE_HEADERS`). The CLI entry point is `python -m router`.
"""
