"""Names of the agent's threads in the kernel: `top -H` and /proc/PID/task/TID/comm tell a stuck reader, the
sampler and the HTTP server apart."""

import ctypes


def name_thread(name: str, native_id: int | None = None) -> None:
    """A thread's name in the kernel (`top -H`, /proc/PID/task/TID/comm): a stuck reader is seen by name. The
    calling thread's, or that of the thread `native_id` of this process; a failure only leaves the old name."""
    if native_id is None:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        return
    try:
        with open(f"/proc/self/task/{native_id}/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass
