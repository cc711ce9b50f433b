"""Small socket helpers shared by the embedded PostgreSQL and Redis starters."""

import socket
import time
from collections.abc import Callable


def port_is_free(host: str, port: int) -> bool:
    """Return True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, preferred: int, *, fixed: bool) -> int | None:
    """``preferred`` if it is free; else, unless the port was configured explicitly, any free one.

    Returns None when a configured port is busy (the caller reports it).
    """
    if port_is_free(host, preferred):
        return preferred
    if fixed:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, timeout_seconds: float, step_seconds: float = 0.1
) -> bool:
    """Poll ``check`` until it returns True or the timeout passes; return its last answer."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step_seconds)
    return check()
