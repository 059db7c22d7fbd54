"""A TCP proxy on 127.0.0.1 that can be told to stop forwarding bytes, as a stalled database would.

While stalled, connections stay open and the kernel still accepts what is sent, but nothing
is passed on in either direction: no error, no answer. ``resume()`` forwards again.
"""
from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class StallProxy:
    """``with StallProxy(5432) as proxy: ...  proxy.stall(); ...  proxy.resume()``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.closed = threading.Event()
        self.threads: list[threading.Thread] = []

    def stall(self) -> None:
        self.forwarding.clear()

    def resume(self) -> None:
        self.forwarding.set()

    def __enter__(self) -> StallProxy:
        self._start(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self.closed.set()
        self.forwarding.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self.listener.close()
        for thread in self.threads:
            thread.join(5)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.forwarding.wait()
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._start(self._pump, client, server)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector, client, server:
            for sock in peers:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while not self.closed.is_set():
                # Stalled: nothing is read, so nothing is forwarded and nothing fails.
                if not self.forwarding.wait(0.1):
                    continue
                for key, _ in selector.select(0.1):
                    try:
                        data = key.fileobj.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    peers[key.fileobj].setblocking(True)
                    try:
                        peers[key.fileobj].sendall(data)
                    except OSError:
                        return
                    peers[key.fileobj].setblocking(False)
