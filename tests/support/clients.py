"""Counting the registry clients a command makes and closes (they hold connections)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.registry import RegistryClient


@dataclass
class ClientCount:
    made: list[RegistryClient] = field(default_factory=list)
    closed: list[RegistryClient] = field(default_factory=list)

    def clear(self) -> None:
        self.made.clear()
        self.closed.clear()

    def all_closed(self) -> bool:
        return sorted(map(id, self.closed)) == sorted(map(id, self.made))


def count_clients(monkeypatch: pytest.MonkeyPatch) -> ClientCount:
    """From now on (in this test), every RegistryClient made and every close() are recorded."""
    count = ClientCount()
    real_init, real_close = RegistryClient.__init__, RegistryClient.close

    def counting_init(self: RegistryClient, *args: Any, **kwargs: Any) -> None:
        count.made.append(self)
        real_init(self, *args, **kwargs)

    def counting_close(self: RegistryClient) -> None:
        count.closed.append(self)
        real_close(self)

    monkeypatch.setattr(RegistryClient, "__init__", counting_init)
    monkeypatch.setattr(RegistryClient, "close", counting_close)
    return count
