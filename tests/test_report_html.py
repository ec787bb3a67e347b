"""The HTML renderer: one self-contained page, data that cannot close its script element."""

from __future__ import annotations

import json
import random
import re

import pytest

from sparsecircuits.errors import InputError
from sparsecircuits.model import LOCATIONS, NODE_LOCATIONS
from sparsecircuits.report import embed_json, render_index, render_report, write_report

EVIL = "</script><img src=x onerror=alert(1)>"


def synthetic_report_data(n_layer: int = 2, per_location: int = 3, seed: int = 0) -> dict:
    """A circuit report data dict built by hand (no model, no pruning), with hostile tokens."""
    rng = random.Random(seed)
    d_head = 4
    nodes, by_alias = [], {}
    for layer in range(n_layer):
        for loc in NODE_LOCATIONS:
            hook = loc.hook_name(layer)
            for index in sorted(rng.sample(range(16), per_location)):
                qkv = loc.alias in ("attn_q", "attn_k", "attn_v")
                node = {
                    "id": f"{hook}:{index}", "hook": hook, "alias": loc.alias, "layer": layer, "index": index,
                    "head": index // d_head if qkv else None, "channel": index % d_head if qkv else None,
                    "ablation_value": round(rng.uniform(-1, 1), 3), "delta_loss": round(rng.uniform(0, 0.5), 3),
                    "acts": {"full": {"a": [rng.uniform(-1, 2) for _ in range(8)], "b": [rng.uniform(-1, 2) for _ in range(8)]}},
                    "snippets": [{"tokens": ["def", " f", "(", EVIL, ")", ":\n", "    return", ' "&amp;"'],
                                  "acts": [0.0, 0.1, 0.3, 2.0, -0.5, 0.0, 0.2, 0.1], "focus": 3, "max": 2.0}],
                }
                nodes.append(node)
                by_alias.setdefault((layer, loc.alias), []).append(node["id"])
    pairs = [("attn_in", "attn_q"), ("attn_in", "attn_k"), ("attn_in", "attn_v"), ("attn_v", "attn_out"),
             ("mlp_in", "mlp_neuron"), ("mlp_neuron", "mlp_out")]
    edges = []
    for layer in range(n_layer):
        for src, dst in pairs:
            for s in by_alias[(layer, src)]:
                for t in by_alias[(layer, dst)]:
                    if rng.random() < 0.6:
                        edges.append({"src": s, "dst": t, "weight": round(rng.uniform(-1, 1), 4)})
    return {
        "format": "sparsecircuits-report/1",
        "kind": "circuit",
        "title": f"synthetic {EVIL} circuit",
        "locations": list(LOCATIONS),
        "task": {"name": "single_double_quote", "source": "builtin", "description": f"quote {EVIL}"},
        "circuit": {"ablation": "mean", "target_loss": 0.15, "n_nodes": len(nodes), "n_edges": len(edges),
                    "seed": 0, "version": "test", "pruning": {"steps": 10},
                    "losses": {"full": 0.05, "circuit": 0.14, "ablate_all": 0.69, "circuit_ablated": 0.6}},
        "geometry": {"n_layer": n_layer, "n_head": 4, "d_head": d_head},
        "nodes": nodes,
        "edges": edges,
        "terminals": [{"id": "embed:7", "kind": "embed", "token": EVIL, "label": EVIL},
                      {"id": "unembed:9", "kind": "logit", "token": '"', "label": "logit '\"'"}],
        "terminal_links": [{"src": "embed:7", "dst": by_alias[(0, "attn_in")][0], "weight": 0.5},
                           {"src": by_alias[(n_layer - 1, "mlp_out")][0], "dst": "unembed:9", "weight": -0.7}],
        "residual_links": [{"src": by_alias[(0, "attn_out")][0], "dst": by_alias[(0, "mlp_in")][0], "weight": 1.0}],
        "examples": [{"a_tokens": ["x", " =", ' "', EVIL], "target": '"', "a_probs": {"full": 0.9},
                      "b_tokens": ["x", " =", " '", "a & b < c"], "alt": "'", "b_probs": {"full": 0.8}}],
        "curve": [{"k": k, "loss": 0.7 / (1 + k / 10)} for k in (1, 2, 4, 8, 16, 32, 64)],
        "validation": {"verdict": {"status": "suspect", "reasons": [f"nonsense task also pruned {EVIL}"],
                                   "notes": ["with zero ablation: 0.1"],
                                   "checks": [{"name": "sufficiency", "passed": True, "value": 0.14, "threshold": 0.2}]},
                       "metrics": {"sufficiency": 0.14, "necessity": 0.6},
                       "controls": {"random_init": {"loss": 0.2, "n_nodes": 40}, "nonsense": {"loss": 0.1}}},
        "model": {"path": "runs/x", "fingerprint": "abc", "config": {"n_layer": n_layer, "d_model": 16},
                  "nonzeros": {"matrix": {"nonzero": 10, "numel": 100, "fraction": 0.1}}, "val_loss": 3.2},
        "notes": [f"note {EVIL}"],
    }


def _embedded(page: str) -> str:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert m is not None
    return m.group(1)


def test_embedded_json_cannot_close_the_script_and_round_trips():
    data = synthetic_report_data()
    data["examples"][0]["a_tokens"].append("line\u2028sep\u2029end <!-- x --> & <script>")
    page = render_report(data)
    blob = _embedded(page)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in blob
    assert json.loads(blob) == json.loads(embed_json(data))
    assert json.loads(blob)["examples"][0]["a_tokens"][-1] == "line\u2028sep\u2029end <!-- x --> & <script>"
    assert json.loads(blob)["nodes"][0]["snippets"][0]["tokens"][3] == EVIL


def test_page_is_self_contained_and_title_escaped():
    page = render_report(synthetic_report_data())
    assert EVIL not in page  # neither in the title nor anywhere else
    assert "<title>synthetic &lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; circuit</title>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "{{" not in page.replace(embed_json(synthetic_report_data()), "")
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "default-src 'none'" in page


def test_placeholder_text_in_data_is_not_substituted():
    data = synthetic_report_data()
    data["task"]["name"] = "{{SCRIPT}}{{STYLE}}"
    page = render_report(data)
    assert json.loads(_embedded(page))["task"]["name"] == "{{SCRIPT}}{{STYLE}}"
    assert page.count("function el(") == 1


def test_non_finite_numbers_become_strings():
    data = synthetic_report_data()
    data["circuit"]["losses"]["circuit"] = float("nan")
    data["circuit"]["losses"]["ablate_all"] = float("inf")
    losses = json.loads(_embedded(render_report(data)))["circuit"]["losses"]
    assert losses["circuit"] == "nan" and losses["ablate_all"] == "inf"


def test_bad_input_errors(tmp_path):
    with pytest.raises(InputError, match="kind"):
        render_report({"kind": "bogus"})
    with pytest.raises(InputError, match=r"\.html"):
        write_report(synthetic_report_data(), tmp_path / "report.txt")
    with pytest.raises(InputError, match="JSON-serializable"):
        render_report({"kind": "index", "circuits": [object()]})


def test_write_report_is_atomic_and_index_links(tmp_path):
    out = write_report(synthetic_report_data(), tmp_path / "sub" / "c.html")
    assert out.read_text(encoding="utf-8") == render_report(synthetic_report_data())
    assert [p.name for p in out.parent.iterdir()] == ["c.html"]
    page = render_index([{"name": "quote", "href": "quote.html", "task": "single_double_quote",
                          "n_nodes": 12, "n_edges": 9, "losses": {"full": 0.1}, "validation": None}])
    blob = json.loads(_embedded(page))
    assert blob["kind"] == "index" and blob["circuits"][0]["href"] == "quote.html"
