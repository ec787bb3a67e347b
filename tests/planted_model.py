"""A tiny hand-set model with a planted circuit, and the synthetic task it solves.

Task (`MarkerTask`): prompts `[marker, f1..f6, END]` with fillers f in 6..9; marker 1
expects answer X (4), marker 2 expects answer Y (5). The last token is the same in both
prompts of a pair, so the answer must be read from position 0.

Planted circuit (7 nodes, layer 0): the embedding writes the marker's sign on residual
channel 0, "is a marker" on channel 3 and "is END" on channel 1. Head 0 queries with
channel 1 and keys with channel 3, so END attends to the marker; its value channel 0
copies the sign, and the output projection writes it to residual channel 4, which the
unembedding reads as X minus Y. Nodes: attn_in {0, 1, 3}, q {0}, k {0}, v {0},
attn_out {4}. Fillers also carry a sign on channel 0, so without the query or the key
(uniform attention) the copied sign is noise: every planted node is needed. A decoy head (head 1) and a decoy MLP neuron read the fillers and write
channels 5 and 6, which no answer logit reads.
"""

from __future__ import annotations

import random

import torch

from sparsecircuits.checkpoint import model_fingerprint
from sparsecircuits.circuits import Circuit, compute_edges
from sparsecircuits.model import LOCATIONS, ModelConfig, SparseTransformer, get_location
from sparsecircuits.prune import PruneConfig
from sparsecircuits.tasks import EncodedPair, Pair, Task, pair_split

MARKER_A, MARKER_B, END, ANSWER_X, ANSWER_Y = 1, 2, 3, 4, 5
FILLERS = (6, 7, 8, 9)
N_FILLERS = 6

PLANTED_NODES = {
    "attn_in": [0, 1, 3],
    "attn_q": [0],
    "attn_k": [0],
    "attn_v": [0],
    "attn_out": [4],
}


class MarkerTask(Task):
    """The planted model's task; ignores the tokenizer (pairs are token ids)."""

    def __init__(self, name: str = "planted_marker") -> None:
        super().__init__(name=name, description="answer X after marker 1, Y after marker 2", source="python")

    def generate(self, tokenizer, n: int, seed: int = 0, split: str = "train") -> list[EncodedPair]:
        rng = random.Random(f"{self.name}|{seed}|{split}")
        out, seen = [], set()
        while len(out) < n:
            fill = tuple(rng.choice(FILLERS) for _ in range(N_FILLERS))
            a, b = (MARKER_A, *fill, END), (MARKER_B, *fill, END)
            pair = Pair(prompt=" ".join(map(str, a)), target="X", alt_prompt=" ".join(map(str, b)), alt="Y")
            if fill in seen or (split != "all" and pair_split(pair) != split):
                continue
            seen.add(fill)
            out.append(EncodedPair(pair, a, ANSWER_X, b, ANSWER_Y))
        return out


def planted_config() -> ModelConfig:
    """One layer, d_model 8, two heads of 4 channels, 8 neurons, vocabulary 10, no biases."""
    return ModelConfig(
        n_layer=1, d_model=8, n_head=2, d_head=4, d_mlp=8, vocab_size=10, n_ctx=16,
        bias=False, activation="relu",
    )


@torch.no_grad()
def planted_model() -> SparseTransformer:
    """The hand-set model (every other weight zero)."""
    model = SparseTransformer(planted_config())
    for p in model.parameters():
        if p.dim() > 1:
            p.zero_()
    emb = model.embed.weight
    emb[:, 7] = 1.0  # a constant channel, so that no residual is all zero
    emb[MARKER_A, 0], emb[MARKER_B, 0] = 1.0, -1.0
    emb[MARKER_A, 3] = emb[MARKER_B, 3] = 1.0
    emb[END, 1] = 1.0
    for i, f in enumerate(FILLERS):
        emb[f, 2] = 1.0
        emb[f, 0] = 1.0 if i < 2 else -1.0  # a sign like the marker's: attending to all is noise
        emb[f, 5] = 0.5 * (i - 1.5)  # filler identity, read by the decoys
    block = model.blocks[0]
    w = block.attn.c_attn.weight  # rows: q (8), k (8), v (8); columns: attn_in channels
    w[0, 1] = 4.0  # q head 0 ch 0 <- END
    w[8, 3] = 4.0  # k head 0 ch 0 <- marker
    w[16, 0] = 1.0  # v head 0 ch 0 <- marker sign
    block.attn.c_proj.weight[4, 0] = 1.0  # residual ch 4 <- v head 0 ch 0
    w[4, 2], w[12, 2], w[20, 5] = 1.0, 1.0, 1.0  # decoy head 1 reads the fillers
    block.attn.c_proj.weight[5, 4] = 1.0  # ... and writes channel 5
    block.mlp.c_fc.weight[0, 5] = 1.0  # decoy neuron reads filler identity
    block.mlp.c_proj.weight[6, 0] = 1.0  # ... and writes channel 6
    model.unembed.weight[ANSWER_X, 4] = 3.0
    model.unembed.weight[ANSWER_Y, 4] = -3.0
    return model.eval()


def circuit_from_nodes(
    model: SparseTransformer,
    nodes_by_alias: dict[str, list[int]],
    task: Task,
    config: PruneConfig,
    path: str = "",
) -> Circuit:
    """A Circuit (as pruning would write it) keeping the given nodes of layer 0.

    Locations in `config.locations` keep only the listed nodes; the others keep all.
    """
    nodes = {}
    for alias in LOCATIONS:
        hook = get_location(alias).hook_name(0)
        width = model.cfg.location_width(alias)
        nodes[hook] = sorted(nodes_by_alias.get(alias, [])) if alias in config.locations else list(range(width))
    return Circuit(
        model={"path": path, "fingerprint": model_fingerprint(model)},
        task={"name": task.name, "source": task.source, "params": dict(task.params)},
        ablation=config.ablation,
        target_loss=config.target_loss,
        nodes=nodes,
        edges=compute_edges(model, nodes),
        losses={},
        seed=config.seed,
        pruning=config.to_dict(),
    )
