"""Bridges between a dense and a weight-sparse model: training (frozen and joint), resume,
identity bridges, steering a planted channel, and bad inputs. Tiny models on the CPU."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sparsecircuits.bridges import (
    BridgeConfig,
    BridgedModels,
    Bridges,
    BridgeSpec,
    BridgeTrainer,
    bridge_quality,
    bridge_sites,
    hybrid_logits,
    load_bridges,
    make_bridges,
    open_bridges,
    residual_channel,
    save_bridges,
    steer,
    train_bridges,
)
from sparsecircuits.bridges.model import check_pair, fit_least_squares_, nmse
from sparsecircuits.bridges.quality import SITE_FIELDS
from sparsecircuits.checkpoint import load_checkpoint, model_fingerprint, save_checkpoint
from sparsecircuits.data.shards import TokenShards, sample_batch
from sparsecircuits.errors import CheckpointError, InputError
from sparsecircuits.model import ModelConfig, SparseTransformer
from sparsecircuits.model.sparsity import WeightSparsifier, sparsity_report
from sparsecircuits.tasks import EncodedPair, Pair
from sparsecircuits.train import Trainer, TrainingInterrupted, load_run_config, train

TIMINGS = {"step_time", "tokens_per_s", "wall_time", "seconds", "tokens_per_second"}
PARTS = ("nmse_enc", "nmse_dec", "kl_dense_to_sparse", "kl_sparse_to_dense")
# A bridges run over a finished (frozen) sparse model: no projection, a bridge-sized lr.
BRIDGE = ["train.steps=80", "train.target_density=1.0", "train.lr=3e-3", "train.eval_every=20",
          "train.log_every=5", "train.checkpoint_every=0"]
# The same, shorter, for the run with the default (least-squares) start.
LSTSQ = [*BRIDGE, "train.steps=40"]
RANDOM = BridgeConfig(init="random")


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _state(model: SparseTransformer) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _first_last(rows: list[dict], key: str, n: int = 3) -> tuple[float, float]:
    values = [row[key] for row in rows]
    return sum(values[:n]) / n, sum(values[-n:]) / n


# ---- trained bridges between two tiny runs ----------------------------------------------------


@pytest.fixture(scope="module")
def pair_runs(small_corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny dense run, a tiny sparse run (80 steps each), bridges trained between them from
    a random start (80 steps) and from the default least-squares start (40 steps)."""
    root = tmp_path_factory.mktemp("bridges")
    for name, preset in (("dense", "tiny-dense"), ("sparse", "tiny-sparse")):
        train(preset, small_corpus_dir, root / name, overrides=["train.steps=80", "train.eval_every=0"],
              progress=False)
    for name, overrides, config in (("random", BRIDGE, RANDOM), ("bridges", LSTSQ, BridgeConfig())):
        spec = BridgeSpec(load_checkpoint(root / "dense"), load_checkpoint(root / "sparse"), config)
        train_bridges(load_run_config("tiny-sparse", overrides), spec, small_corpus_dir, root / name,
                      progress=False)
    return {"dense": root / "dense", "sparse": root / "sparse", "random": root / "random",
            "bridges": root / "bridges", "corpus": small_corpus_dir}


def _eval_batches(corpus: Path, overrides: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation batches of a run (as the Trainer draws them)."""
    cfg = load_run_config("tiny-sparse", overrides).train
    rng = np.random.default_rng([cfg.seed, 1])
    val = TokenShards.open(corpus).val
    return [sample_batch(val, cfg.batch_size, 32, rng) for _ in range(cfg.eval_batches)]


def test_bridge_training_lowers_nmse_and_hybrid_kl(pair_runs: dict[str, Path]) -> None:
    """From a random start, both NMSE terms and both hybrid KL terms fall over training."""
    rows = _metrics(pair_runs["random"])
    assert [r["step"] for r in rows] == list(range(5, 85, 5))
    for key in PARTS:
        first, last = _first_last(rows, key)
        assert last < 0.85 * first, (key, first, last)
    assert [r["step"] for r in rows if "val_bridges" in r] == [20, 40, 60, 80]
    val = [r["val_bridges"] for r in rows if "val_bridges" in r]
    assert val[-1]["nmse_enc"] < val[0]["nmse_enc"] and val[-1]["nmse_dec"] < val[0]["nmse_dec"]
    assert val[-1]["kl_sparse_to_dense"] < val[0]["kl_sparse_to_dense"]


@pytest.mark.parametrize("name", ["random", "bridges"])
def test_bridges_run_folder_is_the_frozen_sparse_model_with_bridges(name: str, pair_runs: dict[str, Path]) -> None:
    """The folder opens as the sparse checkpoint, with the input's exact weights (the frozen
    model is not trained, decayed or projected); the bridges open, and training.json's quality
    is what those bridges measure on the run's eval batches."""
    out = pair_runs[name]
    config = RANDOM if name == "random" else BridgeConfig()
    assert _same_state(_state(load_checkpoint(out).model), _state(load_checkpoint(pair_runs["sparse"]).model))
    dense = load_checkpoint(pair_runs["dense"])
    bridges, saved_config, meta = load_bridges(out)
    assert saved_config == config
    assert bridges.sites == meta["sites"] == bridge_sites(1)
    assert (bridges.d_dense, bridges.d_sparse, bridges.encoder_k) == (32, 32, 8)  # tiny-sparse afrac 0.25
    assert meta["dense"] == {"path": str(pair_runs["dense"].resolve()), "fingerprint": model_fingerprint(dense.model)}
    torch.manual_seed(0)
    untrained = make_bridges(dense.model, load_checkpoint(out).model, config)
    assert not torch.equal(bridges.encoders[0].weight, untrained.encoders[0].weight)

    training = json.loads((out / "training.json").read_text())
    record = training["bridges"]
    assert record["joint"] is False and record["config"] == config.to_dict()
    assert record["sparse"]["fingerprint"] == model_fingerprint(load_checkpoint(pair_runs["sparse"]).model)
    quality = record["quality"]
    assert [s["site"] for s in quality["sites"]] == bridge_sites(1)
    batches = _eval_batches(pair_runs["corpus"], BRIDGE)
    again = bridge_quality(dense.model, load_checkpoint(out).model, bridges, batches)
    for saved, measured in zip(quality["sites"], again["sites"], strict=True):
        for field in SITE_FIELDS:
            assert saved[field] == pytest.approx(measured[field], rel=1e-4, abs=1e-6), (saved["site"], field)
    assert training["final_val_loss"] == pytest.approx(again["sparse_loss"], rel=1e-5)


def _optimal_decoder_nmse(dense: SparseTransformer, sparse: SparseTransformer, site: str,
                          batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The NMSE of the best affine map sparse -> dense at `site` on these batches."""
    with torch.no_grad():
        xs = torch.cat([sparse.run_with_cache(x, names_filter=[site])[1][site].flatten(0, 1) for x, _ in batches])
        xd = torch.cat([dense.run_with_cache(x, names_filter=[site])[1][site].flatten(0, 1) for x, _ in batches])
    xs1 = torch.cat([xs, torch.ones(len(xs), 1)], dim=1).double()
    solution = torch.linalg.lstsq(xs1, xd.double()).solution
    return float(nmse((xs1 @ solution).float(), xd))


def test_the_least_squares_start_is_near_the_linear_optimum(pair_runs: dict[str, Path], tmp_path: Path) -> None:
    """Before its first step, a bridges run with the default start has decoders about as good
    as the best affine map on held-out batches, far better than a random start; the logged
    rows show the same from step 5 on."""
    run = load_run_config("tiny-sparse", LSTSQ)
    quality, batches = {}, None
    for config in (BridgeConfig(), RANDOM):
        spec = BridgeSpec(load_checkpoint(pair_runs["dense"]), load_checkpoint(pair_runs["sparse"]), config)
        trainer = BridgeTrainer(run, spec, pair_runs["corpus"], tmp_path / config.init, progress=False)
        try:
            batches = trainer.eval_batches
            quality[config.init] = bridge_quality(trainer.dense, trainer.model, trainer.bridges, batches)
            dense, sparse = trainer.dense, trainer.model
        finally:
            trainer.close()
    for i, site in enumerate(bridge_sites(1)):
        fitted, random_start = quality["lstsq"]["sites"][i], quality["random"]["sites"][i]
        best = _optimal_decoder_nmse(dense, sparse, site, batches)
        assert best <= fitted["nmse_dec"] < 1.3 * best + 0.01, (site, best, fitted["nmse_dec"])
        assert random_start["nmse_dec"] > 2 * fitted["nmse_dec"], site
        assert random_start["nmse_enc"] > 1.5 * fitted["nmse_enc"], site
    first = _metrics(pair_runs["bridges"])[0]
    assert first["nmse_dec"] < 0.5 * _metrics(pair_runs["random"])[0]["nmse_dec"]


@torch.no_grad()
def test_fit_least_squares_between_copies_is_the_identity() -> None:
    model = _two_layer()
    twin = copy.deepcopy(model)
    sites = bridge_sites(2)
    tokens = torch.randint(0, 64, (8, 16))
    _, acts = model.run_with_cache(tokens, names_filter=sites)
    bridges = make_bridges(model, twin, BridgeConfig())
    fit_least_squares_(bridges, acts, acts)
    for i, site in enumerate(sites):
        for layer in (bridges.encoders[i], bridges.decoders[i]):
            torch.testing.assert_close(layer.weight, torch.eye(16), atol=2e-2, rtol=0)
        assert float(nmse(bridges.encode(i, acts[site]), acts[site])) < 1e-3
        assert float(nmse(bridges.decode(i, acts[site]), acts[site])) < 1e-3
    quality = bridge_quality(model, twin, bridges, [(tokens, tokens)])
    assert all(row["kl_dense_to_sparse"] < 1e-3 and row["kl_sparse_to_dense"] < 1e-3 for row in quality["sites"])


def test_resumed_bridges_equal_an_uninterrupted_run(pair_runs: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted at step 23 (the step-21 state holds a half-filled logging window) and
    resumed, a bridges run ends with the uninterrupted run's bridges bit for bit, its metrics
    rows and its training.json. Resuming with other bridge settings or another dense model is
    refused and leaves the folder as it was."""
    corpus, out = pair_runs["corpus"], tmp_path / "resumed"
    run = load_run_config("tiny-sparse", [*LSTSQ, "train.checkpoint_every=7", "train.keep_checkpoints=1"])

    def spec(config: BridgeConfig | None = None, dense: str = "dense") -> BridgeSpec:
        return BridgeSpec(load_checkpoint(pair_runs[dense]), load_checkpoint(pair_runs["sparse"]),
                          config or BridgeConfig())

    step = Trainer.step

    def interrupted_step(self: Trainer):
        if self.step_count == 23:
            raise KeyboardInterrupt
        return step(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", interrupted_step)
        with pytest.raises(TrainingInterrupted) as stop:
            train_bridges(run, spec(), corpus, out, progress=False)
    assert (stop.value.step, stop.value.checkpoint) == (23, 21)
    before = sorted(p.name for p in out.rglob("*"))

    with pytest.raises(InputError, match=r"bridges settings differ.*kl_coef"):
        train_bridges(run, spec(BridgeConfig(kl_coef=2.0)), corpus, out, resume=True, progress=False)
    with pytest.raises(InputError, match=r"bridges settings differ.*init"):
        train_bridges(run, spec(RANDOM), corpus, out, resume=True, progress=False)
    with pytest.raises(InputError, match=r"bridges settings differ.*dense"):
        train_bridges(run, spec(dense="sparse"), corpus, out, resume=True, progress=False)
    assert sorted(p.name for p in out.rglob("*")) == before

    train_bridges(run, spec(), corpus, out, resume=True, progress=False)
    straight = pair_runs["bridges"]
    a, b = load_file(str(out / "bridges.safetensors")), load_file(str(straight / "bridges.safetensors"))
    assert _same_state(a, b)
    assert _metrics(out) == _metrics(straight)

    def training(path: Path) -> dict:
        record = {k: v for k, v in json.loads((path / "training.json").read_text()).items() if k not in TIMINGS}
        for key in ("checkpoint_every", "keep_checkpoints"):  # the only settings that differ
            record["recipe"]["train"].pop(key)
        return record

    assert training(out) == training(straight)


def test_joint_training_trains_the_sparse_model_within_its_l0_budget(pair_runs: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """With no sparse checkpoint the sparse model trains from scratch with the bridges: its
    weights change, its own loss (logged as sparse_lm) falls, it ends on the L0 budget of its
    run config, and the frozen dense model does not change."""
    run = load_run_config("tiny-sparse", ["train.steps=40", "train.eval_every=0", "train.log_every=5"])
    dense = load_checkpoint(pair_runs["dense"])
    dense_before = _state(dense.model)
    out = tmp_path / "joint"
    train_bridges(run, BridgeSpec(dense, None, BridgeConfig()), pair_runs["corpus"], out, progress=False)
    assert _same_state(_state(dense.model), dense_before)

    rows = _metrics(out)
    assert all("sparse_lm" in r for r in rows)
    first, last = _first_last(rows, "sparse_lm", 2)
    assert last < first - 0.5, (first, last)

    model = load_checkpoint(out).model
    torch.manual_seed(run.train.seed)
    init = SparseTransformer(run.model)
    cfg = run.train
    budgets = WeightSparsifier(init, cfg.target_density, cfg.embedding_density_factor,
                               cfg.min_per_channel).budgets(cfg.target_density)
    report = {r.name: r for r in sparsity_report(model).rows}
    matrices = [name for name, r in report.items() if r.kind == "matrix"]
    assert matrices
    for name in matrices:
        assert report[name].nonzero == budgets[name], name
        kept = model.get_parameter(name) != 0
        changed = model.get_parameter(name)[kept] != init.get_parameter(name)[kept]
        assert changed.float().mean() > 0.9, name
    for name, budget in budgets.items():
        assert report[name].nonzero <= budget, name
    nz, numel = sparsity_report(model).total(("matrix",))
    assert nz / numel == pytest.approx(cfg.target_density, abs=1e-3)

    training = json.loads((out / "training.json").read_text())["bridges"]
    assert training["joint"] is True and training["sparse"] is None
    bridges, _, meta = load_bridges(out)
    assert meta["dense"]["fingerprint"] == model_fingerprint(dense.model)
    assert bridges.encoder_k == 8


# ---- identity bridges between two copies of one model ------------------------------------------


def _two_layer(**kw) -> SparseTransformer:
    cfg = dict(n_layer=2, d_model=16, n_head=2, d_head=8, d_mlp=32, vocab_size=64, n_ctx=16, init_std=0.3)
    return SparseTransformer(ModelConfig(**{**cfg, **kw})).eval()


def _set_bridges(bridges: Bridges, encoder: torch.Tensor, decoder: torch.Tensor) -> Bridges:
    with torch.no_grad():
        for enc, dec in zip(bridges.encoders, bridges.decoders, strict=True):
            enc.weight.copy_(encoder)
            dec.weight.copy_(decoder)
            enc.bias.zero_()
            dec.bias.zero_()
    return bridges.eval()


@torch.no_grad()
def test_identity_bridges_between_copies_reproduce_the_model() -> None:
    model = _two_layer()
    twin = copy.deepcopy(model)
    sites = bridge_sites(2)
    assert sites == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.1.hook_resid_pre",
                     "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post"]
    eye = torch.eye(16)
    bridges = _set_bridges(Bridges(sites, 16, 16, None), eye, eye)
    tokens = torch.randint(0, 64, (3, 12))
    reference = model(tokens)
    _, cache = model.run_with_cache(tokens, names_filter=sites)
    for i, site in enumerate(sites):
        h = cache[site]
        torch.testing.assert_close(hybrid_logits(twin, tokens, site, bridges.encode(i, h)), reference,
                                   rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(hybrid_logits(model, tokens, site, bridges.decode(i, h)), reference,
                                   rtol=1e-6, atol=1e-6)
        moved = hybrid_logits(twin, tokens, site, h + torch.randn_like(h))  # the value is used
        assert (moved - reference).abs().max() > 1e-2, site

    batches = [(tokens, torch.randint(0, 64, (3, 12))) for _ in range(2)]
    quality = bridge_quality(model, twin, bridges, batches)
    assert [s["site"] for s in quality["sites"]] == sites and quality["batches"] == 2
    for row in quality["sites"]:
        assert row["nmse_enc"] < 1e-10 and row["nmse_dec"] < 1e-10, row
        assert abs(row["kl_dense_to_sparse"]) < 1e-6 and abs(row["kl_sparse_to_dense"]) < 1e-6, row
        assert row["loss_dense_to_sparse"] == pytest.approx(quality["dense_loss"], abs=1e-5)
        assert row["loss_sparse_to_dense"] == pytest.approx(quality["sparse_loss"], abs=1e-5)
    assert abs(quality["kl_sparse_to_dense_models"]) < 1e-6

    noisy = _set_bridges(Bridges(sites, 16, 16, None), eye + 0.2 * torch.randn(16, 16), eye)
    off = bridge_quality(model, twin, noisy, batches)
    for row in off["sites"]:
        assert row["nmse_enc"] > 1e-2 and row["kl_dense_to_sparse"] > 1e-5, row
        assert row["nmse_dec"] < 1e-10, row


def test_nmse_is_scaled_squared_error() -> None:
    target = torch.randn(4, 5, 8) + 3.0
    assert float(nmse(target, target)) == 0.0
    centred = (target - target.mean(dim=(0, 1))).pow(2).sum(-1).mean()
    assert float(nmse(target.mean(dim=(0, 1)).expand_as(target), target)) == pytest.approx(1.0, rel=1e-5)
    assert float(nmse(1.5 * target, target)) == pytest.approx(float(0.25 * target.pow(2).sum(-1).mean() / centred),
                                                              rel=1e-5)


def test_make_bridges_takes_the_encoder_topk_from_the_sparse_model() -> None:
    dense, sparse = _two_layer(), _two_layer(afrac=0.25)
    assert make_bridges(dense, sparse, BridgeConfig()).encoder_k == 4
    assert make_bridges(dense, sparse, BridgeConfig(encoder_afrac=0.5)).encoder_k == 8
    assert make_bridges(dense, _two_layer(), BridgeConfig()).encoder_k is None
    wide = make_bridges(_two_layer(d_model=24, n_head=3), sparse, BridgeConfig())
    assert (wide.d_dense, wide.d_sparse, len(wide.encoders)) == (24, 16, 5)
    encoded = wide.encode(2, torch.randn(3, 7, 24))
    assert encoded.shape == (3, 7, 16) and int((encoded != 0).sum(-1).max()) == 4
    assert wide.decode(2, encoded).shape == (3, 7, 24)


# ---- steering a planted channel ----------------------------------------------------------------

PLUS, MINUS, ANSWER_A, ANSWER_B = 1, 2, 5, 6
PERM = [5, 0, 9, 2, 11, 7, 3, 1]  # sparse channel c is dense channel PERM[c]


def _planted_sparse() -> SparseTransformer:
    """Blocks that write nothing (every matrix zero): the residual is the token embedding at
    every site. Channel 0 is +2 for PLUS, -2 for MINUS, 0 for other tokens; channel 7 is a
    constant 1; the unembedding reads channel 0 as A minus B."""
    model = SparseTransformer(ModelConfig(n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=8, vocab_size=10,
                                          n_ctx=16, bias=False, activation="relu"))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.zero_()
        model.embed.weight[:, 7] = 1.0
        model.embed.weight[PLUS, 0], model.embed.weight[MINUS, 0] = 2.0, -2.0
        model.unembed.weight[ANSWER_A, 0], model.unembed.weight[ANSWER_B, 0] = 2.0, -2.0
    return model.eval()


def _injection() -> torch.Tensor:
    """The dense basis: sparse channel c is dense channel PERM[c] (12 x 8)."""
    m = torch.zeros(12, 8)
    m[PERM, range(8)] = 1.0
    return m


def _planted_dense(sparse: SparseTransformer) -> SparseTransformer:
    """The sparse model in a wider, permuted residual basis (its residual is M x sparse's)."""
    model = SparseTransformer(ModelConfig(n_layer=1, d_model=12, n_head=3, d_head=4, d_mlp=8, vocab_size=10,
                                          n_ctx=16, bias=False, activation="relu"))
    m = _injection()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.zero_()
        model.embed.weight.copy_(sparse.embed.weight @ m.T)
        model.unembed.weight.copy_(sparse.unembed.weight @ m.T)
    return model.eval()


def _planted_pairs() -> list[EncodedPair]:
    """Prompt A ends in PLUS (answer A), prompt B in MINUS (answer B); two lengths."""
    out = []
    for fill in ((3, 4), (4, 3, 4)):
        a, b = (*fill, PLUS), (*fill, MINUS)
        pair = Pair(" ".join(map(str, a)), "A", " ".join(map(str, b)), "B")
        out.append(EncodedPair(pair, a, ANSWER_A, b, ANSWER_B))
    return out


@pytest.fixture(scope="module")
def planted_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bridges folder as a bridges run leaves it: the sparse checkpoint, bridges.json and
    bridges.safetensors, naming a dense checkpoint beside it."""
    root = tmp_path_factory.mktemp("planted")
    sparse = _planted_sparse()
    dense = _planted_dense(sparse)
    save_checkpoint(dense, root / "dense")
    save_checkpoint(sparse, root / "bridges")
    m = _injection()
    bridges = _set_bridges(Bridges(bridge_sites(1), 12, 8, None), m.T, m)
    save_bridges(bridges, root / "bridges", BridgeConfig(),
                 {"path": str(root / "dense"), "fingerprint": model_fingerprint(dense)})
    return root / "bridges"


@torch.no_grad()
def _p(model: SparseTransformer, prompts: list[tuple[int, ...]], answer: int) -> float:
    return sum(float(model(torch.tensor([p]))[0, -1].softmax(-1)[answer]) for p in prompts) / len(prompts)


def test_steering_a_planted_channel_moves_the_planted_answer(planted_folder: Path) -> None:
    models = open_bridges(planted_folder)
    pairs = _planted_pairs()
    dense, sparse = models.dense.model, models.sparse.model
    # the dense residual is the injection of the sparse one, so the identity-like bridges are exact
    _, acts = dense.run_with_cache(torch.tensor([pairs[1].prompt_ids]), names_filter=["blocks.0.hook_resid_mid"])
    _, sacts = sparse.run_with_cache(torch.tensor([pairs[1].prompt_ids]), names_filter=["blocks.0.hook_resid_mid"])
    torch.testing.assert_close(models.bridges.decode(1, sacts["blocks.0.hook_resid_mid"]),
                               acts["blocks.0.hook_resid_mid"])

    result = steer(models, "blocks.0.attn_out:0", pairs, toward_alt=True, scales=[0, 1, 2])
    assert (result["site"], result["channel"], result["n_prompts"]) == ("blocks.0.hook_resid_mid", 0, 2)
    assert result["mean_delta"] == pytest.approx(-4.0)
    assert result["decoder_norm"] == pytest.approx(1.0)
    zero, one, two = result["scales"]
    base = result["baseline"]["dense"]["p_alt"]
    assert base < 1e-3 and zero["dense"]["p_alt"] == pytest.approx(base, abs=1e-9)
    alt_prompts = [p.alt_prompt_ids for p in pairs]
    # at scale 1 the channel takes the alternative prompt's value: p(alt) is that prompt's
    assert one["dense"]["p_alt"] == pytest.approx(_p(dense, alt_prompts, ANSWER_B), rel=1e-5)
    assert one["dense"]["p_alt"] > 0.8 and two["dense"]["p_alt"] > one["dense"]["p_alt"]
    assert one["per_prompt_dense_p_alt"] == pytest.approx([_p(dense, [q], ANSWER_B) for q in alt_prompts],
                                                          rel=1e-5)
    # the random-channel control (same norm, other sparse channels) barely moves it
    assert sorted(one["control"]["channels"]) == list(range(1, 8))
    assert one["control"]["p_alt"] - base < 0.05
    # and the same edit inside the sparse model moves the sparse model's answer
    assert result["baseline"]["sparse"]["p_alt"] < 1e-3
    assert one["sparse"]["p_alt"] == pytest.approx(_p(sparse, alt_prompts, ANSWER_B), rel=1e-5)
    assert one["sparse"]["p_alt"] > 0.8

    level = steer(models, "blocks.0.hook_resid_mid:0", pairs, to=0.0, positions="last", scales=[1])
    row = level["scales"][0]
    assert row["dense"]["p_target"] == pytest.approx(row["dense"]["p_alt"], rel=1e-5)
    assert row["sparse"]["p_target"] == pytest.approx(row["sparse"]["p_alt"], rel=1e-5)
    assert level["mean_delta"] == pytest.approx(-2.0)
    # the constant channel 7 is not the answer's channel: steering it moves p(alt) little
    other = steer(models, "blocks.0.hook_resid_mid:7", pairs, to=-3.0, scales=[1])
    assert other["scales"][0]["dense"]["p_alt"] < 0.05


def test_steering_built_bridged_models_directly_matches_the_folder(planted_folder: Path) -> None:
    opened = open_bridges(planted_folder)
    built = BridgedModels(opened.dense, opened.sparse, load_bridges(planted_folder)[0], {})
    a = steer(opened, "blocks.0.attn_out:0", _planted_pairs(), toward_alt=True, scales=[1])
    b = steer(built, "blocks.0.attn_out:0", _planted_pairs(), toward_alt=True, scales=[1])
    assert a == b


def test_rank_channels_puts_the_planted_channel_first() -> None:
    """Only residual channel 0 tells a pair's two prompts apart: it ranks first, channels that
    do not move score 0, and a query node (no residual channel) is skipped."""
    from sparsecircuits.bridges.steer import rank_channels

    nodes = {"blocks.0.attn_out": [7, 0, 3], "blocks.0.attn_q": [0], "blocks.0.mlp_in": [0]}
    ranked = rank_channels(_planted_sparse(), nodes, _planted_pairs())
    assert {node for node, _ in ranked} == {"blocks.0.attn_out:7", "blocks.0.attn_out:0", "blocks.0.attn_out:3",
                                            "blocks.0.mlp_in:0"}
    assert {node for node, _ in ranked[:2]} == {"blocks.0.attn_out:0", "blocks.0.mlp_in:0"}
    assert ranked[0][1] == pytest.approx(ranked[1][1]) and ranked[0][1] > 1.0
    assert [score for _, score in ranked[2:]] == [0.0, 0.0]
    assert rank_channels(_planted_sparse(), {"blocks.0.attn_q": [0]}, _planted_pairs()) == []


def test_residual_channel_maps_nodes_to_sites() -> None:
    model = _two_layer()
    cases = {
        "blocks.0.attn_in:3": ("blocks.0.hook_resid_pre", 3),
        "blocks.0.attn.hook_in:3": ("blocks.0.hook_resid_pre", 3),
        "blocks.0.attn_out:3": ("blocks.0.hook_resid_mid", 3),
        "blocks.0.mlp_in:4": ("blocks.0.hook_resid_mid", 4),
        "blocks.0.mlp_out:3": ("blocks.1.hook_resid_pre", 3),
        "blocks.1.attn_in:0": ("blocks.1.hook_resid_pre", 0),
        "blocks.1.attn_out:2": ("blocks.1.hook_resid_mid", 2),
        "blocks.1.mlp_out:15": ("blocks.1.hook_resid_post", 15),
        "blocks.1.hook_resid_mid:7": ("blocks.1.hook_resid_mid", 7),
    }
    for node, expected in cases.items():
        assert residual_channel(node, model) == expected, node
        assert expected[0] in bridge_sites(2)
    for node, message in (("blocks.0.attn_q:3", "not a residual channel"),
                          ("blocks.0.mlp_neuron:3", "not a residual channel"),
                          ("blocks.0.attn_out", "HOOK:INDEX"), ("blocks.0.attn_out:x", "HOOK:INDEX"),
                          ("blocks.5.attn_out:1", "neither a node location nor a bridge site")):
        with pytest.raises(InputError, match=message):
            residual_channel(node, model)


# ---- bad inputs --------------------------------------------------------------------------------


def test_check_pair_refuses_models_bridges_cannot_join() -> None:
    base = _two_layer()
    check_pair(base.cfg, _two_layer(d_model=24, n_head=3).cfg)  # widths may differ
    for other, named in ((_two_layer(n_layer=1), "same n_layer: the dense model has 2, the sparse one 1"),
                         (_two_layer(vocab_size=32), "same vocab_size: the dense model has 64, the sparse one 32")):
        with pytest.raises(InputError, match=named):
            check_pair(base.cfg, other.cfg)
        with pytest.raises(InputError, match=named):
            make_bridges(base, other, BridgeConfig())
    with pytest.raises(InputError, match=r"dense model's n_ctx \(8\) is shorter"):
        check_pair(_two_layer(n_ctx=8).cfg, base.cfg)


def test_train_bridges_refuses_models_it_cannot_join_before_writing(pair_runs: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    save_checkpoint(_two_layer(), tmp_path / "other")  # 2 layers, vocabulary 64
    dense, other = load_checkpoint(pair_runs["dense"]), load_checkpoint(tmp_path / "other")
    run = load_run_config("tiny-sparse", LSTSQ)
    for spec in (BridgeSpec(dense, other, BridgeConfig()), BridgeSpec(other, None, BridgeConfig())):
        with pytest.raises(InputError, match="bridges join models of the same n_layer"):
            train_bridges(run, spec, pair_runs["corpus"], tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()


def test_bridge_config_refuses_bad_settings() -> None:
    for kwargs, named in (({"kl_coef": -1}, "kl_coef must be a finite number >= 0, got -1"),
                          ({"nmse_coef": float("nan")}, "nmse_coef"), ({"lm_coef": float("inf")}, "lm_coef"),
                          ({"sites_per_step": 0}, "sites_per_step must be an integer >= 1, got 0"),
                          ({"sites_per_step": 1.5}, "sites_per_step"),
                          ({"encoder_afrac": 0.0}, r"encoder_afrac must be in \(0, 1\]"),
                          ({"encoder_afrac": 1.5}, "encoder_afrac"),
                          ({"init": "zeros"}, "bridges init must be one of lstsq, random, got 'zeros'")):
        with pytest.raises(InputError, match=named):
            BridgeConfig(**kwargs)
    assert BridgeConfig.from_dict(BridgeConfig(kl_coef=2.0).to_dict()) == BridgeConfig(kl_coef=2.0)
    with pytest.raises(InputError, match=r"unknown bridges settings \['kl'\]"):
        BridgeConfig.from_dict({"kl": 1.0})


def test_load_bridges_refuses_what_is_not_a_bridges_folder(planted_folder: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    save_checkpoint(_planted_sparse(), plain)
    with pytest.raises(InputError, match=rf"{plain} is not a bridges folder \(bridges.json missing\)"):
        load_bridges(plain)
    with pytest.raises(InputError, match="bridges.json missing"):
        open_bridges(plain)

    meta = json.loads((planted_folder / "bridges.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bridges.safetensors").write_bytes((planted_folder / "bridges.safetensors").read_bytes())
    (broken / "bridges.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(InputError, match="bridges format 99"):
        load_bridges(broken)
    (broken / "bridges.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "sites"}))
    with pytest.raises(InputError, match="is not a bridges record"):
        load_bridges(broken)
    (broken / "bridges.json").write_text(json.dumps({**meta, "d_sparse": 9}))
    with pytest.raises(CheckpointError, match="does not match bridges.json"):
        load_bridges(broken)


def test_open_bridges_refuses_another_dense_model(planted_folder: Path, tmp_path: Path) -> None:
    other = _planted_dense(_planted_sparse())
    with torch.no_grad():
        other.embed.weight[0, 0] = 0.5
    save_checkpoint(other, tmp_path / "other")
    with pytest.raises(InputError, match="is not the dense model these bridges were trained with"):
        open_bridges(planted_folder, dense=tmp_path / "other")
    with pytest.raises(InputError, match="pass its folder with --dense"):
        open_bridges(planted_folder, dense=tmp_path / "nowhere")


def test_steer_refuses_bad_requests(planted_folder: Path) -> None:
    models, pairs = open_bridges(planted_folder), _planted_pairs()
    node = "blocks.0.attn_out:0"
    with pytest.raises(InputError, match="exactly one edit value"):
        steer(models, node, pairs)
    with pytest.raises(InputError, match="exactly one edit value"):
        steer(models, node, pairs, to=1.0, toward_alt=True)
    with pytest.raises(InputError, match="positions must be one of"):
        steer(models, node, pairs, to=1.0, positions="first")
    with pytest.raises(InputError, match="channel 8 is outside the sparse residual"):
        steer(models, "blocks.0.attn_out:8", pairs, to=1.0)
    with pytest.raises(InputError, match="is not a bridge site"):
        steer(models, "blocks.3.hook_resid_pre:0", pairs, to=1.0)
    uneven = EncodedPair(Pair("3 +", "A", "3 4 -", "B"), (3, PLUS), ANSWER_A, (3, 4, MINUS), ANSWER_B)
    with pytest.raises(InputError, match="same length"):
        steer(models, node, [uneven], toward_alt=True)
    long = EncodedPair(Pair("x", "A", "y", "B"), (3,) * 20 + (PLUS,), ANSWER_A, (3,) * 20 + (MINUS,), ANSWER_B)
    with pytest.raises(InputError, match="context"):
        steer(models, node, [long], toward_alt=True)


def test_a_steering_record_reaches_the_circuit_report(planted_folder: Path, tmp_path: Path) -> None:
    """steer's record, kept in CIRCUIT/steering.json, shows beside its node in the report data
    (node ids in hook names, whichever spelling was steered); other nodes have none."""
    from sparsecircuits.bridges.steer import load_steering, record_steering, steering_summary
    from sparsecircuits.prune import PruneConfig, prune_pairs
    from sparsecircuits.report.data import build_report_data

    models = open_bridges(planted_folder)
    pairs = _planted_pairs()
    config = PruneConfig(method="attribution", minimal=False, ablation="zero", n_train_pairs=2, n_eval_pairs=2,
                         target_loss=1e-6, calibrate_steps=1)  # unreachable: the circuit keeps every node
    circuit_dir = tmp_path / "circuit"
    prune_pairs(models.sparse.model, pairs, pairs, config, progress=False).circuit.save(circuit_dir)
    result = {**steer(models, "blocks.0.attn_out:0", pairs, toward_alt=True, scales=[0, 1]), "task": "planted"}
    assert result["node_id"] == "blocks.0.hook_attn_out:0"
    record_steering(circuit_dir, result)
    record_steering(circuit_dir, result)  # the same node and task again replaces, never duplicates
    assert len(load_steering(circuit_dir)) == 1
    data = build_report_data(circuit_dir)
    by_id = {n["id"]: n for n in data["nodes"]}
    shown = by_id["blocks.0.hook_attn_out:0"]["steering"]
    assert shown == [steering_summary(result)]
    assert [a["scale"] for a in shown[0]["at"]] == [1.0] and shown[0]["at"][0]["p_alt"] > 0.8 > shown[0]["baseline_p_alt"]
    assert all(n["steering"] is None for i, n in by_id.items() if i != "blocks.0.hook_attn_out:0")


def test_steering_several_channels_of_one_site_together(planted_folder: Path) -> None:
    """Channels of one site move together: with the answer's channel among them the edit is
    the single channel's (the others do not differ between the prompts), the control moves
    as many random channels at the same norm, and channels of two sites are refused."""
    models = open_bridges(planted_folder)
    pairs = _planted_pairs()
    one = steer(models, "blocks.0.attn_out:0", pairs, toward_alt=True, scales=[1])
    two = steer(models, ["blocks.0.attn_out:0", "blocks.0.attn_out:3"], pairs, toward_alt=True, scales=[1],
                controls=3)
    assert two["channels"] == [0, 3] and two["node_ids"] == ["blocks.0.hook_attn_out:0", "blocks.0.hook_attn_out:3"]
    assert two["scales"][0]["dense"]["p_alt"] == pytest.approx(one["scales"][0]["dense"]["p_alt"], rel=1e-5)
    sets = two["scales"][0]["control"]["channels"]
    assert len(sets) == 3 and all(len(s) == 2 and not {0, 3} & set(s) for s in sets)
    assert len({c for s in sets for c in s}) == 6  # disjoint sets
    with pytest.raises(InputError, match="share one site"):
        steer(models, ["blocks.0.attn_out:0", "blocks.0.attn_in:0"], pairs, toward_alt=True)
