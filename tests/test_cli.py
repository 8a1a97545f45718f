"""nanobiggan/lab/cli.py: the command lines' shared parts that tests/test_bad_input.py's battery does not reach:
bare boolean flags, and --device tpu where TorchTPU is installed (a stand-in torch_tpu, in a child process: it
renames torch's PrivateUse1 device to "tpu", which cannot be undone in this one)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from nanobiggan.distributed import process_group_backend
from nanobiggan.lab.cli import Parser, add_config_flags, config_overrides

REPO = Path(__file__).resolve().parents[1]


def test_a_boolean_config_flag_alone_means_true():
    p = Parser()
    add_config_flags(p)
    assert config_overrides(p.parse_args(["--hflip"])) == {"hflip": True}
    assert config_overrides(p.parse_args(["--hflip", "false", "--tensorboard"])) == {"hflip": False,
                                                                                    "tensorboard": True}
    assert config_overrides(p.parse_args([])) == {}


def test_tpu_device_with_torch_tpu_installed(tmp_path):
    """With TorchTPU importable, --device tpu is chip LOCAL_RANK (tpu:N picks one), a chip that is not there is
    refused in one line, and the process group is TorchTPU's "tpu_dist"."""
    fake = tmp_path / "torch_tpu"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""
        import types, torch
        torch.utils.rename_privateuse1_backend("tpu")
        torch.tpu = types.SimpleNamespace(device_count=lambda: 4)
    """))
    script = textwrap.dedent("""
        from nanobiggan.distributed import process_group_backend
        from nanobiggan.lab.cli import pick_device
        print(pick_device("tpu"), pick_device("tpu", local_rank=2), pick_device("tpu:3"),
              process_group_backend(pick_device("tpu")))
        try:
            pick_device("tpu:4")
        except ValueError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}, check=True).stdout
    first, said = out.splitlines()
    assert first == "tpu:0 tpu:2 tpu:3 tpu_dist"
    assert said == "--device tpu:4: this machine has 4 TPU chip(s), tpu:0..tpu:3"


def test_process_group_backends():
    assert [process_group_backend(torch.device(d)) for d in ("cpu", "cuda", "mps")] == ["gloo", "nccl", "gloo"]
