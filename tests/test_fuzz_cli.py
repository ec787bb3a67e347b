"""Bad input through every subcommand, from one table: each case must exit 2 with a message
that names the input, print no traceback, and leave nothing behind (no new file, and the
artifacts it read unchanged).

A case is a command line with placeholders, an optional setup that plants a bad input at
{bad}, and a fragment the error line must contain. {run} is a tiny trained run, {corpus}
its corpus, {circuit} a circuit of {run}, {task} a JSONL task file of {run}'s tokenizer,
{tmp} the case's own folder (which {bad} and {new} are in). The artifacts are conftest's
`fuzz_world`.
"""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsecircuits.bundled_names import resolve_model_spec
from sparsecircuits.cli import main

BUNDLED = resolve_model_spec("bundled:small-sparse")

# ---- setups: each plants one bad input at `bad` -----------------------------------------


def _copy(src: Path, bad: Path) -> Path:
    """A copy of `src` to break, without a run's resumable state (no command here reads it)."""
    shutil.copytree(src, bad, ignore=shutil.ignore_patterns("state"))
    return bad


def _edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def _tensors(bad: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(bad / "model.safetensors")
    edit(tensors)
    save_file(tensors, bad / "model.safetensors")


def _nan_weight(t: dict[str, torch.Tensor]) -> None:
    name = next(k for k, v in t.items() if v.is_floating_point() and v.numel() > 1)
    t[name] = t[name].clone()
    t[name].view(-1)[0] = float("nan")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


class _Hostile:
    def __reduce__(self):  # pragma: no cover - never called: loading must not unpickle it
        return (print, ("executed",))


def _nan_file(path: Path) -> None:
    tensors = load_file(path)
    _nan_weight(tensors)
    save_file(tensors, path)


def _circuit_edges(w: dict[str, Path], bad: Path, edge: dict) -> None:
    _copy(w["circuit"], bad)
    _edit_json(bad / "circuit.json", lambda c: c["edges"].append(edge))


def _node_ids(w: dict[str, Path]) -> tuple[str, str]:
    """A kept node of the circuit, and a node of the same location the circuit left out."""
    nodes = json.loads((w["circuit"] / "circuit.json").read_text())["nodes"]
    hook = next(h for h, idx in nodes.items() if idx)
    absent = next(i for i in itertools.count() if i not in nodes[hook])
    return f"{hook}:{nodes[hook][0]}", f"{hook}:{absent}"


Setup = Callable[[dict[str, Path], Path], object]
SETUPS: dict[str, Setup] = {
    "empty_file": lambda w, bad: bad.write_bytes(b""),
    "binary_file": lambda w, bad: bad.write_bytes(b"\xff\xfe\x00\x81garbage\x00"),
    "text_file": lambda w, bad: bad.write_text("hello\n"),
    "empty_dir": lambda w, bad: bad.mkdir(),
    "json_list": lambda w, bad: bad.write_text("[1, 2]\n"),
    "json_broken": lambda w, bad: bad.write_text('{"prompt": "x'),
    "jsonl_missing_field": lambda w, bad: bad.write_text('{"prompt": "a", "target": "b"}\n'),
    "jsonl_two_tokens": lambda w, bad: bad.write_text(
        json.dumps({"prompt": "x = (a", "target": ") + 1", "alt_prompt": "x = [a", "alt": "]"}) + "\n"),
    "toml_broken": lambda w, bad: bad.write_text("[model\nd_model = \n"),
    "toml_unknown_field": lambda w, bad: bad.write_text("[model]\nd_modle = 8\n"),
    "toml_binary": lambda w, bad: bad.write_bytes(b"\xff\xfe[model]\n"),
    # checkpoints
    "ckpt_no_config": lambda w, bad: (_copy(w["run"], bad), (bad / "config.json").unlink()),
    "ckpt_config_empty": lambda w, bad: (_copy(w["run"], bad), (bad / "config.json").write_text("")),
    "ckpt_config_binary": lambda w, bad: (_copy(w["run"], bad), (bad / "config.json").write_bytes(b"\xff\xfe{")),
    "ckpt_config_broken": lambda w, bad: (_copy(w["run"], bad), (bad / "config.json").write_text('{"d_model": ')),
    "ckpt_config_list": lambda w, bad: (_copy(w["run"], bad), (bad / "config.json").write_text("[]")),
    "ckpt_config_negative": lambda w, bad: (_copy(w["run"], bad),
                                            _edit_json(bad / "config.json", lambda c: c.update(d_model=-4))),
    "ckpt_config_unknown": lambda w, bad: (_copy(w["run"], bad),
                                           _edit_json(bad / "config.json", lambda c: c.update(d_modle=8))),
    "ckpt_config_shape": lambda w, bad: (_copy(w["run"], bad),
                                         _edit_json(bad / "config.json", lambda c: c.update(d_mlp=c["d_mlp"] * 2))),
    "ckpt_no_weights": lambda w, bad: (_copy(w["run"], bad), (bad / "model.safetensors").unlink()),
    "ckpt_weights_empty": lambda w, bad: (_copy(w["run"], bad), (bad / "model.safetensors").write_bytes(b"")),
    "ckpt_weights_truncated": lambda w, bad: (_copy(w["run"], bad), _truncate(bad / "model.safetensors")),
    "ckpt_weights_text": lambda w, bad: (_copy(w["run"], bad), (bad / "model.safetensors").write_text("x" * 64)),
    "ckpt_weights_nan": lambda w, bad: (_copy(w["run"], bad), _tensors(bad, _nan_weight)),
    "ckpt_weights_inf": lambda w, bad: (_copy(w["run"], bad), _tensors(
        bad, lambda t: t.update({k: torch.full_like(v, float("inf")) for k, v in list(t.items())[:1]}))),
    "ckpt_weights_missing_tensor": lambda w, bad: (_copy(w["run"], bad),
                                                   _tensors(bad, lambda t: t.pop(next(iter(t))))),
    "ckpt_tokenizer_broken": lambda w, bad: (_copy(w["run"], bad), (bad / "tokenizer.json").write_text("{")),
    "ckpt_tokenizer_binary": lambda w, bad: (_copy(w["run"], bad), (bad / "tokenizer.json").write_bytes(b"\xff\x00")),
    "ckpt_training_binary": lambda w, bad: (_copy(w["run"], bad), (bad / "training.json").write_bytes(b"\xff\x00")),
    "ckpt_training_broken": lambda w, bad: (_copy(w["run"], bad), (bad / "training.json").write_text("{")),
    "ckpt_weights_dir": lambda w, bad: (_copy(w["run"], bad), (bad / "model.safetensors").unlink(),
                                        (bad / "model.safetensors").mkdir()),
    # reference-format checkpoints (import-openai)
    "ref_hostile": lambda w, bad: (_copy(w["export"], bad), (bad / "final_model.pt").write_bytes(
        pickle.dumps({"w": _Hostile()}))),
    "ref_empty_pt": lambda w, bad: (_copy(w["export"], bad), (bad / "final_model.pt").write_bytes(b"")),
    "ref_truncated_pt": lambda w, bad: (_copy(w["export"], bad), _truncate(bad / "final_model.pt")),
    "ref_text_pt": lambda w, bad: (_copy(w["export"], bad), (bad / "final_model.pt").write_text("not a torch file")),
    "ref_no_config": lambda w, bad: (_copy(w["export"], bad), (bad / "beeg_config.json").unlink()),
    "ref_config_broken": lambda w, bad: (_copy(w["export"], bad), (bad / "beeg_config.json").write_text("{")),
    "ref_config_binary": lambda w, bad: (_copy(w["export"], bad), (bad / "beeg_config.json").write_bytes(b"\xff")),
    "ref_no_weights": lambda w, bad: (_copy(w["export"], bad), (bad / "final_model.pt").unlink()),
    # circuits
    "circ_no_json": lambda w, bad: (_copy(w["circuit"], bad), (bad / "circuit.json").unlink()),
    "circ_binary": lambda w, bad: (_copy(w["circuit"], bad), (bad / "circuit.json").write_bytes(b"\xff\xfe{")),
    "circ_broken": lambda w, bad: (_copy(w["circuit"], bad), (bad / "circuit.json").write_text('{"nodes": ')),
    "circ_empty": lambda w, bad: (_copy(w["circuit"], bad), (bad / "circuit.json").write_text("")),
    "circ_list": lambda w, bad: (_copy(w["circuit"], bad), (bad / "circuit.json").write_text("[]")),
    "circ_format": lambda w, bad: (_copy(w["circuit"], bad),
                                   _edit_json(bad / "circuit.json", lambda c: c.update(format="other/9"))),
    "circ_no_nodes": lambda w, bad: (_copy(w["circuit"], bad),
                                     _edit_json(bad / "circuit.json", lambda c: c.pop("nodes"))),
    "circ_node_index": lambda w, bad: (_copy(w["circuit"], bad), _edit_json(
        bad / "circuit.json", lambda c: c["nodes"][next(iter(c["nodes"]))].append(10**6))),
    "circ_node_negative": lambda w, bad: (_copy(w["circuit"], bad), _edit_json(
        bad / "circuit.json", lambda c: c["nodes"][next(iter(c["nodes"]))].append(-1))),
    "circ_unknown_hook": lambda w, bad: (_copy(w["circuit"], bad), _edit_json(
        bad / "circuit.json", lambda c: c["nodes"].update({"blocks.9.hook_nothing": [0]}))),
    "circ_edge_absent": lambda w, bad: _circuit_edges(
        w, bad, {"src": _node_ids(w)[1], "dst": _node_ids(w)[0], "weight": 0.5}),
    "circ_edge_unknown_hook": lambda w, bad: _circuit_edges(
        w, bad, {"src": "blocks.0.hook_nothing:0", "dst": _node_ids(w)[0], "weight": 1.0}),
    "circ_edge_bad_index": lambda w, bad: _circuit_edges(w, bad, {"src": "x:1", "dst": _node_ids(w)[0], "weight": 1.0}),
    "circ_edge_short": lambda w, bad: _circuit_edges(w, bad, {"src": _node_ids(w)[0]}),
    "circ_edge_nan": lambda w, bad: _circuit_edges(
        w, bad, {"src": _node_ids(w)[0], "dst": _node_ids(w)[0], "weight": float("nan")}),
    "circ_nan_loss": lambda w, bad: (_copy(w["circuit"], bad), _edit_json(
        bad / "circuit.json", lambda c: c["losses"].update(circuit=float("nan")))),
    "circ_masks_broken": lambda w, bad: (_copy(w["circuit"], bad), _truncate(bad / "masks.safetensors", 0.3)),
    "circ_model_missing": lambda w, bad: (_copy(w["circuit"], bad), _edit_json(
        bad / "circuit.json", lambda c: c["model"].update(path=str(bad / "no-such-run")))),
    # corpora
    "corpus_no_shards": lambda w, bad: (_copy(w["corpus"], bad), (bad / "shards.json").unlink()),
    "corpus_shards_binary": lambda w, bad: (_copy(w["corpus"], bad), (bad / "shards.json").write_bytes(b"\xff")),
    "corpus_shards_broken": lambda w, bad: (_copy(w["corpus"], bad), (bad / "shards.json").write_text("{")),
    "corpus_no_train": lambda w, bad: (_copy(w["corpus"], bad), (bad / "train.bin").unlink()),
    "corpus_train_truncated": lambda w, bad: (_copy(w["corpus"], bad), _truncate(bad / "train.bin", 0.5)),
    "corpus_train_odd": lambda w, bad: (_copy(w["corpus"], bad), (bad / "train.bin").write_bytes(
        (bad / "train.bin").read_bytes() + b"\x00")),
    "corpus_val_truncated": lambda w, bad: (_copy(w["corpus"], bad), _truncate(bad / "val.bin", 0.5)),
    "corpus_tokenizer_broken": lambda w, bad: (_copy(w["corpus"], bad), (bad / "tokenizer.json").write_text("{")),
    # bridges folders
    "br_no_meta": lambda w, bad: (_copy(w["bridges"], bad), (bad / "bridges.json").unlink()),
    "br_meta_broken": lambda w, bad: (_copy(w["bridges"], bad), (bad / "bridges.json").write_text("{")),
    "br_meta_binary": lambda w, bad: (_copy(w["bridges"], bad), (bad / "bridges.json").write_bytes(b"\xff\xfe{")),
    "br_meta_list": lambda w, bad: (_copy(w["bridges"], bad), (bad / "bridges.json").write_text("[]")),
    "br_meta_format": lambda w, bad: (_copy(w["bridges"], bad),
                                      _edit_json(bad / "bridges.json", lambda m: m.update(format=99))),
    "br_meta_setting": lambda w, bad: (_copy(w["bridges"], bad), _edit_json(
        bad / "bridges.json", lambda m: m["config"].update(kl_coeff=1))),
    "br_no_weights": lambda w, bad: (_copy(w["bridges"], bad), (bad / "bridges.safetensors").unlink()),
    "br_weights_truncated": lambda w, bad: (_copy(w["bridges"], bad), _truncate(bad / "bridges.safetensors")),
    "br_weights_nan": lambda w, bad: (_copy(w["bridges"], bad), _nan_file(bad / "bridges.safetensors")),
    "br_weights_shape": lambda w, bad: (_copy(w["bridges"], bad), _edit_json(
        bad / "bridges.json", lambda m: m.update(d_dense=m["d_dense"] + 1))),
    "br_dense_missing": lambda w, bad: (_copy(w["bridges"], bad), _edit_json(
        bad / "bridges.json", lambda m: m["dense"].update(path=str(bad / "no-such-dense")))),
    "br_dense_other": lambda w, bad: (_copy(w["bridges"], bad), _edit_json(
        bad / "bridges.json", lambda m: m["dense"].update(fingerprint="0" * 16))),
    "br_sparse_nan": lambda w, bad: (_copy(w["bridges"], bad), _tensors(bad, _nan_weight)),
    # outputs
    "under_file": lambda w, bad: bad.write_text("a file\n"),
    "foreign_dir": lambda w, bad: (bad.mkdir(), (bad / "notes.txt").write_text("mine\n")),
    "regular_file": lambda w, bad: bad.write_text("precious\n"),
}


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, what to plant at {bad}, a fragment of the message."""

    argv: str
    setup: str | None
    fragment: str

    def words(self, w: dict[str, Path], tmp: Path) -> list[str]:
        places = {k: str(v) for k, v in w.items()} | {"tmp": str(tmp), "bad": str(tmp / "bad"),
                                                      "new": str(tmp / "new"), "bundled": str(BUNDLED)}
        return [word.format(**places) for word in self.argv.split()]


def crossed(readers: dict[str, str], bad: dict[str, str], tag: str = "") -> dict[str, Case]:
    """Every command line of `readers` with every bad input of `bad` (setup -> fragment)."""
    return {f"{cmd}/{tag}{setup}": Case(argv, setup, frag)
            for cmd, argv in readers.items() for setup, frag in bad.items()}


RUN_READERS = {  # a command line that reads a checkpoint at {bad}
    "model info": "model info {bad}",
    "model pack": "model pack {bad} --out {new}",
    "tasks eval": "tasks eval --model {bad} --task {task}",
    "export-openai": "export-openai {bad} --out {new}",
    "prune": "prune --model {bad} --task {task} --out {new} --steps 2 --no-progress",
    "validate": "validate --circuit {circuit} --model {bad} --controls none --no-progress",
    "report": "report --circuit {circuit} --model {bad} --out {new}.html",
    "sample": "sample --model {bad} --prompt x --max-new-tokens 2",
}
BAD_RUNS = {  # setup -> fragment of the message
    "ckpt_no_config": "config.json", "ckpt_config_empty": "config.json", "ckpt_config_binary": "config.json",
    "ckpt_config_broken": "config.json", "ckpt_config_list": "config.json", "ckpt_config_negative": "d_model",
    "ckpt_config_unknown": "d_modle", "ckpt_config_shape": "model.safetensors", "ckpt_no_weights": "model.safetensors",
    "ckpt_weights_empty": "model.safetensors", "ckpt_weights_truncated": "model.safetensors",
    "ckpt_weights_text": "model.safetensors", "ckpt_weights_nan": "not finite", "ckpt_weights_inf": "not finite",
    "ckpt_weights_missing_tensor": "model.safetensors", "ckpt_tokenizer_broken": "tokenizer.json",
    "ckpt_weights_dir": "model.safetensors", "empty_dir": "bad", "text_file": "bad",
}
CASES: dict[str, Case] = crossed(RUN_READERS, BAD_RUNS)
CASES |= {
    f"{cmd}/missing": Case(argv, None, "bad") for cmd, argv in RUN_READERS.items()
}
BAD_CIRCUITS = {
    "circ_no_json": "circuit.json", "circ_binary": "circuit.json", "circ_broken": "circuit.json",
    "circ_empty": "circuit.json", "circ_list": "circuit.json", "circ_format": "other/9",
    "circ_no_nodes": "nodes", "circ_node_index": "1000000", "circ_node_negative": "-1",
    "circ_unknown_hook": "hook_nothing", "circ_edge_absent": "not a node of the circuit",
    "circ_edge_unknown_hook": "hook_nothing",
    "circ_edge_bad_index": "x:1", "circ_edge_short": "edge", "circ_edge_nan": "weight", "circ_nan_loss": "losses",
    "circ_masks_broken": "masks.safetensors", "circ_model_missing": "no-such-run", "text_file": "bad",
    "empty_dir": "circuit.json",
}
CIRCUIT_READERS = {
    "validate": "validate --circuit {bad} --controls none --no-progress",
    "report": "report --circuit {bad} --out {new}.html",
}
CASES |= crossed(CIRCUIT_READERS, BAD_CIRCUITS)
BAD_CORPORA = {  # (manifest.json only describes the sources: reading a corpus never needs it)
    "corpus_shards_broken": "shards.json", "corpus_shards_binary": "shards.json", "corpus_no_shards": "shards.json",
    "corpus_no_train": "train.bin", "corpus_train_truncated": "train.bin", "corpus_train_odd": "train.bin",
    "corpus_val_truncated": "val.bin", "corpus_tokenizer_broken": "tokenizer.json", "empty_dir": "bad",
    "text_file": "bad",
}
CORPUS_READERS = {
    "train": "train --config tiny-sparse --data {bad} --out {new} --no-progress train.steps=1 model.n_ctx=64",
    "prune": "prune --model {run} --task {task} --out {new} --data {bad} --steps 2 --no-progress",
}
CASES |= crossed(CORPUS_READERS, BAD_CORPORA)
BAD_TASKS = {"empty_file": "no pairs", "binary_file": "UTF-8", "json_list": "line 1", "json_broken": "line 1",
             "jsonl_missing_field": "target", "empty_dir": "bad"}
TASK_READERS = {
    "tasks eval": "tasks eval --model {run} --task {bad}",
    "tasks show": "tasks show --model {run} {bad}",
    "prune": "prune --model {run} --task {bad} --out {new} --steps 2 --no-progress",
    "validate": "validate --circuit {circuit} --task {bad} --controls none --no-progress",
}
CASES |= crossed(TASK_READERS, BAD_TASKS, tag="task-")
BAD_REFS = {"ref_hostile": "final_model.pt", "ref_empty_pt": "final_model.pt", "ref_truncated_pt": "final_model.pt",
            "ref_text_pt": "final_model.pt", "ref_no_config": "beeg_config.json",
            "ref_config_broken": "beeg_config.json", "ref_config_binary": "beeg_config.json",
            "ref_no_weights": "final_model.pt", "empty_dir": "beeg_config.json", "text_file": "bad"}
CASES |= crossed({"import-openai": "import-openai {bad} --out {new}"}, BAD_REFS)
BAD_BRIDGES = {"br_no_meta": "bridges.json", "br_meta_broken": "bridges.json", "br_meta_binary": "bridges.json",
               "br_meta_list": "bridges.json", "br_meta_format": "format", "br_meta_setting": "kl_coeff",
               "br_no_weights": "bridges.safetensors", "br_weights_truncated": "bridges.safetensors",
               "br_weights_nan": "not finite", "br_weights_shape": "bridges.safetensors",
               "br_dense_missing": "no-such-dense", "br_dense_other": "fingerprint", "br_sparse_nan": "not finite",
               "empty_dir": "bridges.json", "text_file": "bad"}
BRIDGES_READERS = {
    "bridges quality": "bridges quality {bad} --batches 1",
    "steer": "steer --bridges {bad} --node blocks.0.attn_out:0 --task {task} --toward-alt --pairs 2",
}
CASES |= crossed(BRIDGES_READERS, BAD_BRIDGES)
BRIDGE_TRAIN = "bridges train --data {corpus} --out {new} --no-progress train.steps=1"
CASES |= crossed({"bridges train --dense": BRIDGE_TRAIN + " --dense {bad} --sparse {run}",
                  "bridges train --sparse": BRIDGE_TRAIN + " --dense {run} --sparse {bad}"},
                 {k: BAD_RUNS[k] for k in ("ckpt_no_config", "ckpt_config_broken", "ckpt_weights_truncated",
                                           "ckpt_weights_nan", "empty_dir", "text_file")})
STEER = "steer --bridges {bridges} --task {task} --pairs 2"
NUMBERS = {  # a command line with one numeric flag set to each bad value: {v}
    "prune --k-coef": "prune --model {run} --task {task} --out {new} --steps 2 --no-progress --k-coef {v}",
    "prune --lr": "prune --model {run} --task {task} --out {new} --steps 2 --no-progress --lr {v}",
    "prune --target-loss": "prune --model {run} --task {task} --out {new} --steps 2 --no-progress --target-loss {v}",
    "prune --faithful-coef": "prune --model {run} --task {task} --out {new} --steps 2 --faithful-coef {v}",
    "prune --temperature": "prune --model {run} --task {task} --out {new} --steps 2 --temperature {v}",
    "prune --pairs": "prune --model {run} --task {task} --out {new} --steps 2 --pairs {v}",
    "validate --pairs": "validate --circuit {circuit} --controls none --no-progress --pairs {v}",
    "validate --steps": "validate --circuit {circuit} --controls none --no-progress --steps {v}",
    "tasks eval --target-loss": "tasks eval --model {run} --task {task} --target-loss {v}",
    "tasks eval --pairs": "tasks eval --model {run} --task {task} --pairs {v}",
    "sample --temperature": "sample --model {run} --prompt x --max-new-tokens 2 --temperature {v}",
    "sample --top-k": "sample --model {run} --prompt x --max-new-tokens 2 --top-k {v}",
    "report --pairs": "report --circuit {circuit} --out {new}.html --pairs {v}",
    "demo --target-loss": "demo --out {new} --target-loss {v}",
    "corpus build --val-fraction": "corpus build --out {new} --max-files 5 --val-fraction {v}",
    "corpus build --vocab-size": "corpus build --out {new} --max-files 5 --vocab-size {v}",
}
BAD_NUMBERS = {"nan": "nan", "inf": "inf", "-1": "-1"}
INTEGER_FLAGS = ("--pairs", "--steps", "--top-k", "--vocab-size")
CASES |= {
    f"{name}={v}": Case(argv.replace("{v}", v), None, frag)
    for name, argv in NUMBERS.items()
    for v, frag in BAD_NUMBERS.items()
    if not (name.endswith(INTEGER_FLAGS) and v != "-1")
}
CASES |= {f"{name}=0": Case(NUMBERS[name].replace("{v}", "0"), None, "0")
          for name in ("validate --pairs", "prune --pairs", "tasks eval --pairs", "sample --top-k",
                       "validate --steps")}
OUTS = {  # commands that write --out: onto a regular file, under a regular file, onto a foreign folder
    "prune": "prune --model {run} --task {task} --steps 2 --no-progress --out",
    "report": "report --circuit {circuit} --out",  # (onto a file: a report replaces its own .html)
    "model pack": "model pack {run} --out",
    "export-openai": "export-openai {run} --out",
    "import-openai": "import-openai {export} --out",
    "train": "train --config tiny-sparse --data {corpus} --no-progress train.steps=1 model.n_ctx=64 --out",
    "corpus build": "corpus build --max-files 5 --out",
    "tasks eval": "tasks eval --model {run} --task {task} --out",
    "demo": "demo --task bracket_brace --out",
}
FORCE = {cmd: "" if cmd in ("train", "demo") else " --force" for cmd in OUTS}  # (train never replaces a run; demo replaces its own output)
CASES |= {f"{cmd}/out-onto-file": Case(f"{argv} {{bad}}{FORCE[cmd]}", "regular_file", "bad")
          for cmd, argv in OUTS.items() if cmd not in ("report", "tasks eval")}
CASES |= {f"{cmd}/out-under-file": Case(f"{argv} {{bad}}/x{'.html' if cmd == 'report' else ''}", "under_file", "bad")
          for cmd, argv in OUTS.items()}
CASES |= {f"{cmd}/out-foreign-dir": Case(f"{argv} {{bad}}{FORCE[cmd]}", "foreign_dir", "bad")
          for cmd, argv in OUTS.items() if cmd not in ("report", "tasks eval")}
CASES |= {
    "train/config-broken": Case("train --config {bad} --data {corpus} --out {new}", "toml_broken", "bad"),
    "train/config-unknown": Case("train --config {bad} --data {corpus} --out {new}", "toml_unknown_field", "d_modle"),
    "train/config-binary": Case("train --config {bad} --data {corpus} --out {new}", "toml_binary", "bad"),
    "train/override-unknown": Case("train --config tiny-sparse --data {corpus} --out {new} model.d_modle=3",
                                   None, "d_modle"),
    "train/override-nan-lr": Case("train --config tiny-sparse --data {corpus} --out {new} train.lr=nan", None, "lr"),
    "train/override-inf-lr": Case("train --config tiny-sparse --data {corpus} --out {new} train.lr=inf", None, "lr"),
    "train/override-bad-toml": Case("train --config tiny-sparse --data {corpus} --out {new} train.lr=[", None,
                                    "train.lr"),
    "train/resume-missing": Case("train --config tiny-sparse --data {corpus} --out {new} --resume", None, "new"),
    "train/vocab-too-small": Case("train --config tiny-sparse --data {corpus} --out {new} model.vocab_size=100",
                                  None, "vocab"),
    "tasks show/unknown": Case("tasks show --model {run} no_such_task", None, "no_such_task"),
    "tasks show/tokenizer-broken": Case("tasks show --model {bad} {task}", "ckpt_tokenizer_broken", "tokenizer.json"),
    "tasks show/tokenizer-binary": Case("tasks show --model {bad} {task}", "ckpt_tokenizer_binary", "tokenizer.json"),
    "tasks show/no-tokenizer": Case("tasks show --tokenizer {bad} {task}", "text_file", "bad"),
    "tasks eval/another-tokenizer": Case("tasks eval --model {run} --task {task} --tokenizer {bundled}/tokenizer.json",
                                         None, "not the tokenizer of --model"),
    "prune/unknown-task": Case("prune --model {run} --task no_such_task --out {new}", None, "no_such_task"),
    "prune/unknown-method": Case("prune --model {run} --task {task} --out {new} --method nope", None, "nope"),
    "prune/unknown-location": Case("prune --model {run} --task {task} --out {new} --locations attn_x", None,
                                   "attn_x"),
    "prune/two-token-task": Case("prune --model {run} --task {bad} --out {new}", "jsonl_two_tokens", "token"),
    "validate/unknown-control": Case("validate --circuit {circuit} --controls nope", None, "nope"),
    "model info/bundled-typo": Case("model info bundled:small-sprase", None, "small-sprase"),
    "corpus build/missing-source": Case("corpus build --out {new} --source dir:{tmp}/nope", None, "nope"),
    "corpus build/tokenizer-broken": Case("corpus build --out {new} --max-files 5 --tokenizer {bad}", "json_broken",
                                          "bad"),
    "report/run-not-a-run": Case("report --run {bad} --out {new}.html", "empty_dir", "bad"),
    "demo/unknown-task": Case("demo --out {new} --task no_such_task", None, "no_such_task"),
    "frontier run/sweep-missing": Case("frontier run --sweep {tmp}/nope.toml --out {new}", None, "nope"),
    "frontier run/sweep-unknown-name": Case("frontier run --sweep no_such_sweep --out {new}", None, "no_such_sweep"),
    "frontier run/sweep-broken": Case("frontier run --sweep {bad} --out {new}", "toml_broken", "bad"),
    "frontier run/sweep-binary": Case("frontier run --sweep {bad} --out {new}", "toml_binary", "bad"),
    "frontier run/shard": Case("frontier run --sweep tiny --out {new} --data {corpus} --shard 3/2", None, "shard"),
    "frontier run/data-not-a-corpus": Case("frontier run --sweep tiny --out {new} --data {bad}", "empty_dir",
                                           "corpus"),
    "frontier report/not-a-sweep": Case("frontier report {bad}", "empty_dir", "bad"),
    "frontier report/a-file": Case("frontier report {bad}", "text_file", "bad"),
    "bridges train/both-sparse": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} --sparse-config tiny-sparse",
                                      None, "exactly one"),
    "bridges train/no-sparse": Case(BRIDGE_TRAIN + " --dense {run}", None, "exactly one"),
    "bridges train/depth": Case(BRIDGE_TRAIN + " --dense {run} --sparse-config tiny-sparse model.n_layer=2",
                                None, "n_layer"),
    "bridges train/vocab": Case(BRIDGE_TRAIN + " --dense {bundled} --sparse {run}", None, "n_layer"),
    "bridges train/model-override": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} model.d_model=8", None,
                                         "model.d_model"),
    "bridges train/kl-nan": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} --kl-coef nan", None, "nan"),
    "bridges train/kl-negative": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} --kl-coef -1", None, "kl_coef"),
    "bridges train/sites-0": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} --sites-per-step 0", None, "0"),
    "bridges train/afrac-2": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} --encoder-afrac 2", None,
                                  "encoder_afrac"),
    "bridges train/init": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} --init zeros", None, "zeros"),
    "bridges train/resume-missing": Case(BRIDGE_TRAIN + " --dense {run} --sparse {run} --resume", None, "new"),
    "bridges train/out-onto-run": Case("bridges train --dense {run} --sparse {run} --data {corpus} --out {bridges} "
                                       "--no-progress train.steps=1", None, "already holds a training run"),
    "bridges train/data-not-a-corpus": Case("bridges train --dense {run} --sparse {run} --data {bad} --out {new}",
                                            "empty_dir", "bad"),
    "bridges quality/out-under-file": Case("bridges quality {bridges} --batches 1 --out {bad}/x.json", "under_file",
                                           "bad"),
    "steer/node-format": Case(STEER + " --node blocks.0.attn_out --toward-alt", None, "HOOK:INDEX"),
    "steer/node-unknown": Case(STEER + " --node blocks.0.attn_nope:1 --toward-alt", None, "attn_nope"),
    "steer/node-qkv": Case(STEER + " --node blocks.0.attn_q:1 --toward-alt", None, "residual channel"),
    "steer/node-site": Case(STEER + " --node blocks.5.hook_resid_pre:1 --toward-alt", None, "blocks.5"),
    "steer/channel-range": Case(STEER + " --node blocks.0.attn_out:9999 --toward-alt", None, "9999"),
    "steer/two-values": Case(STEER + " --node blocks.0.attn_out:1 --toward-alt --to 1", None, "exactly one"),
    "steer/no-value": Case(STEER + " --node blocks.0.attn_out:1", None, "exactly one"),
    "steer/scale-nan": Case(STEER + " --node blocks.0.attn_out:1 --toward-alt --scale nan", None, "nan"),
    "steer/to-inf": Case(STEER + " --node blocks.0.attn_out:1 --to inf", None, "inf"),
    "steer/unknown-task": Case("steer --bridges {bridges} --node blocks.0.attn_out:1 --task no_such_task --to 1",
                               None, "no_such_task"),
    "steer/task-broken": Case("steer --bridges {bridges} --node blocks.0.attn_out:1 --task {bad} --to 1",
                              "json_broken", "line 1"),
    "steer/out-under-file": Case(STEER + " --node blocks.0.attn_out:1 --to 1 --out {bad}/x.json", "under_file",
                                 "bad"),
    "steer/from-prompts-missing": Case(STEER + " --node blocks.0.attn_out:1 --from-prompts {tmp}/none.jsonl", None,
                                       "none"),
}


def _listing(path: Path) -> dict[str, tuple[int, int]]:
    """Every entry under `path`, with each file's size and mtime: to show that nothing was
    left behind or touched (a folder's own mtime moves when a temporary entry comes and goes)."""
    if not path.exists():
        return {}
    entries = [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0) for p in entries}


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 150
    assert {c.setup for c in CASES.values()} - {None} <= set(SETUPS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_a_clear_exit_2_and_leaves_nothing(name: str, fuzz_world: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    case, world = CASES[name], fuzz_world
    tmp = tmp_path / "case"
    tmp.mkdir()
    if case.setup:
        SETUPS[case.setup](world, tmp / "bad")
    before = {k: _listing(v) for k, v in world.items()} | {"tmp": _listing(tmp)}
    rc = main(case.words(world, tmp))
    err = capsys.readouterr().err
    after = {k: _listing(v) for k, v in world.items()} | {"tmp": _listing(tmp)}
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == 2, f"exit {rc}; stderr: {err[-600:]}"
    assert lines, "no message"
    message = lines[-1]
    usage = lines[:-1]
    assert all(u.startswith(("usage:", " ")) for u in usage), f"more than one line: {err}"
    assert "error:" in message and case.fragment.lower() in message.lower(), message
    assert after == before, "something was written or changed"
