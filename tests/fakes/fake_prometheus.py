"""A stand-in for a Prometheus server's ``/api/v1/query``: an http.server in a thread that
answers each query with what the test's ``answer(query, time)`` returns, wrapped as Prometheus
wraps results, and records every query it was asked."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (query, time) -> ("vector" | "matrix", results) or an error string (answered with HTTP 400)
Answer = Callable[[str, float], "tuple[str, list[dict]] | str"]


class FakePrometheus:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.queries: list[tuple[str, float]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                qs = urllib.parse.parse_qs(url.query)
                if url.path != "/api/v1/query":
                    self.send_error(404)
                    return
                query, at = qs["query"][0], float(qs["time"][0])
                fake.queries.append((query, at))
                got = fake.answer(query, at)
                if isinstance(got, str):
                    status, body = 400, {"status": "error", "errorType": "bad_data", "error": got}
                else:
                    kind, result = got
                    status = 200
                    body = {"status": "success", "data": {"resultType": kind, "result": result}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakePrometheus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
