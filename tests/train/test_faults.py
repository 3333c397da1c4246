"""Faults a long run meets: signals, a kill in the middle of a checkpoint write, a full disk, a damaged
checkpoint, non-finite steps. Each test reproduces the fault and checks what the user is left with."""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file

from chattune.errors import ChattuneError
from chattune.train import checkpoint as ckpt
from chattune.train import run
from tests.helpers import tiny_run_config as config

# ---------------------------------------------------------------------------------------------------
# signals

SIGNAL_SCRIPT = """
import os, signal, sys
import chattune.train.loop as loop
from chattune.cli import app
send_at, times = int(sys.argv[1]), int(sys.argv[2])
real_lr_at = loop.lr_at
def lr_at(step, cfg, total):  # called as optimizer step `step + 1` starts: the signal lands mid-step
    if step + 1 == send_at:
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGTERM)
    return real_lr_at(step, cfg, total)
loop.lr_at = lr_at
app(sys.argv[3:], standalone_mode=True)
"""


def _launch(tmp_path, tiny_model_dir, train_file, name, send_at=0, times=1, resume=False):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(
        f"model: {{name: {tiny_model_dir}}}\n"
        f"data: {{train_file: {train_file}, val_fraction: 0.25, max_length: 128}}\n"
        "train: {learning_rate: 3.0e-3, max_steps: 10, precision: fp32}\n"
        f"eval: {{every_steps: 4}}\noutput: {{dir: {tmp_path}, tensorboard: false}}\n"
    )
    args = ["train", str(cfg_file), f"output.name={name}"] + (["--resume"] if resume else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", SIGNAL_SCRIPT, str(send_at), str(times), *args],
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_sigterm_finishes_the_step_checkpoints_and_resumes_bitwise(tiny_model_dir, train_file, tmp_path):
    assert _launch(tmp_path, tiny_model_dir, train_file, "ref").returncode == 0
    stopped = _launch(tmp_path, tiny_model_dir, train_file, "stopped", send_at=7)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    message = [ln for ln in stopped.stderr.splitlines() if ln.startswith("error:")]
    assert len(message) == 1 and "stopped by SIGTERM after step 7/10" in message[0], stopped.stderr[-2000:]
    assert (tmp_path / "stopped/checkpoints/step-000007").is_dir()
    assert not (tmp_path / "stopped/final").exists()
    resumed = _launch(tmp_path, tiny_model_dir, train_file, "stopped", resume=True)
    assert resumed.returncode == 0 and "step-000007" in resumed.stdout, resumed.stderr[-2000:]
    ref = load_file(str(tmp_path / "ref/final/model.safetensors"))
    got = load_file(str(tmp_path / "stopped/final/model.safetensors"))
    assert all(torch.equal(ref[k], got[k]) for k in ref)

    twice = _launch(tmp_path, tiny_model_dir, train_file, "twice", send_at=3, times=2)
    assert twice.returncode == -signal.SIGTERM  # the second signal ends it at once, no checkpoint
    assert not (tmp_path / "twice/checkpoints/step-000003").exists()


# ---------------------------------------------------------------------------------------------------
# checkpoint writes


def _save(root, step, weights, optimizer_state=None):
    def save_weights(folder):
        save_file(weights, str(folder / "model.safetensors"))
        for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
            (folder / name).write_text("{}")  # what save_pretrained writes besides the weights
        (folder / "chat_template.jinja").write_text("{{ messages }}")

    return ckpt.save_checkpoint(
        root,
        ckpt.TrainState(step=step, micro_step=step),
        save_weights=save_weights,
        optimizer_state=optimizer_state or {"state": {0: {"exp_avg": weights["w"] * 2}}, "param_groups": []},
        config_yaml="x: 1\n",
        bytes_needed=sum(v.numel() * 4 for v in weights.values()) * 2,
    )


def _weights(step):
    g = torch.Generator().manual_seed(step)
    return {"w": torch.randn(256, 256, generator=g), "b": torch.randn(256, generator=g)}


def test_stop_on_signal_restores_a_handler_installed_outside_python(monkeypatch):
    # signal.signal returns None for a handler that C code installed; putting None back raised TypeError
    # on leaving the block. Such a handler cannot be restored, so the default action comes back instead.
    from chattune.train import faults

    real = signal.signal
    calls: list[tuple[int, object]] = []

    def fake(signum, handler):
        calls.append((signum, handler))
        previous = real(signum, handler)
        return None if signum == signal.SIGTERM else previous

    monkeypatch.setattr(faults.signal, "signal", fake)
    before = signal.getsignal(signal.SIGTERM)
    try:
        with faults.StopOnSignal():
            pass
        assert (signal.SIGTERM, signal.SIG_DFL) in calls
    finally:
        real(signal.SIGTERM, before)


def test_kill_at_every_point_of_a_checkpoint_write_leaves_the_newest_complete_one(tmp_path):
    """SIGKILL at each labelled point of a save (25 of them: between files, before and after each
    fsync, around the rename) and at 8 moments in time (inside file writes): the newest checkpoint
    found is always sound and holds exactly what was saved for its step."""
    probe = tmp_path / "probe"
    labels: list[str] = []
    ckpt.on_save_point = labels.append
    try:
        _save(probe, 1, _weights(1))
        _save(probe, 1, _weights(1))  # re-saving a step adds the "moved old" point
    finally:
        ckpt.on_save_point = None
    labels = list(dict.fromkeys(labels))
    assert len(labels) >= 20, labels

    kill_points: list[tuple[str, float]] = [(label, 0.0) for label in labels]
    kill_points += [("", t) for t in (0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02)]
    outcomes = set()
    # The child only serialises tensors made here: after a fork, a parallel torch op could wait
    # forever on the parent's OpenMP threads, which the child does not have.
    w2 = _weights(2)
    opt2 = {"state": {0: {"exp_avg": w2["w"] * 2}}, "param_groups": []}
    for i, (label, delay) in enumerate(kill_points):
        root = tmp_path / f"k{i}"
        _save(root, 1, _weights(1))
        resave = label == "moved old"  # re-saving step 2 (after a fallback), with step 1 still there
        if resave:
            _save(root, 2, _weights(3))
        pid = os.fork()
        if pid == 0:  # the child saves step 2 (or step 1 again) and is killed at the chosen point
            if label:

                def die(point, label=label):
                    if point == label:
                        os.kill(os.getpid(), signal.SIGKILL)

                ckpt.on_save_point = die
            elif delay:
                import threading

                threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
            _save(root, 2, w2, opt2)
            os._exit(0)
        status = _wait(pid)
        outcomes.add(os.WIFSIGNALED(status))
        found = ckpt.sound_checkpoints(root, warn=lambda m: pytest.fail(m))
        assert found, f"no sound checkpoint after a kill at {label or delay}"
        step = ckpt.load_state(found[0]).step
        saved = load_file(str(found[0] / "model.safetensors"))
        assert all(torch.equal(saved[k], _weights(step)[k]) for k in saved), label or delay
        assert ckpt.load_optimizer_state(found[0])["state"][0]["exp_avg"].equal(_weights(step)["w"] * 2)
    assert True in outcomes  # the kills did happen


def _wait(pid, timeout=60.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the forked save hung")


def test_full_disk_names_path_and_space_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    _save(root, 1, _weights(1))
    real_save = torch.save

    def full(obj, f, *a, **k):
        if str(f).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(ChattuneError) as err:
        _save(root, 2, _weights(2))
    message = str(err.value)
    assert str(root / "step-000002") in message and "needs about 0.5 MB" in message  # weights + AdamW
    assert "free on" in message and str(root) in message
    assert [p.name for p in root.iterdir()] == ["step-000001"]  # nothing partial, not even hidden
    assert ckpt.problem(root / "step-000001") is None


@pytest.mark.parametrize(
    "damage", ["truncated weights", "no state.json", "invalid state.json", "bad manifest"]
)
def test_damaged_checkpoints_are_named_and_skipped(tmp_path, damage):
    root = tmp_path / "checkpoints"
    _save(root, 1, _weights(1))
    newest = _save(root, 2, _weights(2))
    if damage == "truncated weights":
        f = newest / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "no state.json":
        (newest / "state.json").unlink()
    elif damage == "invalid state.json":
        (newest / "state.json").write_text('{"step": 2, "nonsense": true}')
        (newest / ckpt.MANIFEST).unlink()  # as in a checkpoint from before manifests: parsed, not sized
    else:
        (newest / ckpt.MANIFEST).write_text("{")
    warnings: list[str] = []
    found = ckpt.sound_checkpoints(root, warnings.append)
    assert [p.name for p in found] == ["step-000001"]
    assert len(warnings) == 1 and "step-000002" in warnings[0]
    expected = {
        "truncated weights": "model.safetensors is",
        "no state.json": "state.json is missing",
        "invalid state.json": "state.json is invalid",
        "bad manifest": "manifest.json is invalid",
    }[damage]
    assert expected in warnings[0], warnings[0]


# ---------------------------------------------------------------------------------------------------
# whole runs: a checkpoint with wrong shapes, non-finite steps


def test_resume_falls_back_past_a_checkpoint_with_wrong_shapes(tiny_model_dir, train_file, tmp_path):
    args = ("train.max_steps=4", "output.save_every=2", "eval.every_steps=null", "data.val_fraction=0")
    cfg = config(tiny_model_dir, train_file, tmp_path, *args, "output.keep_last=3")
    run(cfg)
    reference = load_file(str(cfg.run_dir / "final/model.safetensors"))
    newest = cfg.run_dir / "checkpoints/step-000004"
    weights = load_file(str(newest / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.ndim == 2)
    weights[key] = weights[key][:, :-1].contiguous()  # a wrong shape: files sound, model will not load
    save_file(weights, str(newest / "model.safetensors"), metadata={"format": "pt"})
    manifest = json.loads((newest / ckpt.MANIFEST).read_text())
    manifest["files"]["model.safetensors"] = (newest / "model.safetensors").stat().st_size
    (newest / ckpt.MANIFEST).write_text(json.dumps(manifest))

    out = Console(file=open(tmp_path / "log.txt", "w"), width=300)  # noqa: SIM115
    run(cfg, resume=True, console=out)
    out.file.close()
    log = (tmp_path / "log.txt").read_text()
    assert "step-000004 does not load" in log and "resuming from" in log and "step-000002" in log, log
    got = load_file(str(cfg.run_dir / "final/model.safetensors"))
    assert all(torch.equal(reference[k], got[k]) for k in reference)


def _poison_loss(monkeypatch, bad_calls):
    """Make the loss NaN on the given optimizer steps (1-based), as an overflow would."""
    import chattune.train.loop as loop
    from chattune.train.loss import SupervisedLoss

    calls = {"n": 0}

    class Poisoned(SupervisedLoss):
        def forward(self, *a, **k):
            loss_sum, correct = super().forward(*a, **k)
            calls["n"] += self.training
            return (
                loss_sum * float("nan") if self.training and calls["n"] in bad_calls else loss_sum
            ), correct

    monkeypatch.setattr(loop, "SupervisedLoss", Poisoned)


def test_nonfinite_steps_are_skipped_counted_and_capped(tiny_model_dir, train_file, tmp_path, monkeypatch):
    _poison_loss(monkeypatch, {3, 4})
    base = ("train.max_steps=6", "eval.every_steps=null", "data.val_fraction=0", "train.log_every=1")
    cfg = config(tiny_model_dir, train_file, tmp_path, *base, "train.max_nonfinite=3")
    result = run(cfg)
    assert result.steps == 6
    records = [json.loads(x) for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["nonfinite_steps"] for r in records] == [0, 0, 1, 2, 2, 2]
    assert all(r["loss"] == r["loss"] for r in records)  # skipped steps do not make the logged loss NaN
    assert all(r["peak_rss_gb"] > 0.1 for r in records)
    final = load_file(str(cfg.run_dir / "final/model.safetensors"))
    assert all(torch.isfinite(v).all() for v in final.values())

    _poison_loss(monkeypatch, {2, 3, 4, 5})
    cfg = config(tiny_model_dir, train_file, tmp_path, *base, "train.max_nonfinite=3", "output.name=capped")
    with pytest.raises(
        ChattuneError, match=r"3 optimizer steps in a row .*\(train.max_nonfinite=3\) at step 4"
    ):
        run(cfg)


# ---------------------------------------------------------------------------------------------------
# more than one process


@pytest.mark.slow
def test_two_processes_match_one_and_resume_exactly(tiny_model_dir, train_file, tmp_path):
    """`--nproc 2` (torchrun, gloo on CPU) with 2 rows per process against 1 process with 4 rows: the
    same global batch, so the same loss curve to rel 1e-4 (only the order of the gradient sum differs).
    Then 3 steps + `--resume` to 6 with 2 processes ends bitwise where 6 uninterrupted steps do."""
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(
        f"model: {{name: {tiny_model_dir}}}\n"
        f"data: {{train_file: {train_file}, val_fraction: 0, max_length: 128, packing: false}}\n"
        "train: {recipe: manual, learning_rate: 3.0e-3, precision: fp32, scheduler: constant, warmup_steps: 0, log_every: 1}\n"
        f"eval: {{every_steps: null}}\noutput: {{dir: {tmp_path}, tensorboard: false, save_every: 3}}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}

    def train(name, nproc, batch, steps, *extra, more_env=None):
        args = [str(cfg_file), f"output.name={name}", f"train.batch_size={batch}", f"train.max_steps={steps}"]
        done = subprocess.run(
            [sys.executable, "-m", "chattune", "train", *args, "--nproc", str(nproc), *extra],
            env=env | (more_env or {}),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-3000:]
        return done

    def losses(name):
        return [
            r["loss"] for r in map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines())
        ]

    def weights(name):
        return load_file(str(tmp_path / name / "final/model.safetensors"))

    train("one", 1, 4, 6)
    train("two", 2, 2, 6)
    assert losses("two") == pytest.approx(losses("one"), rel=1e-4)
    # an FSDP launch config on CPU: accelerate quietly runs DDP instead; chattune says so
    asked_fsdp = train("resumed", 2, 2, 3, more_env={"ACCELERATE_USE_FSDP": "true"})
    assert "asks for FSDP, but accelerate runs it only on GPUs" in " ".join(asked_fsdp.stdout.split())
    out = train("resumed", 2, 2, 6, "--resume")
    assert "step-000003" in out.stdout
    ref, got = weights("two"), weights("resumed")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert losses("resumed") == losses("two")


def test_resume_on_edited_data_names_the_file_and_line_and_goes_on(tiny_model_dir, train_file, tmp_path):
    args = ("train.max_steps=4", "output.save_every=2", "eval.every_steps=null", "data.val_fraction=0")
    cfg = config(tiny_model_dir, train_file, tmp_path, *args)
    run(cfg)
    lines = train_file.read_text().splitlines()
    record = json.loads(lines[4])
    record["messages"][-1]["content"] += " (edited)"
    lines[4] = json.dumps(record)
    train_file.write_text("\n".join(lines) + "\n")

    out = Console(file=open(tmp_path / "log.txt", "w"), width=300)  # noqa: SIM115
    result = run(
        config(tiny_model_dir, train_file, tmp_path, *args[1:], "train.max_steps=6"), resume=True, console=out
    )
    out.file.close()
    log = (tmp_path / "log.txt").read_text()
    assert f"{train_file}:5 changed since the run started (1 record(s) changed, 0 added, 0 removed)" in log, (
        log
    )
    assert result.steps == 6
