"""A threaded HTTP server on 127.0.0.1 that counts what it answers, for the benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True


class CountingServer:
    """Subclasses answer in :meth:`handle` and call :meth:`_count`; use it as a context
    manager so the server stops by itself."""

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def _count(self, status: str, size: int = 0) -> None:
        with self.lock:
            self.stats["requests"] += 1
            self.stats[status] += 1
            self.stats["bytes"] += size

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.stats)

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
