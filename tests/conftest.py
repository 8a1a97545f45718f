import os

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
