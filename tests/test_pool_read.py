"""Reading the pool while a host dies: a node is never seen live with the GPUs its worker's
keepers held shown free."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

from gage_queue.pool import read_pool

REPO = Path(__file__).resolve().parent.parent

HOLDER = """
import os, sys, time
from gage_queue.layout import gpu_lock
from gage_queue.locks import lock_fd, open_lock_file
from gage_queue.pool import Holder, NodeInfo, hold_node_name, write_holder, write_node_info
runs = sys.argv[1]
info = NodeInfo(node="gage@h", host="h", queues=("gage",), slots=1, gpus=("0",))
write_node_info(runs, info)
hold_node_name(runs, "h", "gage@h")  # its lock is released first when the process dies
fd = open_lock_file(gpu_lock(runs, "h", "0"), create=True)
assert lock_fd(fd)
write_holder(fd, Holder("run-1"))
print("ready", flush=True)
time.sleep(60)
"""


def test_a_node_dying_while_the_pool_is_read_never_shows_its_gpus_free(tmp_path):
    """A process holding a node lock and a GPU lock (as a host's worker and keeper do) is
    SIGKILLed at a random moment while the pool is read in a loop, 60 times: no reading has
    the node live and its GPU free (without the check after the holders, about one kill in
    three lands between the node's probe and the GPU's)."""
    runs = str(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(5)
    for _ in range(60):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, runs], env=env,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "ready\n"
            first = read_pool(runs)  # live, its GPU held: then it dies while being read
            assert [n.info.node for n in first.nodes] == ["gage@h"]
            assert first.gpus["h"]["0"] is not None
            threading.Timer(rng.uniform(0.0, 0.004), proc.send_signal, [signal.SIGKILL]).start()
            while (pool := read_pool(runs)).nodes:
                assert pool.gpus["h"]["0"] is not None, "a live node whose GPU shows free"
        finally:
            proc.kill()
            proc.wait()
