import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import settings

# One torch thread: CI has 2 cores, and tests are small ops where OpenMP threads cost more than they save
# (measured: a 288x32 QR took 0.1 ms on 1 thread, 120 ms on 2 under load). Keep Hypothesis runs short.
torch.set_num_threads(1)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def cli_error():
    """cli_error(main, argv) -> the message of the one-line `error: ...` exit a bad command must give."""
    def run(main, argv) -> str:
        with pytest.raises(SystemExit) as e:
            main(argv)
        msg = e.value.code
        assert isinstance(msg, str) and msg.startswith("error: ") and "\n" not in msg, msg
        return msg
    return run


@pytest.fixture(scope="session")
def fake_cifar10(tmp_path_factory):
    """A folder holding a fake cifar-10-batches-py/ in the official python-batch format: 5 train batches of 8
    random images and 1 test batch. Read it only: it is shared by the whole session."""
    root = tmp_path_factory.mktemp("fake_cifar10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 8).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root
