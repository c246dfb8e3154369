"""Worker processes of the cache build and the duplicate hashing skip the program's main module."""

import sys
from multiprocessing import spawn

from brainkd.data.processes import main_module_hidden


def test_workers_skip_main_module():
    original = sys.modules["__main__"]
    with main_module_hidden():
        # What multiprocessing sends each new worker so that it can set up its __main__.
        preparation = spawn.get_preparation_data("worker")
    assert "init_main_from_name" not in preparation
    assert "init_main_from_path" not in preparation
    assert sys.modules["__main__"] is original
