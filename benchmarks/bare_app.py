"""The framework's floor: an ASGI app that answers every request 200 `{"code":"OK"}` and
does nothing else, served by the verifier's own server stack (granian, ASGI, one worker,
one runtime thread, uvloop; wrkload.Floor). The verifier's rate over this one is what
its own work costs, on whatever machine the run is on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

BODY = b'{"code":"OK"}'
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"application/json"),
                     (b"content-length", str(len(BODY)).encode())]}
END = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
              send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    await send(START)
    await send(END)


class Rsgi:
    """The same answer on granian's RSGI interface (`benchmarks.bare_app:rsgi`): the
    floor of the server's faster interface, for comparison."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        protocol.response_bytes(200, [("content-type", "application/json")], BODY)


rsgi = Rsgi()
