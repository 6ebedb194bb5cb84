"""Pure planning shared by every deployer (`infergraph up`, `render`, the controller).

What a bundle holds, which runtime KServe would select for a model, the address of an
InferenceService and the graph with its service names resolved: each computed once, here.
No I/O beyond reading the files a bundle is made of.
"""
