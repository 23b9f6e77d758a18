"""What a live session counts: frames captured, animated and dropped, and each result's latency."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class LiveStats:
    captured: int = 0            # frames the camera delivered
    processed: int = 0           # frames the model animated
    dropped: int = 0             # camera frames replaced by a newer one before the model took them
    read_failures: int = 0       # failed camera reads
    latencies: list = field(default_factory=list)   # seconds from capture to display/output, per result
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    stop_reason: str = ""

    @property
    def seconds(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_latency(self) -> float:
        return sum(self.latencies) / len(self.latencies) if self.latencies else 0.0

    @property
    def p95_latency(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def as_dict(self) -> dict:
        return {"captured": self.captured, "processed": self.processed, "dropped": self.dropped,
                "read_failures": self.read_failures, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                "latency_mean_ms": round(1000 * self.mean_latency, 1),
                "latency_p95_ms": round(1000 * self.p95_latency, 1), "stop_reason": self.stop_reason}
