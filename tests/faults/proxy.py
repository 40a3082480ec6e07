"""A TCP proxy on loopback between workers and a redis-server that can blackhole, delay and reset.

Threads, one pair per connection, so it runs beside the test's own code and needs no event loop::

    with FaultProxy(redis_server.port) as proxy:
        url = proxy.url  # give this to the worker
        proxy.reset()                # every open connection gets a TCP RST now
        proxy.blackhole()            # bytes are read and dropped both ways; connections stay open
        proxy.delay(0.2)             # each chunk waits 0.2 s before it is forwarded
        proxy.heal()                 # forward normally again
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

_CHUNK_BYTES = 65536


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>`` until closed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._blackholed = False
        self._delay_s = 0.0
        self._closed = False
        #: Connections reset by ``reset()``, for the test's figures.
        self.resets = 0
        self._acceptor = threading.Thread(target=self._accept, name="fault proxy", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def blackhole(self) -> None:
        self._blackholed = True

    def delay(self, seconds: float) -> None:
        self._delay_s = seconds

    def heal(self) -> None:
        self._blackholed = False
        self._delay_s = 0.0

    def reset(self) -> int:
        """Send a TCP RST to the client side of every open connection; how many were reset."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            _abort(client)
            _abort(server)
        self.resets += len(pairs)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.reset()
        self._acceptor.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _abort(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(source, target), name="fault proxy pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(_CHUNK_BYTES):
                if self._delay_s:
                    time.sleep(self._delay_s)
                if self._blackholed:
                    continue
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            _abort(source)
            _abort(target)


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer sees a reset rather than an orderly end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        # Wakes the pump blocked in recv() on it: close() alone would not, and the pump would
        # go on reading whatever connection reuses the descriptor.
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
