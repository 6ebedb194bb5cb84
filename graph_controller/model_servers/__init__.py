"""Model servers that `infergraph up` runs locally.

`sklearn` is what KServe's sklearnserver image runs (a kserve.Model loading a joblib file);
`custom` serves a user's kserve.Model subclass from the model folder. Both are built on KServe's
own ModelServer, speak KServe's v1 and v2 REST protocols and import `kserve`, an optional
dependency (`infergraph[models]`). `openai_server` serves a user's Python text generator over
OpenAI's protocol (`/openai/v1/...`), which KServe's ModelServer offers only with vLLM; it needs
nothing beyond aiohttp and pydantic.
"""
