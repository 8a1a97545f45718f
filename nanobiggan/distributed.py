"""Data parallelism for the trainer: gradient all-reduce (DDP) and cross-replica BatchNorm (BigGAN App. C).

Under torchrun every process trains on its own shard of each batch. DDP all-reduces the gradients, so the
replicas stay identical; cross-replica BatchNorm makes G's batch statistics those of the whole batch, as the
paper's TPU runs computed them, instead of each replica's slice. On GPUs that is torch's SyncBatchNorm; on
CPUs (gloo), where SyncBatchNorm cannot run (GPU-only kernels, and DDP refuses it), `CrossReplicaBatchNorm`.

Tutorial: tutorials/10_scaling_up.md
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


class CrossReplicaBatchNorm(nn.BatchNorm2d):
    """Cross-replica BN on CPU (gloo): the batch mean and variance over every replica come from differentiable
    all-reduces of per-channel sums, whose backward all-reduces the gradients as SyncBatchNorm's does. Same
    state as BatchNorm2d; plain BatchNorm2d when not training or not distributed."""

    def forward(self, x):  # (n c h w)
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        xf = x.float()  # statistics in fp32, under autocast too
        local = torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([x.numel() // x.shape[1]])])  # (c+1): sums, count
        sums = dist_nn.all_reduce(local)  # over every replica; its backward all-reduces the gradients
        count = sums[-1].detach()
        mean = sums[:-1] / count  # (c); mean[:, None, None] broadcasts over (n c h w)
        var = dist_nn.all_reduce((xf - mean[:, None, None]).pow(2).sum((0, 2, 3))) / count  # biased, as BN uses
        if self.track_running_stats:
            with torch.no_grad():  # as BatchNorm2d: the unbiased variance goes into the running average
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * count / (count - 1).clamp_min(1), m)
        out = (xf - mean[:, None, None]) * torch.rsqrt(var + self.eps)[:, None, None]
        if self.affine:
            out = out * self.weight[:, None, None] + self.bias[:, None, None]
        return out.to(x.dtype)


def convert_cross_replica_batchnorm(module: nn.Module) -> nn.Module:
    """Replace, in place, every nn.BatchNorm2d inside `module` by a CrossReplicaBatchNorm holding the very same
    parameters and buffers (an optimizer built before keeps updating them), as nn.SyncBatchNorm's converter
    does. Returns `module`."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = CrossReplicaBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            for key, tensor in [*child.named_parameters(recurse=False), *child.named_buffers(recurse=False)]:
                setattr(bn, key, tensor)
            setattr(module, name, bn.train(child.training))
        else:
            convert_cross_replica_batchnorm(child)
    return module


def process_group_backend(device: torch.device) -> str:
    """torch.distributed's backend for this device: NCCL on GPUs, TorchTPU's "tpu_dist" on TPUs, gloo on CPUs."""
    return {"cuda": "nccl", "tpu": "tpu_dist"}.get(device.type, "gloo")


def data_parallel(model: nn.Module, device: torch.device) -> DDP:
    """`model` with cross-replica BatchNorm (SyncBatchNorm on GPUs, CrossReplicaBatchNorm elsewhere: CPUs, TPUs),
    wrapped in DDP. The BatchNorms are replaced inside `model` itself, which stays the module to save and average."""
    if device.type == "cuda":  # SyncBatchNorm's kernels are CUDA's
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        convert_cross_replica_batchnorm(model)
    return DDP(model)
