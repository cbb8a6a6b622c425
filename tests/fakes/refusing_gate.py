"""A TCP gate on 127.0.0.1 that refuses connections until it is opened, then forwards them to a server.

Its port is bound but not listening, so the kernel answers a SYN with a reset and the client's connect()
fails with ECONNREFUSED before one byte of the request is sent, as when a server is down. After `open()`
it listens and pipes each connection to the target. This is a real refusal, not a reset after the request
(that one is ambiguous: the server may have acted on it).
"""

from __future__ import annotations

import socket
import threading


class RefusingGate:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.opened = threading.Event()

    def __enter__(self) -> RefusingGate:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def open(self) -> None:
        self.sock.listen(16)
        self.opened.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
            back.start()
            self._pipe(client, upstream)
            back.join()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
