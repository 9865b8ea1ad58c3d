"""One PyTorch thread in these tests (see ``tests.helpers.one_torch_thread``)."""

from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture)
