"""Use cases for running the service rather than chatting: is it ready to take traffic?"""

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from convocore.application.ports import Probe
from convocore.domain.errors import Unavailable

log = logging.getLogger("convocore.operations")
OK = "ok"


@dataclass(frozen=True, slots=True, kw_only=True)
class Readiness:
    checks: dict[str, str]  # name -> "ok", or why not

    @property
    def ready(self) -> bool:
        return all(outcome == OK for outcome in self.checks.values())

    @property
    def failing(self) -> dict[str, str]:
        return {name: outcome for name, outcome in self.checks.items() if outcome != OK}


class CheckReadiness:
    """Ask every dependency at once; each gets ``timeout_s`` to answer."""

    def __init__(self, *, probes: Mapping[str, Probe], timeout_s: float = 2.0) -> None:
        self._probes, self._timeout_s = dict(probes), timeout_s

    async def execute(self) -> Readiness:
        names = list(self._probes)
        outcomes = await asyncio.gather(*(self._check(name) for name in names))
        return Readiness(checks=dict(zip(names, outcomes, strict=True)))

    async def _check(self, name: str) -> str:
        try:
            await asyncio.wait_for(self._probes[name].ping(), self._timeout_s)
        except TimeoutError:
            return f"no answer within {self._timeout_s:g}s"
        except Unavailable as error:
            return error.detail
        except Exception as error:  # whatever else a probe raises, the dependency is not usable
            log.warning("readiness check %s failed", name, exc_info=True)
            return f"failed: {type(error).__name__}"
        return OK
