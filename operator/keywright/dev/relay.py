"""A TCP relay from this machine's loopback into the node's network namespace.

Owns: copying bytes both ways between connections accepted on a listening socket that
was bound on the host's loopback (and handed over as an inherited file descriptor) and
a fixed address that only exists inside the node's namespace, where this process runs
(started under `nsenter --net`). TLS passes through untouched, so the API server's own
certificate is what clients check.
Must not: listen on anything but the socket it was given, or connect anywhere but its
one target.

Usage (by keywright.dev.node):
    nsenter --net=/run/netns/NS python -m keywright.dev.relay FD HOST:PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve(listener: socket.socket, host: str, port: int) -> None:
    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, target_w), _pipe(target_r, client_w))
        for writer in (client_w, target_w):
            writer.close()

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    fd, target = int(argv[0]), argv[1]
    host, _, port = target.rpartition(":")
    listener = socket.socket(fileno=fd)
    listener.setblocking(False)
    asyncio.run(_serve(listener, host, int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
