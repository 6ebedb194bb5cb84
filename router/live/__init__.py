"""The live graph page (`--live-page`): `layout` places the graph, `stats` keeps the figures,
`page` serves the page (`static/`), its data, and sums a `--workers` pool's figures."""
