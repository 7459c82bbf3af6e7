"""Ghost batch norm (resnet.ghost_bn): BN statistics over groups of the batch, the paper's 2 x 64.

Group = batch (or 0) must be plain nn.BatchNorm2d bit for bit; a group g < batch must be plain BN
applied to each run of g images alone, with running statistics the mean of the groups' updates.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from resnet.models.ghost_bn import GhostBatchNorm2d
from resnet.models.measure import conv3x3_responses
from resnet.models.nets import build_model
from resnet.engine.step import TrainStep
from tests.unit.test_step import FrozenGraph

CHANNELS = 6


def _pair(group: int, seed: int = 0):
    """A ghost BN and a plain BN with the same (non-trivial) affine parameters and running stats."""
    torch.manual_seed(seed)
    plain = nn.BatchNorm2d(CHANNELS)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
        plain.running_mean.uniform_(-1, 1)
        plain.running_var.uniform_(0.5, 2)
    ghost = GhostBatchNorm2d(CHANNELS, group)
    ghost.load_state_dict(plain.state_dict())
    return ghost, plain


def _batch(size: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Each image its own offset and scale, so that groups really have different statistics.
    offsets = torch.randn(size, 1, 1, 1, generator=generator) * 2
    return torch.randn(size, CHANNELS, 5, 5, generator=generator) * (1 + offsets.abs()) + offsets


def _assert_equal_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("group", [0, 8, 16])
def test_group_zero_or_at_least_the_batch_is_plain_batch_norm_bit_for_bit(group):
    ghost, plain = _pair(group)
    for step in range(3):
        x = _batch(8, seed=step).requires_grad_()
        x_plain = x.detach().clone().requires_grad_()
        out, out_plain = ghost(x), plain(x_plain)
        assert torch.equal(out, out_plain)
        out.square().sum().backward()
        out_plain.square().sum().backward()
        assert torch.equal(x.grad, x_plain.grad)
    assert torch.equal(ghost.weight.grad, plain.weight.grad) and torch.equal(ghost.bias.grad, plain.bias.grad)
    _assert_equal_state(ghost, plain)
    assert int(ghost.num_batches_tracked) == 3


@pytest.mark.parametrize("batch, group", [(8, 4), (12, 4), (8, 2)])
def test_a_smaller_group_is_plain_batch_norm_on_each_group_alone(batch, group):
    ghost, plain = _pair(group)
    groups = batch // group
    for step in range(3):
        x = _batch(batch, seed=step)
        # Plain BN on each run of `group` images alone, each from the same starting stats.
        copies = [copy.deepcopy(plain) for _ in range(groups)]
        expected = torch.cat([bn(chunk) for bn, chunk in zip(copies, x.split(group))])
        out = ghost(x)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
        # Running stats: the mean of the groups' updates (each group updates its own copy).
        with torch.no_grad():
            plain.running_mean.copy_(torch.stack([bn.running_mean for bn in copies]).mean(0))
            plain.running_var.copy_(torch.stack([bn.running_var for bn in copies]).mean(0))
            plain.num_batches_tracked.add_(1)
        torch.testing.assert_close(ghost.running_mean, plain.running_mean, rtol=0, atol=1e-6)
        torch.testing.assert_close(ghost.running_var, plain.running_var, rtol=0, atol=1e-6)
        assert torch.equal(ghost.num_batches_tracked, plain.num_batches_tracked)
        # ... and not what plain BN over the whole batch gives: the check above can fail.
        whole = copy.deepcopy(plain)
        assert (whole(x) - out).abs().max() > 1e-2


def test_gradients_flow_through_each_group():
    ghost, plain = _pair(4)
    x = _batch(8).requires_grad_()
    ghost(x).square().mean().backward()
    chunks = [c.detach().clone().requires_grad_() for c in x.detach().split(4)]
    copies = [copy.deepcopy(plain) for _ in chunks]
    torch.cat([bn(c) for bn, c in zip(copies, chunks)]).square().mean().backward()
    torch.testing.assert_close(x.grad, torch.cat([c.grad for c in chunks]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ghost.weight.grad, sum(bn.weight.grad for bn in copies), rtol=0, atol=1e-6)
    torch.testing.assert_close(ghost.bias.grad, sum(bn.bias.grad for bn in copies), rtol=0, atol=1e-6)


def test_eval_mode_uses_the_running_averages_as_plain_batch_norm():
    ghost, plain = _pair(2)
    x = _batch(8)
    assert torch.equal(ghost.eval()(x), plain.eval()(x))
    _assert_equal_state(ghost, plain)  # eval updates nothing


def test_a_batch_the_group_does_not_divide_is_refused_with_the_fix():
    ghost, _ = _pair(4)
    with pytest.raises(ValueError, match=r"batch of 10 images does not split into BN groups of 4.*bn_group"):
        ghost(_batch(10))
    model = build_model("cifar-resnet-8", bn_group=4)
    with pytest.raises(ValueError, match="bn_group"):
        model(torch.randn(6, 3, 32, 32))
    model.eval()(torch.randn(6, 3, 32, 32))  # eval mode normalises with the running averages


@pytest.mark.parametrize("group", [-1, 1.5, True])
def test_a_bad_group_is_refused(group):
    with pytest.raises(ValueError, match="BN group must be an integer >= 0"):
        GhostBatchNorm2d(CHANNELS, group)


def test_channels_last_and_bf16_autocast_match_plain_batch_norm_per_group():
    ghost, plain = _pair(4)
    x = _batch(8)
    out_contiguous = copy.deepcopy(ghost)(x)
    out = ghost(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, out_contiguous, rtol=0, atol=1e-6)
    ghost, plain = _pair(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = x.to(torch.bfloat16)
        out = ghost(h)
        copies = [copy.deepcopy(plain) for _ in range(2)]
        expected = torch.cat([bn(c) for bn, c in zip(copies, h.split(4))])
    assert out.dtype == expected.dtype == torch.bfloat16 and ghost.running_mean.dtype == torch.float32
    assert torch.equal(out, expected)


def test_the_model_keeps_plain_batch_norm_state_and_figure7_layers():
    torch.manual_seed(0)
    plain = build_model("cifar-resnet-20")
    torch.manual_seed(0)
    ghost = build_model("cifar-resnet-20", bn_group=64)
    assert ghost.bn_group == 64 and plain.bn_group == 0
    _assert_equal_state(ghost, plain)  # same keys, shapes, and the same initialisation
    bns = [m for m in ghost.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(type(m) is GhostBatchNorm2d and m.group == 64 for m in bns)
    assert all(type(m) is nn.BatchNorm2d for m in plain.modules() if isinstance(m, nn.BatchNorm2d))
    assert [n for n, _ in conv3x3_responses(ghost)] == [n for n, _ in conv3x3_responses(plain)]
    ghost.load_state_dict(plain.state_dict(), strict=True)  # checkpoints load either way
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(ghost.eval()(x), plain.eval()(x))
    # Every BN layer, the option-B/C projection's included, takes the group.
    projection = build_model("resnet-18-c", bn_group=8)
    assert all(type(m) is GhostBatchNorm2d for m in projection.modules() if isinstance(m, nn.BatchNorm2d))


def test_the_models_training_forward_is_the_plain_model_on_each_group():
    """A net with bn_group g on a batch of 2g: each half as the plain net on that half alone."""
    torch.manual_seed(0)
    ghost = build_model("cifar-resnet-8", bn_group=4).train()
    plain = build_model("cifar-resnet-8").train()
    plain.load_state_dict(ghost.state_dict())
    x = torch.randn(8, 3, 32, 32)
    halves = [copy.deepcopy(plain) for _ in range(2)]
    expected = torch.cat([net(h) for net, h in zip(halves, x.split(4))])
    torch.testing.assert_close(ghost(x), expected, rtol=0, atol=1e-5)
    for name, buffer in ghost.named_buffers():
        if "running" in name:
            mean = torch.stack([dict(net.named_buffers())[name] for net in halves]).mean(0)
            torch.testing.assert_close(buffer, mean, rtol=0, atol=1e-6)
    assert (plain(x) - expected).abs().max() > 1e-3  # plain BN over 8 images is something else


def _train(graphs: bool, steps: int = 8):
    torch.manual_seed(0)
    model = build_model("cifar-resnet-8", bn_group=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    step = TrainStep(model, optimizer, torch.device("cpu"), graphs=graphs,
                     graph_factory=(lambda: FrozenGraph(optimizer)) if graphs else None)
    generator = torch.Generator().manual_seed(1)
    losses = []
    for i in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = 0.1 if i < 5 else 0.01
        images = torch.randn(8, 3, 32, 32, generator=generator)
        loss, _ = step(images, torch.randint(0, 10, (8,), generator=generator))
        losses.append(float(loss))
    return losses, model.state_dict(), step


def test_ghost_bn_trains_through_the_graphed_step_exactly_as_eagerly():
    """With the CUDA-graph stand-in of tests/test_step.py (no GPU here): same losses, weights, stats."""
    torch.use_deterministic_algorithms(True)
    try:
        eager, graphed = _train(False), _train(True)
    finally:
        torch.use_deterministic_algorithms(False)
    assert graphed[2].replays > 0 and graphed[2].mode == "cuda-graph"
    assert eager[0] == graphed[0]
    assert eager[1].keys() == graphed[1].keys()
    for key in eager[1]:
        assert torch.equal(eager[1][key], graphed[1][key]), key


def test_ghost_bn_compiles_as_one_graph():
    """fullgraph=True fails on a graph break (host sync, data-dependent Python): none here."""
    ghost, plain = _pair(4)
    compiled = torch.compile(copy.deepcopy(ghost), fullgraph=True, dynamic=False)
    x = _batch(8)
    torch.testing.assert_close(compiled(x), ghost(x), rtol=0, atol=1e-5)


def _ddp_worker(rank: int, world: int, init_file: str, results) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_model("cifar-resnet-8", bn_group=4).train()
        alone = copy.deepcopy(model)
        ddp = DistributedDataParallel(model)
        images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(rank))
        out = ddp(images)
        out.square().mean().backward()
        expected = alone(images)  # this process's 8 images in two groups of 4, as without DDP
        stats = {name: value for name, value in model.named_buffers() if "running" in name}
        results.put((rank, float((out - expected).abs().max()),
                     all(torch.equal(stats[name], value) for name, value in alone.named_buffers() if name in stats),
                     # A list, not a tensor: a tensor crosses the queue as shared memory that may be gone
                     # once this process has exited (FileNotFoundError in the parent, under load).
                     model.fc.weight.grad.flatten().tolist()))
    finally:
        dist.destroy_process_group()


def test_ghost_bn_groups_each_process_batch_under_ddp(tmp_path):
    """Two gloo processes: each normalises its own batch in groups; gradients are all-reduced."""
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_ddp_worker, args=(rank, 2, str(tmp_path / "init"), results))
               for rank in range(2)]
    for worker in workers:
        worker.start()
    found = sorted(results.get(timeout=300) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    for rank, difference, same_stats, _ in found:
        assert difference <= 1e-6 and same_stats, rank
    assert found[0][3] == found[1][3]  # one all-reduced gradient
