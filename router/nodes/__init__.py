"""One module per node type; each exports `run_<type>(node, payload, execution) -> Reply`."""
