"""Model servers that `infergraph up` runs locally, built on KServe's own ModelServer.

`sklearn` is what KServe's sklearnserver image runs (a kserve.Model loading a joblib file);
`custom` serves a user's kserve.Model subclass from the model folder. Both speak KServe's v1 and
v2 REST protocols. They import `kserve`, an optional dependency (`infergraph[models]`).
"""
