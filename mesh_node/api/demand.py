"""This node's client demand per model, as `ModelDemand` records for its gossiped `Load`.

Pure: every call takes `now` (monotonic seconds). Only requests that entered the mesh through
this node are counted (a forwarded request is its origin's demand), so summing over the members
counts each request once. The smoothed load rises fast and falls slowly (timing.py demand_rise,
demand_fall): a burst adds a replica within seconds, a lull does not drop it at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mesh_node.election.demand import quantise_age
from mesh_node.records import KEEP_DEFAULT, KEEP_FOREVER, ModelDemand
from mesh_node.records_wire import MAX_DEMAND
from mesh_node.timing import DEFAULT_TIMINGS, Timings

FORGET_S = 86_400.0  # an entry older than a day (and not kept forever) is dropped


@dataclass
class _Entry:
    inflight: int = 0
    load: float = 0.0
    last: float = 0.0  # when the last request began
    keep: int = KEEP_DEFAULT
    at: float = 0.0  # when `load` was last advanced


@dataclass
class DemandBook:
    """Open requests, last request and keep-alive per model id."""

    timings: Timings = DEFAULT_TIMINGS
    _models: dict[str, _Entry] = field(default_factory=dict)

    def begin(self, model: str, keep: int | None, now: float) -> bool:
        """A client request for `model` began (`keep`: its keep-alive in seconds, KEEP_FOREVER,
        or None when it named none). True when the model had no open request here: news the
        mesh should hear at once (it may have to load the model)."""
        e = self._models.setdefault(model, _Entry(at=now))
        self._advance(e, now)
        fresh = e.inflight == 0
        e.inflight += 1
        e.last = now
        e.keep = KEEP_DEFAULT if keep is None else keep
        return fresh

    def end(self, model: str, now: float) -> bool:
        """That request ended. True when it was the last open one and asked for keep-alive 0
        (unload now: the mesh should hear at once)."""
        e = self._models.get(model)
        if e is None or e.inflight == 0:
            return False
        self._advance(e, now)
        e.inflight -= 1
        return e.inflight == 0 and e.keep == 0

    def inflight(self, model: str) -> int:
        e = self._models.get(model)
        return e.inflight if e is not None else 0

    def records(self, now: float) -> tuple[ModelDemand, ...]:
        """The demand to gossip now, sorted by model id (the most recent MAX_DEMAND)."""
        for model, e in list(self._models.items()):
            self._advance(e, now)
            if (e.inflight == 0 and now - e.last > FORGET_S and e.keep != KEEP_FOREVER
                    and e.keep < now - e.last):
                del self._models[model]
        recent = sorted(self._models.items(), key=lambda kv: (-kv[1].last, kv[0]))[:MAX_DEMAND]
        return tuple(ModelDemand(m, e.inflight, _quantise_load(e.load),
                                 quantise_age(now - e.last), e.keep)
                     for m, e in sorted(recent))

    def _advance(self, e: _Entry, now: float) -> None:
        dt = max(0.0, now - e.at)
        e.at = now
        tau = self.timings.demand_rise if e.inflight > e.load else self.timings.demand_fall
        e.load += (e.inflight - e.load) * (1.0 - math.exp(-dt / tau))


def _quantise_load(x: float) -> float:
    """Quarter steps (and 0 below 0.05): the record changes when the load does, not every tick."""
    return 0.0 if x < 0.05 else round(x * 4) / 4
