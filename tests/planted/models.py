"""A family of hand-built models with planted circuits, built the way a skeptic would build
them (issue 21): 1 and 2 layers; attention whose q and k only work together; two-hop
circuits (a layer-0 head's output read by a layer-1 key, or query); an MLP AND of two
features; saturated (full-model loss < 0.01) and unsaturated losses; distractor heads,
neurons and channels that read the circuit's inputs; zero, mean and task-mean ablation.

Every model's planted node set is necessary and sufficient under its own ablation, and its
planted edges are exactly `compute_edges(model, nodes)` (tests/test_planted_family.py).
Distractor weights are drawn from the builder's seed; the planted circuit does not depend on
it. Residual channel 15 is a constant 1 in every embedding, so that no residual is all zero.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from sparsecircuits.circuits.ids import node_id
from sparsecircuits.model import SparseTransformer

from .tasks import Draw, TokenTask
from .wiring import Wiring, config, hook, mean_data

CONST = 15


@dataclass
class Planted:
    """One planted model: its task, planted nodes (hook -> indices) and edges ((src, dst)
    node ids), the ablation it is pruned with, and what it is meant to test.

    `data` is the "pretraining" token batch the `mean` ablation averages over (None for
    other ablations); `saturated` claims a full-model task loss below 0.01; `and_pairs`
    lists (q node, k node) ids that only work together: with either one ablated, keeping
    the other does not help; `alternative` is a larger circuit that also meets the target
    and is 1-minimal (a trap for greedy and minimality passes), or empty.
    """

    name: str
    model: SparseTransformer
    task: TokenTask
    nodes: dict[str, list[int]]
    edges: set[tuple[str, str]]
    ablation: str
    description: str
    data: torch.Tensor | None = None
    saturated: bool = False
    and_pairs: tuple[tuple[str, str], ...] = ()
    alternative: frozenset[str] = frozenset()

    def node_ids(self) -> set[str]:
        """Every planted node id "HOOK:INDEX"."""
        return {node_id(h, i) for h, idx in self.nodes.items() for i in idx}


def _planted(w: Wiring, task: TokenTask, ablation: str, description: str, **extra: object) -> Planted:
    return Planted(
        name=task.name, model=w.model.eval(), task=task, nodes=w.planted_nodes(), edges=w.edges,
        ablation=ablation, description=description, **extra,
    )


# --- the marker task: [marker, 6 fillers, END]; marker A -> X, marker B -> Y -------------

MARK_A, MARK_B, END, X, Y = 1, 2, 3, 4, 5
FILLERS = (6, 7, 8, 9, 10, 11)  # the first three carry sign +1, the others -1
# residual channels of the marker models
SIGN, IS_END, IS_FILLER, IS_MARKER, ANSWER, FILLER_ID = range(6)


def _draw_marker(rng: random.Random) -> Draw:
    fill = tuple(rng.choice(FILLERS) for _ in range(6))
    return (MARK_A, *fill, END), X, (MARK_B, *fill, END), Y


def marker_task(name: str) -> TokenTask:
    """Answer X after marker A, Y after marker B; the fillers between carry random signs."""
    return TokenTask(name=name, description="X after marker A, Y after marker B", source="python",
                     draw=_draw_marker)


def _marker_embed(w: Wiring) -> None:
    """Markers: sign and "is a marker"; END: "is END"; fillers: a sign like the marker's
    (so attending to everything is noise), "is a filler" and an identity channel."""
    w.constant(CONST)
    w.embed(MARK_A, {SIGN: 1.0, IS_MARKER: 1.0})
    w.embed(MARK_B, {SIGN: -1.0, IS_MARKER: 1.0})
    w.embed(END, {IS_END: 1.0})
    for i, f in enumerate(FILLERS):
        w.embed(f, {SIGN: 1.0 if i < 3 else -1.0, IS_FILLER: 1.0, FILLER_ID: 0.4 * (i - 2.5)})


def _marker_circuit(w: Wiring, scale: float) -> tuple[tuple[str, str], ...]:
    """Head 0: END queries (q0 <- IS_END), markers answer (k0 <- IS_MARKER), v0 copies the
    sign to ANSWER, which the unembedding reads with +-`scale`. Returns the (q, k) pair."""
    w.q(0, 0, IS_END, 4.0, planted=True)
    w.k(0, 0, IS_MARKER, 4.0, planted=True)
    w.v(0, 0, SIGN, 1.0, planted=True)
    w.proj(0, ANSWER, 0, 1.0, planted=True)
    w.unembed(X, ANSWER, scale)
    w.unembed(Y, ANSWER, -scale)
    return ((node_id(hook(0, "attn_q"), 0), node_id(hook(0, "attn_k"), 0)),)


def _marker_mlp_decoys(w: Wiring, dead: tuple[int, int]) -> None:
    """Neurons that read the circuit's inputs and its output, and write dead channels."""
    w.fc(0, 0, SIGN, w.random())
    w.fc(0, 0, IS_MARKER, w.random())
    w.mlp_proj(0, dead[0], 0, w.random())
    w.fc(0, 1, ANSWER, w.random())
    w.mlp_proj(0, dead[1], 1, w.random())
    w.fc(0, 2, IS_END, w.random())
    w.fc(0, 2, FILLER_ID, w.random())
    w.mlp_proj(0, dead[0], 2, w.random())


def qk_and_saturated(seed: int = 0) -> Planted:
    """The AND-structured attention circuit with a saturated loss, zero ablation (the case
    that collapsed mask pruning): head 1 is its twin (same q, k and v inputs) writing a
    channel nothing reads."""
    w = Wiring(config(1), seed)
    _marker_embed(w)
    and_pairs = _marker_circuit(w, scale=6.0)
    w.q(0, 4, IS_END, w.random(2.0, 4.0))
    w.k(0, 4, IS_MARKER, w.random(2.0, 4.0))
    w.v(0, 4, SIGN, w.random())
    w.proj(0, 6, 4, w.random())
    w.v(0, 5, FILLER_ID, w.random())
    w.proj(0, 7, 5, w.random())
    _marker_mlp_decoys(w, (8, 9))
    return _planted(w, marker_task("qk_and_saturated"), "zero",
                    "1 layer, zero ablation, saturated; q and k only work together; "
                    "a twin head (same q, k, v inputs) writes a dead channel",
                    saturated=True, and_pairs=and_pairs)


def qk_and_unsaturated(seed: int = 0) -> Planted:
    """The same circuit, unsaturated, mean ablation: head 1 (END queries the fillers) adds
    their average sign to ANSWER, noise that keeps the full model's loss at ~0.1 (below the
    target: the circuit without it is better than the full model)."""
    w = Wiring(config(1), seed)
    _marker_embed(w)
    and_pairs = _marker_circuit(w, scale=0.7)
    w.q(0, 4, IS_END, 3.0)
    w.k(0, 4, IS_FILLER, 3.0)
    w.v(0, 4, SIGN, 1.0)
    w.proj(0, ANSWER, 4, 0.6)
    _marker_mlp_decoys(w, (8, 9))
    data = mean_data((MARK_A, MARK_B, X, Y, *FILLERS), 12, seed)
    return _planted(w, marker_task("qk_and_unsaturated"), "mean",
                    "1 layer, mean ablation, unsaturated; q and k only work together; "
                    "a head copying the fillers' signs adds noise to the answer",
                    data=data, and_pairs=and_pairs)


def shared_inputs(seed: int = 0) -> Planted:
    """The marker circuit among distractors that read exactly its inputs, mean ablation,
    saturated: head 0's second channel leans towards the fillers and its v also writes a
    dead channel; head 1 is a twin; head 2 copies the fillers' signs; four decoy neurons."""
    w = Wiring(config(1, n_head=3), seed)
    _marker_embed(w)
    and_pairs = _marker_circuit(w, scale=6.0)
    w.proj(0, 6, 0, w.random())  # v0 also writes a dead channel
    w.q(0, 1, IS_END, w.random(0.5, 1.0))
    w.k(0, 1, IS_FILLER, w.random(0.5, 1.0))
    w.v(0, 1, FILLER_ID, w.random())
    w.proj(0, 7, 1, w.random())
    w.q(0, 4, IS_END, w.random(2.0, 4.0))
    w.k(0, 4, IS_MARKER, w.random(2.0, 4.0))
    w.v(0, 4, SIGN, w.random())
    w.proj(0, 8, 4, w.random())
    w.q(0, 8, IS_END, w.random(2.0, 4.0))
    w.k(0, 8, IS_FILLER, w.random(2.0, 4.0))
    w.v(0, 8, SIGN, w.random())
    w.proj(0, 9, 8, w.random())
    _marker_mlp_decoys(w, (10, 11))
    w.fc(0, 3, FILLER_ID, w.random())
    w.fc(0, 3, SIGN, w.random())
    w.mlp_proj(0, 12, 3, w.random())
    data = mean_data((MARK_A, MARK_B, X, Y, *FILLERS), 12, seed)
    return _planted(w, marker_task("shared_inputs"), "mean",
                    "1 layer, 3 heads, mean ablation, saturated; a twin head, a filler head, a stray "
                    "channel in the circuit's head and 4 neurons read the circuit's inputs",
                    data=data, saturated=True, and_pairs=and_pairs)



def backup_head(seed: int = 0) -> Planted:
    """The marker circuit plus a backup head that does the same job with two nodes more (its
    attention score is split over two q/k channel pairs, each too weak alone), zero
    ablation, saturated with both heads: each head alone meets the target, so the smallest
    circuit is head 0's 7 nodes, while the backup's 9 are a second 1-minimal circuit that a
    greedy or minimality pass can end in."""
    w = Wiring(config(1), seed)
    _marker_embed(w)
    and_pairs = _marker_circuit(w, scale=BACKUP_SCALE)
    for index in (4, 5):
        w.q(0, index, IS_END, BACKUP_QK)
        w.k(0, index, IS_MARKER, BACKUP_QK)
    w.v(0, 4, SIGN, 1.0)
    w.proj(0, ANSWER, 4, 1.0)
    _marker_mlp_decoys(w, (8, 9))
    backup = [(hook(0, "attn_in"), c) for c in (SIGN, IS_END, IS_MARKER)] + [(hook(0, "attn_out"), ANSWER)]
    backup += [(hook(0, a), i) for a, i in (("attn_q", 4), ("attn_q", 5), ("attn_k", 4), ("attn_k", 5), ("attn_v", 4))]
    return _planted(w, marker_task("backup_head"), "zero",
                    "1 layer, zero ablation, saturated; a backup head (two nodes more) does the same "
                    "job; the smallest circuit is the main head",
                    saturated=True, and_pairs=and_pairs,
                    alternative=frozenset(node_id(h, i) for h, i in backup))


BACKUP_SCALE = 3.0
BACKUP_QK = 0.55  # each q/k pair adds ~1 to the score: both give attention ~0.5 on the marker, one ~0.3

# --- two hops through a key: the value token after the trigger decides ------------------

TRIG, VAL_P, VAL_M, END2, X2, Y2 = 1, 2, 3, 4, 5, 6
FILLERS2 = (7, 8, 9, 10, 11, 12)
K_SIGN, IS_VAL, IS_TRIG, K_IS_END, AFTER, K_ANSWER, K_IS_FILLER = range(7)


def _draw_two_hop_key(rng: random.Random) -> Draw:
    t = rng.randrange(2, 7)
    v1, v2 = rng.randrange(0, t), rng.randrange(t + 1, 9)
    slots = [rng.choice(FILLERS2) for _ in range(9)]
    slots[t], slots[v1] = TRIG, rng.choice((VAL_P, VAL_M))
    a, b = list(slots), list(slots)
    a[v2], b[v2] = VAL_P, VAL_M
    return (*a, END2), X2, (*b, END2), Y2


def two_hop_key(seed: int = 0) -> Planted:
    """2 layers, zero ablation, saturated. Prompts hold two signed value tokens, one before
    and one after a trigger, among signed fillers; the answer is the later value's sign.
    Layer 0, head 0: value tokens query the trigger (q <- IS_VAL, k <- IS_TRIG) and copy
    "saw the trigger" to AFTER (v <- IS_TRIG). Layer 1, head 0: END queries, keys read
    AFTER (the first hop's output), v copies the sign to ANSWER. Distractor heads share
    the queries (layer 0: values query the fillers; layer 1: END queries both values)."""
    w = Wiring(config(2), seed)
    w.constant(CONST)
    w.embed(TRIG, {IS_TRIG: 1.0})
    w.embed(VAL_P, {K_SIGN: 1.0, IS_VAL: 1.0})
    w.embed(VAL_M, {K_SIGN: -1.0, IS_VAL: 1.0})
    w.embed(END2, {K_IS_END: 1.0})
    for i, f in enumerate(FILLERS2):
        w.embed(f, {K_SIGN: 1.0 if i < 3 else -1.0, K_IS_FILLER: 1.0})
    w.q(0, 0, IS_VAL, 4.0, planted=True)
    w.k(0, 0, IS_TRIG, 4.0, planted=True)
    w.v(0, 0, IS_TRIG, 1.0, planted=True)
    w.proj(0, AFTER, 0, 1.0, planted=True)
    w.q(1, 0, K_IS_END, 4.0, planted=True)
    w.k(1, 0, AFTER, 4.0, planted=True)
    w.v(1, 0, K_SIGN, 1.0, planted=True)
    w.proj(1, K_ANSWER, 0, 1.0, planted=True)
    w.unembed(X2, K_ANSWER, 10.0)
    w.unembed(Y2, K_ANSWER, -10.0)
    _two_hop_key_decoys(w)
    task = TokenTask(name="two_hop_key", description="the sign of the value after the trigger",
                     source="python", draw=_draw_two_hop_key)
    and_pairs = tuple((node_id(hook(layer, "attn_q"), 0), node_id(hook(layer, "attn_k"), 0)) for layer in (0, 1))
    return _planted(w, task, "zero",
                    "2 layers, zero ablation, saturated; a layer-0 head's output is a layer-1 key; "
                    "both heads AND-structured",
                    saturated=True, and_pairs=and_pairs)


def _two_hop_key_decoys(w: Wiring) -> None:
    """Heads sharing the circuit's queries and values, neurons reading AFTER and the signs."""
    w.q(0, 4, IS_VAL, w.random(2.0, 4.0))
    w.k(0, 4, K_IS_FILLER, w.random(2.0, 4.0))
    w.v(0, 4, K_SIGN, w.random())
    w.proj(0, 7, 4, w.random())
    w.q(1, 4, K_IS_END, w.random(2.0, 4.0))
    w.k(1, 4, IS_VAL, w.random(2.0, 4.0))
    w.v(1, 4, K_SIGN, w.random())
    w.proj(1, 8, 4, w.random())
    w.fc(0, 0, AFTER, w.random())
    w.mlp_proj(0, 9, 0, w.random())
    w.fc(0, 1, K_SIGN, w.random())
    w.fc(0, 1, IS_VAL, w.random())
    w.mlp_proj(0, 10, 1, w.random())
    w.fc(1, 0, K_ANSWER, w.random())
    w.mlp_proj(1, 11, 0, w.random())
    w.fc(1, 1, K_SIGN, w.random())
    w.mlp_proj(1, 9, 1, w.random())


# --- two hops through a query: the colour picks which tagged value to read ----------------

RED, BLUE, END3, X3, Y3 = 1, 2, 3, 4, 5
RV_P, RV_M, BV_P, BV_M = 6, 7, 8, 9
FILLERS3 = (10, 11, 12, 13)
COLOUR, TAG, VSIGN, Q_IS_END, POOLED, Q_ANSWER, IS_VALUE = range(7)


def _draw_two_hop_query(rng: random.Random) -> Draw:
    s = rng.choice((1, -1))
    body = [RV_P if s > 0 else RV_M, BV_M if s > 0 else BV_P] + [rng.choice(FILLERS3) for _ in range(4)]
    rng.shuffle(body)
    red, blue = (X3, Y3) if s > 0 else (Y3, X3)
    return (RED, *body, END3), red, (BLUE, *body, END3), blue


def two_hop_query(seed: int = 0) -> Planted:
    """2 layers, task-mean ablation. Prompts: a colour (red or blue), a red-tagged and a
    blue-tagged value of opposite signs among signed fillers, END; the answer is the sign of
    the value tagged with the colour. Layer 0, head 0 pools the colour (uniform attention,
    v <- COLOUR) into POOLED; layer 1, head 0 queries with POOLED (the first hop's output),
    keys with the tag and copies the value's sign to ANSWER."""
    w = Wiring(config(2), seed)
    w.constant(CONST)
    w.embed(RED, {COLOUR: 1.0})
    w.embed(BLUE, {COLOUR: -1.0})
    w.embed(END3, {Q_IS_END: 1.0})
    for tok, tag, sign in ((RV_P, 1, 1), (RV_M, 1, -1), (BV_P, -1, 1), (BV_M, -1, -1)):
        w.embed(tok, {TAG: float(tag), VSIGN: float(sign), IS_VALUE: 1.0})
    for i, f in enumerate(FILLERS3):
        w.embed(f, {VSIGN: 1.0 if i < 2 else -1.0})
    w.v(0, 0, COLOUR, 1.0, planted=True)
    w.proj(0, POOLED, 0, 4.0, planted=True)
    w.q(1, 0, POOLED, 4.0, planted=True)
    w.k(1, 0, TAG, 4.0, planted=True)
    w.v(1, 0, VSIGN, 1.0, planted=True)
    w.proj(1, Q_ANSWER, 0, 1.0, planted=True)
    w.unembed(X3, Q_ANSWER, 1.2)
    w.unembed(Y3, Q_ANSWER, -1.2)
    _two_hop_query_decoys(w)
    task = TokenTask(name="two_hop_query", description="the sign of the value tagged with the colour",
                     source="python", draw=_draw_two_hop_query)
    and_pairs = ((node_id(hook(1, "attn_q"), 0), node_id(hook(1, "attn_k"), 0)),)
    return _planted(w, task, "task_mean",
                    "2 layers, task-mean ablation, unsaturated; a layer-0 pooling head's output "
                    "is a layer-1 query",
                    and_pairs=and_pairs)


def _two_hop_query_decoys(w: Wiring) -> None:
    """A head reading the values, a head sharing the circuit's query, decoy neurons."""
    w.q(0, 4, Q_IS_END, w.random(2.0, 4.0))
    w.k(0, 4, IS_VALUE, w.random(2.0, 4.0))
    w.v(0, 4, VSIGN, w.random())
    w.proj(0, 7, 4, w.random())
    w.q(1, 4, POOLED, w.random(2.0, 4.0))
    w.k(1, 4, IS_VALUE, w.random(2.0, 4.0))
    w.v(1, 4, TAG, w.random())
    w.proj(1, 8, 4, w.random())
    w.fc(0, 0, COLOUR, w.random())
    w.mlp_proj(0, 9, 0, w.random())
    w.fc(1, 0, Q_ANSWER, w.random())
    w.mlp_proj(1, 10, 0, w.random())
    w.fc(1, 1, VSIGN, w.random())
    w.fc(1, 1, TAG, w.random())
    w.mlp_proj(1, 11, 1, w.random())


# --- an MLP AND: X only when both P and Q occur ------------------------------------------

P, Q, P_LIKE, Q_LIKE, END4, X4, Y4 = 1, 2, 3, 4, 5, 6, 7
FILLERS4 = (8, 9, 10, 11)
IS_P, IS_Q, LETTER, POOL_P, POOL_Q, M_ANSWER, POOL_LETTER, M_IS_END = range(8)
# neuron 0 = relu(POOL_P + POOL_Q - THRESHOLD * CONST): pooled P or Q alone is ~2.1 against a
# CONST of ~1.8 at mlp_in, both ~3.9 against ~1.7; the unembedding subtracts OFFSET * CONST
MLP_AND_THRESHOLD = 1.7
MLP_AND_OFFSET = 2.0


def _draw_mlp_and(rng: random.Random) -> Draw:
    slots = [rng.choice(FILLERS4) for _ in range(7)]
    i, j = rng.sample(range(7), 2)
    slots[i], slots[j] = P, Q
    b = list(slots)
    if rng.random() < 0.5:
        b[i] = P_LIKE
    else:
        b[j] = Q_LIKE
    return (*slots, END4), X4, (*b, END4), Y4


def mlp_and(seed: int = 0) -> Planted:
    """1 layer, zero ablation. X when both P and Q occur, Y when one is replaced by a
    look-alike (which shares P's and Q's LETTER channel). Head 0 pools IS_P and IS_Q
    (uniform attention) into POOL_P and POOL_Q; neuron 0 = relu(POOL_P + POOL_Q - CONST)
    fires only when both are present and writes ANSWER; the unembedding reads ANSWER
    against the constant channel. Decoys: a head pooling LETTER, neurons reading the same
    pooled channels as ORs or single features."""
    w = Wiring(config(1), seed)
    w.constant(CONST)
    w.embed(P, {IS_P: 1.0, LETTER: 1.0})
    w.embed(Q, {IS_Q: 1.0, LETTER: 1.0})
    w.embed(P_LIKE, {LETTER: 1.0})
    w.embed(Q_LIKE, {LETTER: 1.0})
    w.embed(END4, {M_IS_END: 1.0})
    w.v(0, 0, IS_P, 1.0, planted=True)
    w.v(0, 1, IS_Q, 1.0, planted=True)
    w.proj(0, POOL_P, 0, 4.0, planted=True)
    w.proj(0, POOL_Q, 1, 4.0, planted=True)
    w.fc(0, 0, POOL_P, 1.0, planted=True)
    w.fc(0, 0, POOL_Q, 1.0, planted=True)
    w.fc(0, 0, CONST, -MLP_AND_THRESHOLD, planted=True)
    w.mlp_proj(0, M_ANSWER, 0, 1.0, planted=True)
    w.unembed(X4, M_ANSWER, 4.0)
    w.unembed(Y4, M_ANSWER, -4.0)
    w.unembed(X4, CONST, -MLP_AND_OFFSET)
    w.unembed(Y4, CONST, MLP_AND_OFFSET)
    _mlp_and_decoys(w)
    task = TokenTask(name="mlp_and", description="X when both P and Q occur", source="python",
                     draw=_draw_mlp_and)
    return _planted(w, task, "zero",
                    "1 layer, zero ablation, unsaturated; an MLP neuron ANDs two pooled features; "
                    "OR and single-feature decoy neurons")


def _mlp_and_decoys(w: Wiring) -> None:
    """A head pooling LETTER; neurons: P alone, an OR of P and Q, LETTER, Q alone."""
    w.q(0, 4, M_IS_END, w.random(2.0, 4.0))
    w.k(0, 4, LETTER, w.random(2.0, 4.0))
    w.v(0, 4, LETTER, w.random())
    w.proj(0, POOL_LETTER, 4, w.random(0.25, 0.5))  # small: it rescales the MLP input
    w.fc(0, 1, POOL_P, w.random())
    w.mlp_proj(0, 8, 1, w.random())
    w.fc(0, 2, POOL_P, 1.0)
    w.fc(0, 2, POOL_Q, 1.0)
    w.fc(0, 2, CONST, -0.5 * MLP_AND_THRESHOLD)
    w.mlp_proj(0, 9, 2, w.random())
    w.fc(0, 3, POOL_LETTER, w.random())
    w.mlp_proj(0, 10, 3, w.random())
    w.fc(0, 4, POOL_Q, w.random())
    w.fc(0, 4, CONST, -w.random(0.1, 0.3))
    w.mlp_proj(0, 11, 4, w.random())
