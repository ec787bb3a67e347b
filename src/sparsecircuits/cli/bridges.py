"""`sparsecircuits bridges train|quality` and `sparsecircuits steer` (docs/bridges.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sparsecircuits.atomic import atomic_write_text, check_writable_parent
from sparsecircuits.cli.common import (
    add_command,
    add_group,
    add_task,
    count,
    finite_float,
    model_path,
    positive_int,
)
from sparsecircuits.errors import InputError

# Training settings of a bridges run over a finished (frozen) sparse model; `FIELD=VALUE`
# overrides change them, and `--sparse-config` takes its preset's own train table instead.
BRIDGE_TRAIN = {
    "steps": 2000, "batch_size": 16, "lr": 3e-3, "warmup_frac": 0.02, "target_density": None,
    "eval_every": 250, "eval_batches": 4, "log_every": 20, "checkpoint_every": 250,
}

TRAIN_HELP = """\
Train bridges between a dense model and a weight-sparse one: at every residual site
(before each attention and MLP sublayer, and after the last block) an encoder
(dense -> sparse: linear + AbsTopK) and a decoder (sparse -> dense: linear). The loss is
the normalized MSE of the mapped residuals in both directions plus the KL to the dense
model of hybrid passes (run one model to a site, map across, finish in the other), and,
when the sparse model trains jointly, its own next-token loss. The dense model is frozen.
With --sparse RUN the sparse model is frozen too (bridges only); with --sparse-config it is
trained from scratch with its L0 projection. OUT is a training run: --resume, Ctrl-C,
torchrun and metrics.jsonl work as for `train`, and at the end OUT is the sparse model's
checkpoint with bridges.safetensors and bridges.json beside it.
"""


def _bridge_config(args: argparse.Namespace) -> Any:
    from sparsecircuits.bridges import BridgeConfig

    return BridgeConfig(nmse_coef=args.nmse_coef, kl_coef=args.kl_coef, lm_coef=args.lm_coef,
                        sites_per_step=args.sites_per_step, encoder_afrac=args.encoder_afrac, init=args.init)


def _run_config(args: argparse.Namespace, sparse: Any) -> Any:
    """The run config: the frozen sparse model's shape with BRIDGE_TRAIN, or the preset."""
    from sparsecircuits.train.config import RunConfig, TrainConfig, apply_overrides, load_run_config

    if sparse is None:
        return load_run_config(args.sparse_config, args.overrides)
    bad = [o for o in args.overrides if o.strip().startswith("model.")]
    if bad:
        raise InputError(f"{bad[0]}: the model is the finished sparse run {args.sparse}; only train.* settings "
                         "change a bridges run over it")
    return apply_overrides(RunConfig(model=sparse.model.cfg, train=TrainConfig(**BRIDGE_TRAIN)), args.overrides)


def _data_dir(args: argparse.Namespace, dense: Any) -> Path:
    if args.data is not None:
        return Path(args.data)
    corpus = dense.corpus
    if corpus is None:
        raise InputError(f"--data is required: the corpus {args.dense} trained on is not found")
    return Path(corpus)


def _train(args: argparse.Namespace) -> int:
    from sparsecircuits.bridges import BridgeSpec, train_bridges
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.train import TrainingInterrupted

    if (args.sparse is None) == (args.sparse_config is None):
        raise InputError("give exactly one of --sparse RUN (a finished sparse model, kept frozen) and "
                         "--sparse-config PRESET|FILE (a sparse model trained jointly from scratch)")
    out = Path(args.out)
    check_writable_parent(out, "--out")
    config = _bridge_config(args)
    dense = load_checkpoint(model_path(args.dense))
    sparse = load_checkpoint(model_path(args.sparse)) if args.sparse is not None else None
    run = _run_config(args, sparse)
    try:
        result = train_bridges(run, BridgeSpec(dense, sparse, config), _data_dir(args, dense), out,
                               resume=args.resume, progress=not args.no_progress)
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":
            print(f"sparsecircuits bridges train: {exc}; continue with the same command and --resume", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":
        return 0
    from sparsecircuits.bridges import quality_markdown

    print(quality_markdown(result.training["bridges"]["quality"]), end="")
    print(f"trained bridges for {result.steps} steps ({result.seconds:.0f} s); bridges folder: {result.out_dir}")
    return 0


def _quality(args: argparse.Namespace) -> int:
    import numpy as np

    from sparsecircuits.bridges import bridge_quality, open_bridges, quality_markdown
    from sparsecircuits.data.shards import TokenShards, sample_batch

    models = open_bridges(args.dir, dense=args.dense)
    corpus = Path(args.data) if args.data is not None else models.sparse.corpus
    if corpus is None:
        raise InputError(f"--data is required: the corpus {args.dir} trained on is not found")
    shards = TokenShards.open(corpus)
    n_ctx = min(models.sparse.model.cfg.n_ctx, models.dense.model.cfg.n_ctx)
    rng = np.random.default_rng([args.seed, 1])
    batches = [sample_batch(shards.val, args.batch_size, n_ctx, rng) for _ in range(args.batches)]
    quality = bridge_quality(models.dense.model, models.sparse.model, models.bridges, batches)
    print(quality_markdown(quality), end="")
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(quality, indent=2) + "\n")
        print(f"written to {args.out}")
    return 0


def _steer(args: argparse.Namespace) -> int:
    from sparsecircuits.bridges import open_bridges, steer, steering_markdown
    from sparsecircuits.bridges.steer import DEFAULT_SCALES, channel_value, residual_channel
    from sparsecircuits.cli.common import resolve_task

    if (args.to is not None) + (args.from_prompts is not None) + bool(args.toward_alt) != 1:
        raise InputError("give exactly one edit value: --to VALUE, --from-prompts FILE or --toward-alt")
    if args.out:
        check_writable_parent(Path(args.out), "--out")
    models = open_bridges(args.bridges, dense=args.dense)
    tokenizer = models.sparse.tokenizer
    task = resolve_task(args.task)
    pairs = task.generate(tokenizer, args.pairs, seed=args.seed, split="test")
    circuit = _circuit(args, models)
    if args.node == "best":
        args.node = _best_node(args, models, circuit, task)
    nodes = [n.strip() for n in args.node.split(",") if n.strip()]
    to = args.to
    if args.from_prompts is not None:
        if len(nodes) != 1:
            raise InputError("--from-prompts sets one channel: name one --node")
        site, channel = residual_channel(nodes[0], models.sparse.model)
        source = resolve_task(args.from_prompts).generate(tokenizer, args.pairs, seed=args.seed, split="test")
        to = channel_value(models.sparse.model, site, channel, source, args.positions)
    result = steer(models, nodes, pairs, to=to, toward_alt=args.toward_alt, scales=args.scale or DEFAULT_SCALES,
                   positions=args.positions, controls=args.controls, seed=args.seed, task_name=args.task)
    result["task"] = args.task
    print(steering_markdown(result), end="")
    if circuit is not None and result["node_ids"]:
        from sparsecircuits.bridges.steer import record_steering

        print(f"recorded in {record_steering(args.circuit, {**result, 'bridges': str(Path(args.bridges).resolve())})}"
              " (the circuit's report shows it beside the node)")
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
        print(f"written to {args.out}")
    return 0


def _circuit(args: argparse.Namespace, models: Any) -> Any:
    """The --circuit folder's circuit, checked to be a circuit of the bridged sparse model."""
    if args.circuit is None:
        if args.node == "best":
            raise InputError("--node best picks the circuit's best residual channel: pass --circuit DIR")
        return None
    from sparsecircuits.circuits import Circuit

    circuit = Circuit.load(args.circuit)
    circuit.check_against(models.sparse.model)
    return circuit


def _best_node(args: argparse.Namespace, models: Any, circuit: Any, task: Any) -> str:
    """The circuit's residual channel that the task's two prompts move most (train pairs)."""
    from sparsecircuits.bridges.steer import rank_channels

    pairs = task.generate(models.sparse.tokenizer, args.pairs, seed=args.seed, split="train")
    ranked = rank_channels(models.sparse.model, circuit.nodes, pairs)
    if not ranked:
        raise InputError(f"--circuit {args.circuit} has no residual-channel node (attn_in, attn_out, mlp_in, "
                         "mlp_out) to steer; name one with --node")
    node, score = ranked[0]
    print(f"--node best: {node} (separation {score:.2f}; next: "
          + ", ".join(f"{n} {v:.2f}" for n, v in ranked[1:4]) + ")")
    return node


def _add_coefs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nmse-coef", type=finite_float, default=1.0, help="weight of the normalized MSE terms")
    p.add_argument("--kl-coef", type=finite_float, default=1.0, help="weight of the hybrid passes' KL to the dense model")
    p.add_argument("--lm-coef", type=finite_float, default=1.0, help="weight of the sparse model's own loss (joint only)")
    p.add_argument("--sites-per-step", type=positive_int, default=1, help="sites of each step's hybrid passes")
    p.add_argument("--encoder-afrac", type=finite_float, default=None,
                   help="AbsTopK fraction of the encoders (default: the sparse model's afrac)")
    p.add_argument("--init", choices=("lstsq", "random"), default="lstsq",  # bridges.model.INITS
                   help="start every map from a least-squares fit on a few batches, or at random")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `bridges` command group and `steer`."""
    bsub = add_group(sub, "bridges", "bridges between a dense model and a weight-sparse one")
    train = add_command(bsub, "train", raw=True, help="train bridges (and optionally the sparse model)",
                        description=TRAIN_HELP)
    train.add_argument("--dense", required=True, metavar="RUN", help="the dense model (a checkpoint or bundled: name)")
    train.add_argument("--sparse", metavar="RUN", help="a finished sparse model, kept frozen (default: none)")
    train.add_argument("--sparse-config", metavar="PRESET|FILE",
                       help="train a sparse model of this preset jointly from scratch (default: none)")
    train.add_argument("--data", metavar="CORPUS_DIR", help="corpus folder (default: the dense model's corpus)")
    train.add_argument("--out", required=True, metavar="DIR", help="the bridges run folder, created")
    train.add_argument("--resume", action="store_true", help="continue DIR from its newest saved state")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_coefs(train)
    train.add_argument("overrides", nargs="*", metavar="FIELD=VALUE",
                       help="train.* overrides such as train.steps=500 (default: "
                            + ", ".join(f"{k}={v}" for k, v in BRIDGE_TRAIN.items()) + " over a frozen --sparse)")
    train.set_defaults(func=_train)

    quality = add_command(bsub, "quality", help="per-site NMSE, hybrid KL and loss of a bridges folder")
    quality.add_argument("dir", metavar="DIR", help="a bridges folder from `bridges train`")
    quality.add_argument("--dense", metavar="RUN", help="the dense model (default: the one bridges.json names)")
    quality.add_argument("--data", metavar="CORPUS_DIR", help="corpus folder (default: the run's corpus)")
    quality.add_argument("--batches", type=positive_int, default=8, help="validation batches")
    quality.add_argument("--batch-size", type=positive_int, default=16, help="sequences per batch")
    quality.add_argument("--seed", type=count, default=0, help="fixes the validation windows")
    quality.add_argument("--out", metavar="FILE", help="also write the figures as JSON (default: print only)")
    quality.set_defaults(func=_quality)

    st = add_command(sub, "steer", help="steer the dense model through a sparse channel, via bridges",
                     description=(
                         "Set one residual channel of the sparse model (a circuit node at attn_in, attn_out, "
                         "mlp_in or mlp_out, or a site such as blocks.0.hook_resid_mid:3) on the task's prompts, "
                         "carry the change through the bridge decoder into the dense model, and print the dense "
                         "model's p(answer) and p(alternative) per scale, beside a random-channel control of the "
                         "same norm and the same edit inside the sparse model."))
    st.add_argument("--bridges", required=True, metavar="DIR", help="a bridges folder from `bridges train`")
    st.add_argument("--dense", metavar="RUN", help="the dense model (default: the one bridges.json names)")
    st.add_argument("--node", required=True, metavar="HOOK:INDEX[,...]|best",
                    help="the sparse channel, e.g. blocks.1.attn_out:17, several of one site steered together "
                         "(comma-separated), or best: the --circuit's residual channel that the task's two prompts "
                         "move most")
    st.add_argument("--circuit", metavar="DIR",
                    help="a circuit of the sparse model: --node best chooses from it, and the result is recorded "
                         "in DIR/steering.json for its report (default: none)")
    add_task(st, required=True, help="the prompts: a task name or a JSONL file of pairs")
    st.add_argument("--to", type=finite_float, metavar="VALUE", help="set the channel to VALUE (default: not used)")
    st.add_argument("--from-prompts", metavar="NAME|FILE",
                    help="set the channel to its mean on these prompts (a task or JSONL file; default: not used)")
    st.add_argument("--toward-alt", action="store_true",
                    help="set the channel to its value on each pair's alternative prompt, position by position")
    st.add_argument("--scale", type=finite_float, action="append", metavar="S",
                    help="scales of the edit; repeat (default: 0, 0.5, 1, 2, 4)")
    st.add_argument("--positions", choices=("all", "last"), default="all", help="positions the edit is applied at")
    st.add_argument("--pairs", type=positive_int, default=64, help="task pairs (test split)")
    st.add_argument("--controls", type=count, default=8, help="random channels of the control edit")
    st.add_argument("--seed", type=count, default=0, help="fixes the pairs and the control channels")
    st.add_argument("--out", metavar="FILE", help="also write the record as JSON (default: print only)")
    st.set_defaults(func=_steer)
