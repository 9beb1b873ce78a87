"""Per-user rate limits on the OpenAI endpoint, as the ingress applies them.

A user may make `rpm` calls and spend `tpm` tokens (prompt and completion) in any 60 s;
the admin sets both per user, the config gives the defaults, and no value means no limit.
The ingress counts in a sliding window of its own: a call past a limit is refused with
429 and `Retry-After` (the seconds until the oldest call or tokens in the window expire),
before it reaches a model. Tokens are known once an answer is done, so a call is admitted
while the user's tokens in the window are under `tpm`, and its tokens count when it ends.

argus deploys one ingress replica (Ray Serve LLM's default: its autoscaling never adds a
second); with `replicas` of them, each allows its share (`ceil(limit / replicas)`), and
the cluster's total stays within the limit as long as Serve spreads a user's calls
evenly, which its power-of-two routing does for steady traffic.

Plain values only: no Ray import, so the unit tests run the code the ingress runs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None  # calls a minute
    tpm: int | None = None  # tokens a minute

    def share(self, replicas: int) -> Limits:
        """One of `replicas` ingress replicas' share of these limits."""
        n = max(1, replicas)
        return Limits(
            None if self.rpm is None else max(1, math.ceil(self.rpm / n)),
            None if self.tpm is None else max(1, math.ceil(self.tpm / n)),
        )


def limits_of(table: dict[str, Any], user: str) -> Limits:
    """A user's limits from the ingress's table (`argus.cluster.access`), for this replica."""
    every = table.get("limits")
    entry = every.get(user) if isinstance(every, dict) else None
    if not isinstance(entry, dict):
        return Limits()
    replicas = table.get("ingress_replicas", 1)
    limits = Limits(_positive(entry.get("rpm")), _positive(entry.get("tpm")))
    return limits.share(replicas if isinstance(replicas, int) else 1)


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class Refusal:
    kind: str  # "requests" or "tokens": the limit the call hit
    wait_s: float  # until a call may be made again


@dataclass
class _Window:
    calls: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0

    def expire(self, now: float) -> None:
        while self.calls and self.calls[0] <= now - WINDOW_S:
            self.calls.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW_S:
            self.token_sum -= self.tokens.popleft()[1]


@dataclass
class RateLimiter:
    windows: dict[str, _Window] = field(default_factory=dict)

    def admit(self, user: str, now: float, limits: Limits) -> Refusal | None:
        """None, and the call is counted; or which limit it hit and how long to wait."""
        if limits.rpm is None and limits.tpm is None:
            return None
        w = self.windows.setdefault(user, _Window())
        w.expire(now)
        hit = []
        if limits.rpm is not None and len(w.calls) >= limits.rpm:
            hit.append(Refusal("requests", w.calls[len(w.calls) - limits.rpm] + WINDOW_S - now))
        if limits.tpm is not None and w.token_sum >= limits.tpm:
            hit.append(Refusal("tokens", self._tokens_free_at(w, limits.tpm) - now))
        if hit:
            return max(hit, key=lambda r: r.wait_s)
        w.calls.append(now)
        return None

    @staticmethod
    def _tokens_free_at(w: _Window, tpm: int) -> float:
        """When enough of the window's tokens have expired to be under `tpm` again."""
        left = w.token_sum
        for at, n in w.tokens:
            left -= n
            if left < tpm:
                return at + WINDOW_S
        return w.tokens[-1][0] + WINDOW_S if w.tokens else 0.0

    def spent(self, user: str, now: float, tokens: int) -> None:
        """A call of `user` ended having used `tokens`."""
        if tokens <= 0:
            return
        w = self.windows.setdefault(user, _Window())
        w.tokens.append((now, tokens))
        w.token_sum += tokens

    def forget_idle(self, now: float) -> None:
        """Drop the windows with nothing left in them (users who stopped calling)."""
        for user in list(self.windows):
            w = self.windows[user]
            w.expire(now)
            if not w.calls and not w.tokens:
                del self.windows[user]


def retry_after(seconds: float) -> str:
    """The `Retry-After` header: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
