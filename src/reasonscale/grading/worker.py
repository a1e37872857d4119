"""A Math-Verify worker process: one JSON request per stdin line, one JSON Verdict per stdout line.

Started by `math_verify_pool`, which kills it when an item overruns its wall timeout. The worker also limits
itself (address space; CPU time per item), so it cannot exhaust the machine or outlive a parent that died.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sys
from dataclasses import asdict


def _limit_cpu(seconds: float) -> None:
    """Be killed by SIGXCPU after `seconds` more CPU time (plus a second of slack)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def main(memory_mb: int) -> None:
    """Serve requests `{"gold", "prediction", "seconds"}` until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    if memory_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from libraries go to stderr, never into the reply stream
    from reasonscale.grading.math_equal import math_equal

    print(json.dumps({"ready": True}), file=replies, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        _limit_cpu(request["seconds"])
        verdict = math_equal(request["gold"], request["prediction"])
        print(json.dumps(asdict(verdict)), file=replies, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
