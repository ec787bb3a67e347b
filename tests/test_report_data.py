"""Report data from a real (tiny, random) model, circuit and corpus; plots; the CLI."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext

import pytest
import torch

from sparsecircuits.checkpoint import model_fingerprint, save_checkpoint
from sparsecircuits.circuits import (
    Circuit,
    compute_edges,
    embed_links,
    residual_links,
    unembed_links,
)
from sparsecircuits.cli import main
from sparsecircuits.data.tokenizer import decode
from sparsecircuits.errors import InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.interventions import ablate, frozen_norms, record_norm_scales
from sparsecircuits.model.locations import all_node_hooks, node_width
from sparsecircuits.prune.removal import removal_losses
from sparsecircuits.report import build_report_data, build_run_data, render_report
from sparsecircuits.report.plots import plot_curve, plot_training
from sparsecircuits.tasks import get_task, make_batch, task_loss

TASK = "single_double_quote"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_corpus_dir, stdlib_tokenizer):
    """A saved tiny checkpoint and a circuit folder over a hand-picked node set."""
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, d_model=32, n_head=2, d_head=16, d_mlp=64, vocab_size=2048, n_ctx=128)
    model = SparseTransformer(cfg).eval()
    root = tmp_path_factory.mktemp("report_data")
    ckpt = save_checkpoint(model, root / "run", tokenizer=small_corpus_dir / "tokenizer.json",
                           training={"val_loss": 4.5, "data_dir": str(small_corpus_dir)})
    gen = torch.Generator().manual_seed(1)
    nodes = {h: sorted(torch.randperm(node_width(model, h), generator=gen)[:3].tolist()) for h in all_node_hooks(model)}
    pairs = get_task(TASK).generate(stdlib_tokenizer, 8, split="train")
    prompt_tokens = {t for p in pairs for t in p.prompt_ids + p.alt_prompt_ids}
    answers = {t for p in pairs for t in (p.target_id, p.alt_id)}
    circuit = Circuit(
        model={"path": str(ckpt), "fingerprint": model_fingerprint(model)},
        task={"name": TASK, "source": "builtin", "parameters": {}},
        ablation="zero", target_loss=0.15, nodes=nodes, edges=compute_edges(model, nodes),
        losses={"full": 0.6, "circuit": 0.65, "ablate_all": 0.69}, seed=0, pruning={"steps": 1},
        residual_links=residual_links(model, nodes), embed_links=embed_links(model, nodes, prompt_tokens),
        unembed_links=unembed_links(model, nodes, answers),
        curve=[{"k": 1, "loss": 0.69}, {"k": 10, "loss": 0.4}, {"k": 48, "loss": 0.2}],
        masks={h: torch.rand(node_width(model, h), generator=gen) for h in all_node_hooks(model)},
    )
    folder = circuit.save(root / "run" / "circuits" / "quote")
    return model, stdlib_tokenizer, small_corpus_dir, circuit, folder


def test_without_model_the_page_still_has_the_graph(setup):
    _, _, _, circuit, folder = setup
    data = build_report_data(folder)
    assert len(data["nodes"]) == circuit.n_nodes == data["circuit"]["n_nodes"] == 48
    assert len(data["edges"]) == circuit.n_edges and data["edges"] == [e.to_dict() for e in circuit.edges]
    assert {n["id"] for n in data["nodes"]} == set(circuit.node_ids())
    q = next(n for n in data["nodes"] if n["alias"] == "attn_q")
    assert (q["head"], q["channel"]) == divmod(q["index"], 16)  # config read from the recorded model path
    assert all(n["delta_loss"] is None and n["snippet_groups"] is None and n["token_acts"] is None
               for n in data["nodes"])
    assert data["attention"] is None and data["curve_full"] is None
    assert data["validation"] is None and data["examples"] == []
    ids = {n["id"] for n in data["nodes"]} | {t["id"] for t in data["terminals"]}
    for link in data["terminal_links"] + data["residual_links"]:
        assert link["src"] in ids and link["dst"] in ids
    assert data["model"]["config"]["d_model"] == 32
    render_report(data)


def test_with_model_every_node_gets_its_details(setup):
    model, tok, corpus, circuit, folder = setup
    (folder / "validation.json").write_text(json.dumps({"verdict": {"status": "ok", "reasons": []}}))
    try:
        data = build_report_data(folder, model, tok, corpus, n_pairs=6, snippet_tokens=256, window=32)
    finally:
        (folder / "validation.json").unlink()
    assert data["validation"]["verdict"]["status"] == "ok"
    pairs = get_task(TASK).generate(tok, 6, split="test")
    batch = make_batch(pairs)
    keep = circuit.keep_masks(model)

    def loss_without(removed: str | None) -> float:
        # an independent ablation: zero every dropped node with plain hooks
        def hook_fn(x, hook):
            flags = keep[hook.name].clone()
            if removed is not None and removed.rpartition(":")[0] == hook.name:
                flags[int(removed.rpartition(":")[2])] = False
            return x * flags.view(x.shape[2:]).to(x.dtype)

        with torch.no_grad():
            logits = model.run_with_hooks(batch.tokens, [(h, hook_fn) for h in all_node_hooks(model)])
        return float(task_loss(logits, batch))

    base = loss_without(None)
    for node in data["nodes"][::7]:
        assert node["ablation_value"] == 0.0
        assert node["delta_loss"] == pytest.approx(loss_without(node["id"]) - base, abs=1e-5)
        assert len(node["acts"]["full"]["a"]) == len(node["acts"]["full"]["b"]) == 6
        assert set(node["acts"]) == {"full", "circuit"}
    # activations of a kept node in the circuit: a zeroed input location changes them, a kept one is exact
    _, cache = model.run_with_cache(batch.tokens, names_filter=[data["nodes"][0]["hook"]])
    first = data["nodes"][0]
    expect = cache[first["hook"]].flatten(2)[torch.arange(12), batch.last_pos, first["index"]]
    assert first["acts"]["full"]["a"] + first["acts"]["full"]["b"] == pytest.approx(expect.tolist(), abs=1e-4)
    ex = data["examples"][0]
    assert "".join(ex["a_tokens"]) == pairs[0].pair.prompt and ex["target"] == decode(tok, [pairs[0].target_id])
    assert 0.0 <= ex["a_probs"]["full"] <= 1.0 and "circuit" in ex["a_probs"]
    assert data["terminals"] and all(t["label"] for t in data["terminals"])
    _check_token_acts(data, model, batch)
    _check_snippets(data, model, corpus)
    _check_attention(data, model, batch)
    _check_whole_curve(data, model, batch)


def _check_token_acts(data, model, batch) -> None:
    """Every token's activation of the example prompts, and the class means aligned at the
    last token, are those of an independent full-model run."""
    n = len(batch) // 2
    node = data["nodes"][5]
    _, cache = model.run_with_cache(batch.tokens, names_filter=[node["hook"]])
    act = cache[node["hook"]].flatten(2)[:, :, node["index"]]
    length = int(batch.last_pos[0]) + 1
    assert node["token_acts"]["full"]["a"][0] == pytest.approx(act[0, :length].tolist(), abs=1e-3)
    assert len(node["token_acts"]["circuit"]["b"][1]) == int(batch.last_pos[n + 1]) + 1
    last_a = act[torch.arange(n), batch.last_pos[:n]].mean()
    assert node["class_acts"]["full"]["a"][-1] == pytest.approx(float(last_a), abs=1e-3)
    assert data["class_positions"]["labels"][-1] == "last"
    assert len(data["class_positions"]["labels"]) == len(node["class_acts"]["full"]["b"]) == int(batch.last_pos.min()) + 1


def _check_snippets(data, model, corpus) -> None:
    """Snippet groups: top/bottom are the extremes of the sample, each quantile group's value
    splits the sample at its quantile, and every snippet's focus token has that value."""
    from sparsecircuits.report.snippets import SNIPPET_GROUPS, stream_windows

    windows = stream_windows(corpus, 256, 32)
    for node in data["nodes"][::9]:
        _, cache = model.run_with_cache(windows, names_filter=[node["hook"]])
        acts = cache[node["hook"]].flatten(2)[:, :, node["index"]].flatten().half().float()
        groups = node["snippet_groups"]
        assert [g["label"] for g in groups] == [label for label, _ in SNIPPET_GROUPS]
        assert groups[0]["value"] == pytest.approx(float(acts.max()), abs=1e-3)
        assert groups[-1]["value"] == pytest.approx(float(acts.min()), abs=1e-3)
        for g in groups:
            below, at_most = float((acts < g["value"] - 1e-4).float().mean()), float((acts <= g["value"] + 1e-4).float().mean())
            assert below <= g["quantile"] + 1 / len(acts) and at_most >= g["quantile"] - 1 / len(acts), g["label"]
            assert g["snippets"] and all(len(s["tokens"]) == len(s["acts"]) <= 25 for s in g["snippets"])
            assert all(s["acts"][s["focus"]] == pytest.approx(s["value"], abs=1e-3) for s in g["snippets"])
        assert node["act_stats"]["n_tokens"] == len(acts)
        assert 0.0 <= node["act_stats"]["fraction_nonzero"] <= 1.0


def _check_attention(data, model, batch) -> None:
    """Patterns are causal, rows sum to at most one, the circuit's heads come first, and the
    full model's pattern is that of an independent run."""
    att = data["attention"]
    heads = att["heads"]
    assert len(heads) == model.cfg.n_layer * model.cfg.n_head
    flags = [h["in_circuit"] for h in heads]
    assert flags == sorted(flags, reverse=True) and any(flags)
    _, cache = model.run_with_cache(batch.tokens, names_filter=["blocks.1.attn.hook_pattern"])
    head = next(h for h in heads if (h["layer"], h["head"]) == (1, 1))
    length = len(att["prompts"][0]["tokens"])
    expect = cache["blocks.1.attn.hook_pattern"][0, 1, :length, :length]
    assert torch.allclose(torch.tensor(head["full"][0]), expect, atol=1e-3)
    for h in heads:
        for pattern in h["full"] + h["circuit"]:
            rows = torch.tensor(pattern)
            assert torch.all(rows.sum(-1) <= 1 + 5e-4 * rows.shape[-1]) and torch.all(rows.triu(1) == 0)  # 3 decimals


def _check_whole_curve(data, model, batch) -> None:
    """The whole-range curve runs from one node to every scored node, where it is the full
    model's loss."""
    curve = data["curve_full"]
    ks = [p["k"] for p in curve]
    assert ks == sorted(set(ks)) and ks[0] == 1 and ks[-1] == data["circuit"]["n_total_nodes"]
    assert data["circuit"]["n_nodes"] in ks
    with torch.no_grad():
        full = float(task_loss(model(batch.tokens), batch))
    assert curve[-1]["loss"] == pytest.approx(full, abs=1e-4)


@pytest.mark.parametrize("freeze", [False, True])
@pytest.mark.parametrize("dead_last_block", [False, True])
def test_batched_removal_equals_one_node_at_a_time(setup, freeze, dead_last_block):
    model, tok, _, circuit, _ = setup
    batch = make_batch(get_task(TASK).generate(tok, 5, split="test"))
    keep = circuit.keep_masks(model)
    if dead_last_block:  # its attention and MLP inputs all ablated: removal adds its cached outputs
        keep["blocks.1.attn.hook_in"][:] = False
        keep["blocks.1.mlp.hook_in"][:] = False
    gen = torch.Generator().manual_seed(2)
    values = {h: torch.randn(node_width(model, h), generator=gen) for h in keep}
    stats = record_norm_scales(model, lambda: model(batch.tokens)) if freeze else None
    nodes = [(h, i) for h in sorted(keep) for i in keep[h].nonzero().flatten().tolist()]

    def one_at_a_time(hook: str, index: int) -> float:
        flags = {h: f.clone() for h, f in keep.items()}
        flags[hook][index] = False
        with torch.no_grad(), ablate(model, flags, values), frozen_norms(model, stats) if freeze else nullcontext():
            return float(task_loss(model(batch.tokens), batch))

    with torch.no_grad():
        batched = removal_losses(model, keep, values, batch, nodes, freeze, group_rows=3, max_rows=7)
    assert batched == pytest.approx([one_at_a_time(h, i) for h, i in nodes], abs=1e-6)


def test_wrong_model_is_refused(setup):
    *_, folder = setup
    torch.manual_seed(5)
    other = SparseTransformer(ModelConfig(n_layer=2, d_model=32, n_head=2, d_head=16, d_mlp=64, vocab_size=2048))
    with pytest.raises(InputError, match="fingerprint"):
        build_report_data(folder, other)


def test_plots_and_run_page(setup, tmp_path):
    *_, circuit, folder = setup
    run = folder.parent.parent
    rows = [{"step": s, "tokens": 1000 * s, "train_loss": 7 - s / 10, "kept_fraction": {"a": 1 - s / 50, "b": 1 - s / 25}}
            for s in range(0, 21, 5)]
    rows[-1]["val_loss"] = 5.5
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    written = plot_training(run, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["kept_fraction.png", "kept_fraction.svg", "loss.png", "loss.svg"]
    assert all(p.stat().st_size > 1000 for p in written)
    assert [p.name for p in plot_curve(folder, tmp_path / "plots")] == ["loss_vs_k.png", "loss_vs_k.svg"]
    data = build_run_data(run)
    charts = {c["title"]: c for c in data["training"]["charts"]}
    assert charts["loss vs tokens"]["lines"][0]["points"][1] == [5000.0, 6.5]
    assert charts["kept fraction vs step"]["lines"][0]["points"][1] == [5.0, pytest.approx(1 - 0.15)]
    assert data["model"]["val_loss"] == 4.5 and data["model"]["nonzeros"]["all"]["numel"] > 0
    (run / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        build_run_data(run)
    (run / "metrics.jsonl").unlink()


def test_cli_circuit_run_and_errors(setup, tmp_path, capsys):
    *_, folder = setup
    out = tmp_path / "c.html"
    assert main(["report", "--circuit", str(folder), "--out", str(out), "--pairs", "4", "--plots", str(tmp_path / "p")]) == 0
    page = out.read_text(encoding="utf-8")
    assert '"kind":"circuit"' in page and (tmp_path / "p" / "loss_vs_k.svg").is_file()
    blob = json.loads(page.split('id="data">', 1)[1].split("</script>", 1)[0])
    assert all(isinstance(n["delta_loss"], float) and math.isfinite(n["delta_loss"]) for n in blob["nodes"])
    assert all(n["snippet_groups"] is not None for n in blob["nodes"])  # corpus found through training.json
    run_out = tmp_path / "run.html"
    assert main(["report", "--run", str(folder.parent.parent), "--out", str(run_out), "--no-model"]) == 0
    blob = json.loads(run_out.read_text().split('id="data">', 1)[1].split("</script>", 1)[0])
    assert blob["circuits"][0]["href"] == "circuit-quote.html" and (tmp_path / "circuit-quote.html").is_file()
    assert main(["report", "--circuits", str(folder.parent), "--out", str(tmp_path / "i.html"), "--no-model"]) == 0
    capsys.readouterr()
    assert main(["report", "--circuit", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2
    assert "circuit.json" in capsys.readouterr().err
    assert main(["report", "--circuit", str(folder), "--out", str(tmp_path / "x.txt")]) == 2
    assert not (tmp_path / "x.html").exists()


def test_a_checkpoint_brings_tokenizer_corpus_and_losses(setup):
    """Given the Checkpoint handle, the report needs nothing else: the tokenizer, the corpus
    of its training record and its losses come with it."""
    from sparsecircuits.checkpoint import load_checkpoint

    model, _, _, circuit, _ = setup
    ckpt = load_checkpoint(circuit.model["path"])
    data = build_report_data(circuit, ckpt, n_pairs=4, snippet_tokens=256)
    assert data["examples"] and all(n["snippet_groups"] is not None for n in data["nodes"])
    assert data["model"]["val_loss"] == 4.5


def test_cli_index_of_circuits_shows_their_reuse(setup, tmp_path):
    """`report --circuits` draws the reuse matrices of each model's circuits: two copies of
    one circuit overlap entirely."""
    import shutil

    *_, folder = setup
    for name in ("a", "b"):
        shutil.copytree(folder, tmp_path / "circuits" / name)
    out = tmp_path / "index.html"
    assert main(["report", "--circuits", str(tmp_path / "circuits"), "--out", str(out), "--no-model"]) == 0
    blob = json.loads(out.read_text().split('id="data">', 1)[1].split("</script>", 1)[0])
    (reuse,) = blob["reuse"].values()
    assert reuse["tasks"] == ["a", "b"] and reuse["node_jaccard"] == [[1.0, 1.0], [1.0, 1.0]]
    assert reuse["n_edges"] == [len(json.loads((folder / "circuit.json").read_text())["edges"])] * 2
