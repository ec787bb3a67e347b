"""The planted-circuit family (issue 21): hand-built models whose circuits are known, for
tests/test_planted_family.py and benchmarks/bench_discovery.py.

`FAMILY` maps a model's name to its builder (`builder(seed) -> Planted`; the seed draws
the distractor weights, never the planted circuit).
"""

from collections.abc import Callable

from .check import PlantedEvaluator, keep_flags, planted_values
from .models import (
    Planted,
    backup_head,
    mlp_and,
    qk_and_saturated,
    qk_and_unsaturated,
    shared_inputs,
    two_hop_key,
    two_hop_query,
)
from .tasks import TokenTask

FAMILY: dict[str, Callable[[int], Planted]] = {
    build.__name__: build
    for build in (
        qk_and_saturated, qk_and_unsaturated, shared_inputs, backup_head, two_hop_key, two_hop_query, mlp_and
    )
}

__all__ = ["FAMILY", "Planted", "PlantedEvaluator", "TokenTask", "keep_flags", "planted_values"]
