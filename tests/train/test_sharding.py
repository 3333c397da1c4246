"""FSDP's sharded optimizer state is saved whole and resumes exactly: two CPU processes (gloo) with
torch's FSDP2 `fully_shard`. (accelerate runs FSDP only on GPUs; this drives chattune's helpers directly.)"""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_model_state_dict, set_model_state_dict)
    from chattune.train.sharding import full_optimizer_state, load_optimizer_state

    out = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)

    def sharded_model():
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3))
        for layer in (m[0], m[2]):
            fully_shard(layer)
        fully_shard(m)
        return m, torch.optim.AdamW(m.parameters(), lr=1e-2)

    def step(m, opt, i):
        g = torch.Generator().manual_seed(100 * i + rank)
        m(torch.randn(4, 6, generator=g)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()

    model, opt = sharded_model()
    for i in range(2):
        step(model, opt, i)
    saved_opt = full_optimizer_state(model, opt, sharded=True)
    saved_model = get_model_state_dict(model, options=full)
    if rank == 0:
        # rank 0 holds all of it, in full shapes, as plain tensors a weights_only load accepts
        shapes = {k: tuple(v["exp_avg"].shape) for k, v in saved_opt["state"].items()}
        assert shapes == {"0.weight": (10, 6), "0.bias": (10,), "2.weight": (3, 10), "2.bias": (3,)}, shapes
        torch.save({"opt": saved_opt, "model": saved_model}, out + "/ckpt.pt")
    dist.barrier()
    for i in range(2, 4):
        step(model, opt, i)
    continued = get_model_state_dict(model, options=full)

    ckpt = torch.load(out + "/ckpt.pt", weights_only=True)
    resumed, opt2 = sharded_model()
    set_model_state_dict(resumed, ckpt["model"], options=StateDictOptions(full_state_dict=True))
    load_optimizer_state(resumed, opt2, ckpt["opt"], sharded=True)
    for i in range(2, 4):
        step(resumed, opt2, i)
    after = get_model_state_dict(resumed, options=full)
    if rank == 0:
        assert all(torch.equal(continued[k], after[k]) for k in continued), "resume differs"
        print("RESUMED EXACTLY")
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_fsdp_optimizer_state_is_gathered_whole_and_resumes_bitwise(tmp_path):
    script = tmp_path / "fsdp_resume.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "RESUMED EXACTLY" in result.stdout, result.stderr[-3000:]
