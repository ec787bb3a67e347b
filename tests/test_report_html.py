"""The HTML renderer: one self-contained page, data that cannot close its script element."""

from __future__ import annotations

import copy
import json
import random
import re

import pytest

from sparsecircuits.errors import InputError
from sparsecircuits.model import LOCATIONS, NODE_LOCATIONS
from sparsecircuits.report import embed_json, index_entry, render_index, render_report, write_report
from sparsecircuits.report.html import compare_page, failed_checks

EVIL = "</script><img src=x onerror=alert(1)>"
EXAMPLES = [
    {"a_tokens": ["x", " =", ' "', EVIL], "target": '"', "a_probs": {"full": 0.9},
     "b_tokens": ["x", " =", " '", "a & b < c"], "alt": "'", "b_probs": {"full": 0.8}},
    {"a_tokens": ["for", " x", " in", " y", ":"], "target": "\n", "a_probs": {"full": 0.7},
     "b_tokens": ["while", " x", ":"], "alt": "\n", "b_probs": {"full": 0.6}},
]
CLASS_LABELS = ["-5", "-4", "-3", "-2", "-1", "last"]
SNIPPET_GROUPS = [("top", 1.0), ("99th percentile", 0.99), ("90th percentile", 0.9), ("median", 0.5),
                  ("10th percentile", 0.1), ("1st percentile", 0.01), ("bottom", 0.0)]


def _noisy(rng: random.Random, v):
    return [_noisy(rng, x) for x in v] if isinstance(v, list) else round(v + rng.uniform(-0.3, 0.3), 4)


def _runs(rng: random.Random, make) -> dict:
    """{"full": {"a", "b"}, "circuit": {"a", "b"}}: the circuit's values are the full model's plus noise."""
    full = {side: make(side) for side in ("a", "b")}
    return {"full": full, "circuit": {side: _noisy(rng, v) for side, v in full.items()}}


def _snippet_groups(rng: random.Random) -> list[dict]:
    groups = []
    for rank, (label, quantile) in enumerate(SNIPPET_GROUPS):
        value = round(2.0 - rank * 0.5, 3)
        tokens = ["def", " f", "(", EVIL if rank == 0 else " x", ")", ":\n", "    return", ' "&amp;"']
        acts = [round(rng.uniform(-0.5, 0.5), 3) for _ in tokens]
        acts[3] = value
        groups.append({"label": label, "quantile": quantile, "value": value,
                       "snippets": [{"tokens": tokens, "acts": acts, "focus": 3, "value": value}]})
    return groups


def _node_details(rng: random.Random, node: dict, examples: list[dict]) -> dict:
    """The per-node fields of a report built with the model (made-up values)."""
    trivial = node["layer"] == 0 and node["alias"] == "attn_in"
    agreement = 1.0 if trivial else (None if node["index"] % 7 == 3 else round(rng.uniform(-0.2, 1.0), 3))
    return {
        "agreement": agreement, "agreement_trivial": trivial,
        "acts": _runs(rng, lambda side: [round(rng.uniform(-1, 2), 4) for _ in range(8)]),
        "token_acts": _runs(rng, lambda side: [[round(rng.uniform(-1, 2), 4) for _ in ex[side + "_tokens"]]
                                               for ex in examples]),
        "class_acts": _runs(rng, lambda side: [round(rng.uniform(-1, 2), 4) for _ in CLASS_LABELS]),
        "snippet_groups": _snippet_groups(rng),
        "act_stats": {"n_tokens": 4096, "fraction_nonzero": round(rng.uniform(0.05, 0.6), 3),
                      "quantiles": [[q, round(rng.uniform(-1, 1) + q, 3)] for q in (0.01, 0.1, 0.5, 0.9, 0.99)]},
    }


def _pattern(rng: random.Random, n: int) -> list[list[float]]:
    """A causal attention pattern whose rows leave a random share to the attention sink."""
    rows = []
    for q in range(n):
        w = [rng.random() for _ in range(q + 1)]
        kept = 1 - rng.uniform(0.0, 0.5)
        rows.append([round(kept * x / sum(w), 4) for x in w] + [0.0] * (n - q - 1))
    return rows


def _attention(rng: random.Random, nodes: list[dict], examples: list[dict], n_layer: int, n_head: int) -> dict:
    prompts = [{"label": f"pair {i + 1} {side.upper()}", "tokens": ex[side + "_tokens"]}
               for i, ex in enumerate(examples) for side in ("a", "b")]
    heads = []
    for layer in range(n_layer):
        for head in range(n_head):
            n = sum(nd["layer"] == layer and nd["head"] == head for nd in nodes)
            full = [_pattern(rng, len(p["tokens"])) for p in prompts]
            heads.append({"layer": layer, "head": head, "in_circuit": n > 0, "n_nodes": n, "full": full,
                          "circuit": _noisy(rng, full) if n else None})
    return {"prompts": prompts, "heads": sorted(heads, key=lambda h: not h["in_circuit"])}


def _validation(nodes: list[dict]) -> dict:
    checks = [
        {"name": "sufficiency", "passed": True, "value": 0.14, "threshold": 0.2, "direction": "<=",
         "meaning": "the circuit alone reaches the target loss on held-out pairs", "reason": "loss 0.140 within 0.2"},
        {"name": "necessity", "passed": True, "value": 0.6, "threshold": 0.5, "direction": ">=",
         "meaning": "ablating the circuit moves the loss towards chance", "reason": "moves it 60% of the way"},
        {"name": "activation_agreement", "passed": False, "value": 0.41, "threshold": 0.7, "direction": ">=",
         "meaning": "the nodes carry the signals they carry in the full model", "reason": f"nodes drift {EVIL}"},
        {"name": "nonsense_task", "passed": True, "value": None, "threshold": 2.0, "direction": "not reached or >",
         "meaning": "pruning a nonsense task does not reach the target at a comparable size",
         "reason": "does not reach the target loss"},
    ]
    per_node = [{"node": n["id"], "corr": n["agreement"] if n["agreement"] is not None else 0.0} for n in nodes]
    return {"verdict": {"status": "suspect", "reasons": [f"nonsense task also pruned {EVIL}"],
                        "notes": ["with zero ablation: 0.1"], "checks": checks},
            "metrics": {"sufficiency": 0.14, "necessity": 0.6},
            "controls": {"random_init": {"loss": 0.2, "n_nodes": 40}, "nonsense": {"loss": 0.1},
                         "activation_agreement": {"mean": 0.41, "n_nodes": len(nodes), "per_node": per_node}}}


def _edges(rng: random.Random, by_alias: dict, n_layer: int) -> list[dict]:
    pairs = [("attn_in", "attn_q"), ("attn_in", "attn_k"), ("attn_in", "attn_v"), ("attn_v", "attn_out"),
             ("mlp_in", "mlp_neuron"), ("mlp_neuron", "mlp_out")]
    edges = []
    for layer in range(n_layer):
        for src, dst in pairs:
            for s in by_alias[(layer, src)]:
                for t in by_alias[(layer, dst)]:
                    if rng.random() < 0.6:
                        edges.append({"src": s, "dst": t, "weight": round(rng.uniform(-1, 1), 4)})
    return edges


def synthetic_report_data(n_layer: int = 2, per_location: int = 3, seed: int = 0, n_examples: int = 2) -> dict:
    """A circuit report data dict built by hand (no model, no pruning), with hostile tokens and
    every field a report built with the model and its validation carries.

    `per_location` nodes per location and layer (n_layer=3, per_location=13: a 312-node circuit)."""
    rng = random.Random(seed)
    d_head, n_index = 4, max(16, per_location)
    n_head = n_index // d_head + 1  # the last head has no circuit node
    examples = [copy.deepcopy(EXAMPLES[i % len(EXAMPLES)]) for i in range(n_examples)]
    nodes, by_alias = [], {}
    for layer in range(n_layer):
        for loc in NODE_LOCATIONS:
            hook = loc.hook_name(layer)
            for index in sorted(rng.sample(range(n_index), per_location)):
                qkv = loc.alias in ("attn_q", "attn_k", "attn_v")
                node = {
                    "id": f"{hook}:{index}", "hook": hook, "alias": loc.alias, "role": loc.role, "layer": layer,
                    "index": index, "head": index // d_head if qkv else None, "channel": index % d_head if qkv else None,
                    "ablation_value": round(rng.uniform(-1, 1), 3), "delta_loss": round(rng.uniform(0, 0.5), 3),
                }
                node.update(_node_details(rng, node, examples))
                nodes.append(node)
                by_alias.setdefault((layer, loc.alias), []).append(node["id"])
    edges = _edges(rng, by_alias, n_layer)
    n_total = n_layer * len(NODE_LOCATIONS) * 64
    ks = sorted({round(n_total ** (i / 24)) for i in range(25)})
    return {
        "format": "sparsecircuits-report/1",
        "kind": "circuit",
        "title": f"synthetic {EVIL} circuit",
        "locations": list(LOCATIONS),
        "roles": {loc.alias: loc.role for loc in NODE_LOCATIONS},
        "task": {"name": "single_double_quote", "source": "builtin", "description": f"quote {EVIL}"},
        "circuit": {"ablation": "mean", "target_loss": 0.15, "n_nodes": len(nodes), "n_edges": len(edges),
                    "n_total_nodes": n_total, "seed": 0, "version": "test", "pruning": {"steps": 10},
                    "losses": {"full": 0.05, "circuit": 0.14, "ablate_all": 0.69, "circuit_ablated": 0.6}},
        "geometry": {"n_layer": n_layer, "n_head": n_head, "d_head": d_head},
        "nodes": nodes,
        "edges": edges,
        "terminals": [{"id": "embed:7", "kind": "embed", "token": EVIL, "label": EVIL},
                      {"id": "unembed:9", "kind": "logit", "token": '"', "label": "logit '\"'"}],
        "terminal_links": [{"src": "embed:7", "dst": by_alias[(0, "attn_in")][0], "weight": 0.5},
                           {"src": by_alias[(n_layer - 1, "mlp_out")][0], "dst": "unembed:9", "weight": -0.7}],
        "residual_links": [{"src": by_alias[(0, "attn_out")][0], "dst": by_alias[(0, "mlp_in")][0], "weight": 1.0}],
        "examples": examples,
        "class_positions": {"labels": CLASS_LABELS, "n_pairs": 32},
        "attention": _attention(rng, nodes, examples, n_layer, n_head),
        "curve": [{"k": k, "loss": 0.7 / (1 + k / 10)} for k in (1, 2, 4, 8, 16, 32, 64)],
        "curve_full": [{"k": k, "loss": 0.7 / (1 + k / 10)} for k in ks],
        "validation": _validation(nodes),
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
    assert json.loads(blob)["nodes"][0]["snippet_groups"][0]["snippets"][0]["tokens"][3] == EVIL


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


def test_index_entry_names_the_failed_checks():
    data = synthetic_report_data()
    assert index_entry(data, "a.html", "a")["reason"] == "fails activation_agreement (0.41 < 0.70)"
    checks = data["validation"]["verdict"]["checks"]
    checks[0].update(passed=False, value=0.15004)  # sufficiency: passes if <= 0.2
    checks[0]["threshold"] = 0.15
    checks[3].update(passed=False, value=1.2)  # nonsense task: passes if not reached or > 2
    assert failed_checks(data["validation"]) == ("fails sufficiency (0.15004 > 0.15000), "
                                                 "activation_agreement (0.41 < 0.70), nonsense_task (1.20 <= 2.00)")
    del checks[2]["direction"]
    checks[3]["value"] = None
    assert "activation_agreement (0.41 vs 0.70), nonsense_task (not computed vs 2.0)" in failed_checks(data["validation"])
    data["validation"] = None
    assert index_entry(data, "a.html", "a")["reason"] == "" == failed_checks({"verdict": {"status": "ok", "checks": []}})


def test_compare_page_keeps_summaries_and_graphs_only():
    sparse, dense = synthetic_report_data(), synthetic_report_data(seed=1)
    page = compare_page([{"label": "sparse", "href": "s.html", "data": sparse}, {"label": "dense", "data": dense}],
                        title="bracket: sparse vs dense", task="bracket_brace")
    assert page["kind"] == "compare" and page["task"] == "bracket_brace"
    assert [s["label"] for s in page["sides"]] == ["sparse", "dense"] and page["sides"][1]["href"] is None
    side = page["sides"][0]["data"]
    assert "attention" not in side and "examples" not in side and side["edges"] == sparse["edges"]
    assert {"token_acts", "snippet_groups", "class_acts", "acts"}.isdisjoint(side["nodes"][0])
    assert side["nodes"][0]["agreement"] == sparse["nodes"][0]["agreement"]
    assert "token_acts" in sparse["nodes"][0]  # the report's own data is left alone
    html = render_report(page)
    assert len(html) < len(render_report(sparse)) and json.loads(_embedded(html))["kind"] == "compare"
    with pytest.raises(InputError, match="circuit report"):
        compare_page([{"label": "x", "data": {"kind": "run"}}], title="t", task="t")
