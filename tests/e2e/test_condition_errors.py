"""A condition whose evaluation raises (JMESPath comparing a number with a string, a function
given the wrong type, a JSONPath filter on odd data) does not hold: the Switch tries its next
route, the Sequence stops, and the router answers as for any other failed condition, through a
real router process, instead of raising out of the executor as a 500."""

from __future__ import annotations

import pytest

from tests.support import Backend, StartRouter, root_graph


@pytest.mark.parametrize(
    ("condition", "body"),
    [
        # Python's TypeError: 1 > "x"
        ('jmespath:instances[0] > `"x"`', {"instances": [1]}),
        # labels of two types: TypeError inside max_by
        (
            "jmespath:max_by(instances, &label) == `1`",
            {"instances": [{"label": "a"}, {"label": 1}]},
        ),
        # JMESPathTypeError: abs of a string
        ("jmespath:abs(instances[0]) > `1`", {"instances": ["a"]}),
    ],
    ids=["number-vs-string", "max-by-mixed-types", "function-type-error"],
)
async def test_a_raising_condition_does_not_hold(
    backend: Backend, router: StartRouter, condition: str, body: dict[str, object]
) -> None:
    spec = root_graph(
        "Switch",
        {"serviceUrl": backend.at("/echo/one"), "name": "one", "condition": condition},
        {"serviceUrl": backend.at("/echo/two"), "name": "two", "condition": "instances"},
    )
    async with router(spec) as r:
        status, answer, _ = await r.post(body)
    assert (status, answer["model"]) == (200, "two")


async def test_a_raising_sequence_condition_stops_the_sequence(
    backend: Backend, router: StartRouter
) -> None:
    spec = root_graph(
        "Sequence",
        {"serviceUrl": backend.at("/echo/one"), "name": "one"},
        {
            "serviceUrl": backend.at("/echo/two"),
            "name": "two",
            "condition": "jmespath:model > `1`",  # "one" > 1: TypeError
        },
    )
    async with router(spec) as r:
        status, answer, _ = await r.post({"instances": [1]})
    assert (status, answer["model"]) == (200, "one")
