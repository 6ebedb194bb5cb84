"""Deploys InferenceGraphs: the `infergraph` CLI, planning, and local/Kubernetes deployers."""
