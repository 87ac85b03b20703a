import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train on one torch thread: two intra-op threads on a shared 2-core machine run ~10x slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
