"""Pydantic models of KServe resources (InferenceGraph, ...), their validation and loading.

The bottom layer: imports neither the router, the controller, aiohttp nor kubernetes.
"""
