"""A hidden hook for the fault-injection tests: ``VQFAST_FAULT=<point>@<step>`` makes the process
kill itself with SIGKILL (``enospc:<point>@<step>``: fail as a full disk would) when it reaches
``point`` while handling ``step``. Unset, every call is a dictionary lookup and nothing else.

Points: ``step`` (after an optimizer step), ``save:<file>`` (after writing one file of a
checkpoint), ``save:state`` (complete but not yet renamed), ``save:renamed``, ``prune:renamed``
(an old checkpoint moved out of the listing, not yet deleted), ``prune:partial`` (half deleted).
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "VQFAST_FAULT"


def fault(point: str, step: int) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, at = spec.rpartition("@")
    if at != str(step):
        return
    if target == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if target == f"enospc:{point}":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
