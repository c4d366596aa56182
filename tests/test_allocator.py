"""Freed memory kept for reuse (cnncli.engine.allocator): maps of the next image reuse the pages of the
last one's instead of faulting in fresh ones."""

import subprocess
import sys

import pytest

PROBE = """import resource, sys
import numpy as np
from cnncli.engine.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
SIZES = [800_000, 200_000, 1_600_000, 400_000, 800_000] * 8  # float32 maps: 3.2, 0.8, 6.4, 1.6, 3.2 MB, kept
def faults_of_one_forward():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    maps = []
    for size in SIZES:
        a = np.empty(size, np.float32)
        a.fill(1)
        maps.append(a)
    del maps, a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_forward()
print(min(faults_of_one_forward() for _ in range(3)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_map_is_reused_without_page_faults():
    """Reference: the kernel's count of minor page faults (getrusage). 84 MB of maps of five sizes,
    all kept, then freed, as a forward pass does: by default the next pass faults in most of their
    pages again (about 20,000 of 20,500); once memory is kept, almost none."""
    def faults(mode):
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(done.stdout)

    assert faults("default") > 5000
    assert faults("keep") < 500
