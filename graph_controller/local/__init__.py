"""`infergraph up` / `down`: a bundle's predictors and routers as local processes on 127.0.0.1."""
