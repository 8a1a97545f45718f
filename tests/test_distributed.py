"""nanobiggan/distributed.py: cross-replica BatchNorm across 2 gloo processes equals one BatchNorm on the whole batch;
the converter keeps the very parameters and buffers. (A whole 2-process torchrun of train.py: test_train.py.)"""
import copy
import os

import torch
import torch.nn as nn

from nanobiggan.distributed import CrossReplicaBatchNorm, convert_cross_replica_batchnorm


def _bn_worker(rank, world, init_file, x, w, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        bn = CrossReplicaBatchNorm(x.shape[1], momentum=0.3)
        xs = x.chunk(world)[rank].clone().requires_grad_(True)
        out = bn(xs)
        (out * w.chunk(world)[rank]).sum().backward()
        torch.save({"out": out.detach(), "x_grad": xs.grad, "w_grad": bn.weight.grad, "b_grad": bn.bias.grad,
                    "mean": bn.running_mean, "var": bn.running_var}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_cross_replica_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    """2 gloo processes, each with half the batch, give the outputs, input gradients, summed weight gradients
    and running statistics of one plain BatchNorm2d on the whole batch."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(6, 3, 4, 4, generator=g) * 2 + 1, torch.randn(6, 3, 4, 4, generator=g)
    torch.multiprocessing.spawn(_bn_worker, args=(2, str(tmp_path / "init"), x, w, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    ref, xr = nn.BatchNorm2d(3, momentum=0.3), x.clone().requires_grad_(True)
    out = ref(xr)
    (out * w).sum().backward()
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out.detach(), **close)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), xr.grad, **close)
    torch.testing.assert_close(ranks[0]["w_grad"] + ranks[1]["w_grad"], ref.weight.grad, **close)
    torch.testing.assert_close(ranks[0]["b_grad"] + ranks[1]["b_grad"], ref.bias.grad, **close)
    for r in ranks:
        torch.testing.assert_close(r["mean"], ref.running_mean, **close)
        torch.testing.assert_close(r["var"], ref.running_var, **close)


def test_converter_keeps_the_parameters_and_buffers_an_optimizer_holds():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4, affine=False)))
    net[1].running_mean.fill_(0.5)
    reference = copy.deepcopy(net)
    params, opt = list(net.parameters()), torch.optim.SGD(net.parameters(), lr=0.1)
    weight, mean = net[1].weight, net[1].running_mean
    assert convert_cross_replica_batchnorm(net) is net
    assert [type(m).__name__ for m in net.modules()][1:] == ["Conv2d", "CrossReplicaBatchNorm", "Sequential",
                                                             "CrossReplicaBatchNorm"]
    assert net[1].weight is weight and net[1].running_mean is mean and list(net.parameters()) == params
    assert opt.param_groups[0]["params"] == params and not net[2][0].affine
    x = torch.randn(5, 3, 2, 2)  # one process: plain BatchNorm2d, in train mode and in eval mode
    torch.testing.assert_close(net(x), reference(x))
    torch.testing.assert_close(net.eval()(x), reference.eval()(x))
