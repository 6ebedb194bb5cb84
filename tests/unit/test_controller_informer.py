"""graph_controller.controller.informer: the cache's view of what a fresh list removed."""

from __future__ import annotations

from graph_controller.controller.informer import Store


def test_a_namespace_list_only_forgets_objects_of_that_namespace() -> None:
    # With several --namespace flags one store holds every namespace's objects: a fresh list
    # of namespace a must not make namespace b's objects look deleted.
    store = Store()
    for namespace, name in (("a", "x"), ("a", "y"), ("b", "z")):
        store._put({"metadata": {"namespace": namespace, "name": name}})
    fresh_a = [{"metadata": {"namespace": "a", "name": "x"}}]
    missing = store._missing_from(fresh_a, "a")
    assert [o["metadata"]["name"] for o in missing] == ["y"]
    assert [o["metadata"]["name"] for o in store._missing_from(fresh_a, None)] == ["y", "z"]
