"""How well bridges join two models: per site and direction, the normalized MSE of the mapped
residual, and the KL to the dense model and the next-token loss of the hybrid pass, beside
the two models' own losses. The training objective (`bridges.train`) uses the same terms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sparsecircuits.bridges.model import Bridges, hybrid_logits, kl_to, nmse
from sparsecircuits.model import SparseTransformer

SITE_FIELDS = ("nmse_enc", "nmse_dec", "kl_dense_to_sparse", "kl_sparse_to_dense",
               "loss_dense_to_sparse", "loss_sparse_to_dense")


def next_token_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of logits [B, T, V] against targets [B, T]."""
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def site_activations(model: SparseTransformer, x: torch.Tensor, sites: Sequence[str], grad: bool = False
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's logits and its residual at every site (kept in the graph when `grad`)."""
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        logits, cache = model.run_with_cache(x, names_filter=list(sites), detach=not grad)
    return logits, {s: cache[s] for s in sites}


@torch.no_grad()
def batch_quality(dense: SparseTransformer, sparse: SparseTransformer, bridges: Bridges,
                  x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Every site's figures (SITE_FIELDS) and both models' losses on one batch."""
    dense_logits, dense_acts = site_activations(dense, x, bridges.sites)
    sparse_logits, sparse_acts = site_activations(sparse, x, bridges.sites)
    rows = []
    for i, site in enumerate(bridges.sites):
        encoded, decoded = bridges.encode(i, dense_acts[site]), bridges.decode(i, sparse_acts[site])
        to_sparse = hybrid_logits(sparse, x, site, encoded)
        to_dense = hybrid_logits(dense, x, site, decoded)
        rows.append({
            "site": site,
            "nmse_enc": float(nmse(encoded, sparse_acts[site])),
            "nmse_dec": float(nmse(decoded, dense_acts[site])),
            "kl_dense_to_sparse": float(kl_to(dense_logits, to_sparse)),
            "kl_sparse_to_dense": float(kl_to(dense_logits, to_dense)),
            "loss_dense_to_sparse": float(next_token_loss(to_sparse, y)),
            "loss_sparse_to_dense": float(next_token_loss(to_dense, y)),
        })
    return {
        "sites": rows,
        "dense_loss": float(next_token_loss(dense_logits, y)),
        "sparse_loss": float(next_token_loss(sparse_logits, y)),
        "kl_sparse_to_dense_models": float(kl_to(dense_logits, sparse_logits)),
    }


def bridge_quality(dense: SparseTransformer, sparse: SparseTransformer, bridges: Bridges,
                   batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """`batch_quality` averaged over batches, with the mean over sites of each field."""
    results = [batch_quality(dense, sparse, bridges, x, y) for x, y in batches]
    if not results:
        raise ValueError("bridge_quality needs at least one batch")
    n = len(results)
    sites = [
        {"site": row["site"], **{f: sum(r["sites"][i][f] for r in results) / n for f in SITE_FIELDS}}
        for i, row in enumerate(results[0]["sites"])
    ]
    models = {k: sum(r[k] for r in results) / n for k in ("dense_loss", "sparse_loss", "kl_sparse_to_dense_models")}
    mean = {f: sum(s[f] for s in sites) / len(sites) for f in SITE_FIELDS}
    return {"sites": sites, "mean": mean, **models, "batches": n}


def quality_markdown(quality: dict[str, Any]) -> str:
    """The quality record as a Markdown table (one row per site, then the mean)."""
    lines = [
        f"dense model loss {quality['dense_loss']:.4f}, sparse model loss {quality['sparse_loss']:.4f}, "
        f"KL(dense || sparse) {quality['kl_sparse_to_dense_models']:.4f} nats "
        f"({quality['batches']} validation batches)",
        "",
        "| site | NMSE dense→sparse | NMSE sparse→dense | KL d→s hybrid | KL s→d hybrid "
        "| loss d→s hybrid | loss s→d hybrid |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in [*quality["sites"], {"site": "mean", **quality["mean"]}]:
        lines.append(f"| {row['site']} | " + " | ".join(f"{row[f]:.4f}" for f in SITE_FIELDS) + " |")
    return "\n".join(lines) + "\n"
