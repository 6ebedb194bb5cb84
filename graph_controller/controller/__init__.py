"""The Kubernetes controller: reconcile InferenceServices and InferenceGraphs on a cluster.

Pure decisions (`decide`, `resources`, the lease rules in `leader`) are kept apart from I/O
(`kube`: the only module that talks to the API server; `informer`: list+watch caches;
`workqueue`; `reconciler`: glue; `health`; `run`: wiring). `infergraph controller` calls
`run.main_async` through graph_controller.cli.
"""
