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


def test_annotation_or_label_only_edits_requeue() -> None:
    from graph_controller.controller.reconciler import _spec_changed

    old = {"metadata": {"generation": 3, "annotations": {}, "labels": {"a": "1"}}}
    stop = {"metadata": {"generation": 3, "annotations": {"serving.kserve.io/stop": "true"},
                         "labels": {"a": "1"}}}  # fmt: skip
    relabel = {"metadata": {"generation": 3, "annotations": {}, "labels": {"a": "2"}}}
    assert _spec_changed("MODIFIED", stop, old)
    assert _spec_changed("MODIFIED", relabel, old)
    assert not _spec_changed("MODIFIED", dict(old), old)
