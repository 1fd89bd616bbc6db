"""When to retry a registry request, and how long to wait: bounded in attempts AND in total time.

A push runs unattended in CI; a registry that stays down must fail the job in a known time, not
hang it. Waits are "full jitter" exponential backoff (AWS architecture blog) so that parallel
pushers do not retry in lockstep; a 429's Retry-After is honoured but never beyond the budget.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.core import settings

# 429 = rate limited, 5xx = the registry or a proxy in front of it is (maybe briefly) unwell.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a TCP/TLS connection, and between bytes of a response."""

    connect: float = settings.CONNECT_TIMEOUT.default
    read: float = settings.READ_TIMEOUT.default  # generous: a registry may hash a large blob first

    def as_requests(self) -> tuple[float, float]:
        return (self.connect, self.read)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one logical request (and for resuming one upload).

    `max_attempts` counts the first try; `total_seconds` bounds the time spent across all
    attempts and waits. `sleep`/`clock`/`rng` are injectable so tests run without waiting.
    """

    max_attempts: int = settings.RETRY_ATTEMPTS.default
    total_seconds: float = settings.RETRY_SECONDS.default
    base_delay: float = 0.5
    max_delay: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.total_seconds < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy times must not be negative")

    def backoff(self, attempt: int) -> float:
        """Full-jitter wait before attempt number `attempt + 1` (attempt counts from 1)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return float(ceiling * self.rng())

    def start(self) -> RetryBudget:
        return RetryBudget(self, self.clock() + self.total_seconds)


@dataclass
class RetryBudget:
    """The state of one retried operation: attempts used and the deadline."""

    policy: RetryPolicy
    deadline: float
    attempts: int = 0

    def next_wait(self, retry_after: float | None = None) -> float | None:
        """Record a failed attempt; return seconds to wait before the next, or None to give up."""
        self.attempts += 1
        if self.attempts >= self.policy.max_attempts:
            return None
        remaining = self.deadline - self.policy.clock()
        if remaining <= 0:
            return None
        wait = retry_after if retry_after is not None else self.policy.backoff(self.attempts)
        return max(0.0, min(wait, remaining))

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self.policy.sleep(seconds)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
