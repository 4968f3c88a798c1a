"""Load shapes. Not a locustfile name on purpose: ``-f loadtests`` skips ``_*.py``, so the ramp
applies only when named (``-f loadtests,loadtests/_shapes.py``, or ``python -m loadtests --ramp``).
"""

from __future__ import annotations

import os
import time

from locust import LoadTestShape

from loadtests._thresholds import STATE, RampResult
from reports.thresholds import breaches, evaluate


class RampShape(LoadTestShape):
    """Step users up until a threshold breaks; report the highest count that met every one.

    Each step runs ``LOAD_RAMP_STEP_S`` seconds; its first ``LOAD_RAMP_SETTLE_S`` are spawning
    and are not judged. ``min_rps`` is not judged per step (a small step cannot reach it).
    """

    abstract = False

    def __init__(self) -> None:
        super().__init__()
        env = os.environ
        self.step_users = int(env.get("LOAD_RAMP_STEP_USERS", "5"))
        self.step_s = int(env.get("LOAD_RAMP_STEP_S", "30"))
        self.settle_s = int(env.get("LOAD_RAMP_SETTLE_S", "5"))
        self.max_users = int(env.get("LOAD_RAMP_MAX_USERS", "200"))
        self.step = 0
        self.step_started: float | None = None

    def _judge(self, users: int, first: int, last: int) -> bool:
        targets = STATE.targets
        if targets is None:
            return True
        stats = STATE.stats.span(first, last)
        broken = breaches(evaluate(targets.thresholds, stats, last - first + 1, rates=False))
        ramp = STATE.ramp or RampResult()
        STATE.ramp = ramp
        verdict = "pass" if not broken else "breach: " + "; ".join(c.label for c in broken)
        ramp.steps.append({"users": users, "verdict": verdict, "requests": stats["overall"].count})
        if broken:
            ramp.breached_at = users
            return False
        ramp.best_users, ramp.best_span = users, (first, last)
        return True

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        step = int(run_time // self.step_s) + 1
        if step != self.step:
            if self.step > 0:
                users = self.step * self.step_users
                wall_start = time.time() - run_time
                first = int(wall_start + (self.step - 1) * self.step_s) + self.settle_s
                last = int(wall_start + self.step * self.step_s) - 1
                if not self._judge(users, first, last):
                    return None
            self.step = step
        users = self.step * self.step_users
        if users > self.max_users:
            return None
        return users, float(self.step_users)
