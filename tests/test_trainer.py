"""The Trainer reproduces the training loop it replaced, bit for bit.

`fixtures/trainer_reference.json` holds, for 200-step runs of the two bundled presets on the
bundled validation tokens (used as both splits), the SHA-256 of the final weights and the
logged train losses, recorded with the training loop before the `Trainer` (one thread, as
in every test). Bit identity only holds for the same kernels: on a machine whose torch
version or CPU capability differs from the recorded ones, the losses are compared within
1e-4 instead, and the test says so in its assertion message. The runs use torch's top-k
(the native kernels off): the native selection breaks exact ties at a threshold by index,
where torch.topk's choice is unspecified, and over 200 steps such a tie changes the bits
(tests/test_native.py checks that a native step equals a torch step).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sparsecircuits
from sparsecircuits.model import native
from sparsecircuits.train import Trainer, load_run_config, train

REFERENCE = Path(__file__).parent / "fixtures" / "trainer_reference.json"
STEPS = 200


def bundled_tokens_corpus(dest: Path) -> Path:
    """A corpus folder whose train and val splits are both the bundled validation tokens."""
    src = Path(sparsecircuits.__file__).parent / "bundled" / "small-sparse" / "corpus-val"
    dest.mkdir(parents=True)
    for name in ("tokenizer.json", "val.bin"):
        shutil.copy(src / name, dest / name)
    shutil.copy(src / "val.bin", dest / "train.bin")
    info = json.loads((src / "shards.json").read_text())
    info["train"] = {**info["val"], "file": "train.bin"}
    (dest / "shards.json").write_text(json.dumps(info))
    return dest


def weights_sha256(run_dir: Path) -> str:
    """SHA-256 over every saved tensor's name and bytes, in name order."""
    state = load_file(str(run_dir / "model.safetensors"))
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled_tokens_corpus(tmp_path_factory.mktemp("trainer") / "corpus")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["small-sparse", "small-dense"])
def test_presets_match_the_previous_training_loop(preset: str, corpus: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "kernels", lambda: None)
    ref = json.loads(REFERENCE.read_text())
    out = tmp_path / preset
    result = train(preset, corpus, out, overrides=[f"train.steps={STEPS}"], progress=False)
    losses = [json.loads(line)["train_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    same_kernels = (
        ref["torch_version"] == torch.__version__
        and ref["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    )
    if same_kernels:
        assert weights_sha256(out) == ref[preset]["weights_sha256"]
        assert losses == ref[preset]["train_losses"]
        assert result.final_val_loss == ref[preset]["final_val_loss"]
    else:
        assert losses == pytest.approx(ref[preset]["train_losses"], abs=1e-4), (
            f"other kernels than the reference's ({ref['torch_version']}, {ref['cpu_capability']}): "
            "compared within 1e-4"
        )


def test_trainer_steps_by_hand_equal_fit(corpus: Path, tmp_path: Path) -> None:
    """Driving `step()` by hand trains the same weights as `fit()`; `state_dict` holds the
    data position and counters a resume needs."""
    run = load_run_config("tiny-sparse", ["train.steps=6", "train.log_every=2", "train.eval_every=0"])
    fitted = Trainer(run, corpus, tmp_path / "fit", progress=False)
    fitted.fit()
    by_hand = Trainer(run, corpus, tmp_path / "hand", progress=False)
    losses = [float(by_hand.step()[0].detach()) for _ in range(6)]
    assert by_hand.step_count == 6 and by_hand.tokens == 6 * run.train.batch_size * run.model.n_ctx
    for a, b in zip(fitted.model.parameters(), by_hand.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all(loss > 0 for loss in losses)
    state = by_hand.state_dict()
    assert state["tokens"] == by_hand.tokens and state["sampler"] == by_hand.sampler.state_dict()
