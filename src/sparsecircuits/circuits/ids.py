"""The circuit vocabulary: node ids ("HOOK:INDEX") and weighted edges between them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sparsecircuits.errors import InputError


@dataclass(frozen=True)
class Edge:
    """A weight between two node ids ("HOOK:INDEX")."""

    src: str
    dst: str
    weight: float

    def to_dict(self) -> dict[str, Any]:
        """{"src", "dst", "weight"}."""
        return {"src": self.src, "dst": self.dst, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Edge:
        """Parse {"src", "dst", "weight"}."""
        try:
            return cls(str(d["src"]), str(d["dst"]), float(d["weight"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"edge {d!r} needs 'src', 'dst' and a numeric 'weight'") from exc


def node_id(hook: str, index: int) -> str:
    """The id "HOOK:INDEX" of one node."""
    return f"{hook}:{int(index)}"


def parse_node_id(nid: str) -> tuple[str, int]:
    """(hook, index) of a node id "HOOK:INDEX"."""
    hook, sep, index = nid.rpartition(":")
    if not sep or not index.isdigit():
        raise InputError(f"node id {nid!r} is not of the form HOOK:INDEX")
    return hook, int(index)
