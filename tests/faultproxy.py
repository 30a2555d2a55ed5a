"""A loopback HTTP proxy between the bot and moto's server that injects AWS faults.

The bot's ``ENDPOINT_URL`` points here; requests are forwarded to the emulator
unless a fault rule matches the request's action (``ListClusters``,
``AssumeRole`` …). Faults are real HTTP behaviour, so botocore's retry logic,
timeouts and error parsing are exercised as they would be against AWS:

* ``throttle`` — HTTP 400 ``ThrottlingException`` (botocore retries with backoff);
* ``server_error`` — HTTP 503 (retried, then an error);
* ``expired`` — HTTP 400 ``ExpiredTokenException`` (the session re-assumes once);
* ``denied`` — HTTP 400 ``AccessDeniedException`` naming the action;
* ``hang`` — accept the request and answer nothing for ``hang_seconds``;
* :meth:`FaultProxy.refuse` — close the listening socket: connection refused.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from demo.emulator import action_of

JSON_ERRORS = {
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "server_error": (503, "ServiceUnavailable", "Service is unavailable"),
    "expired": (400, "ExpiredTokenException", "The security token included in the request is expired"),
}


@dataclass
class Fault:
    kind: str
    action: str
    times: int  # how many matching requests fail; -1 = all


class FaultProxy:
    """Forward to *upstream*; fail matching requests as told. Thread-safe."""

    def __init__(self, upstream: str, hang_seconds: float = 30.0) -> None:
        self.upstream = urlsplit(upstream)
        self.hang_seconds = hang_seconds
        self.faults: list[Fault] = []
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def inject(self, kind: str, action: str, times: int = -1) -> None:
        with self._lock:
            self.faults.append(Fault(kind, action, times))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def refuse(self) -> None:
        """Stop listening: every new connection is refused."""
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self, action: str) -> Fault | None:
        with self._lock:
            self.seen[action] += 1
            for fault in self.faults:
                if fault.action == action and fault.times != 0:
                    fault.times -= 1 if fault.times > 0 else 0
                    self.injected[fault.kind] += 1
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        environ = {"HTTP_X_AMZ_TARGET": handler.headers.get("X-Amz-Target", ""), "QUERY_STRING": ""}
        environ["HTTP_AUTHORIZATION"] = handler.headers.get("Authorization", "")
        _, action = action_of(environ, body)
        fault = self._take_fault(action)
        if fault is not None:
            if fault.kind == "hang":
                self._release.wait(self.hang_seconds)
                return
            self._fail(handler, fault, action, json_protocol=bool(environ["HTTP_X_AMZ_TARGET"]))
            return
        self._forward(handler, body)

    def _fail(self, handler: BaseHTTPRequestHandler, fault: Fault, action: str, *, json_protocol: bool) -> None:
        if fault.kind == "denied":
            status, code = 400, "AccessDeniedException" if json_protocol else "AccessDenied"
            message = f"User: arn:aws:sts::210987654321:assumed-role/cre/x is not authorized to perform: {action}"
            if json_protocol:
                message = message.replace(action, f"elasticmapreduce:{action}")
            else:
                message = message.replace(action, f"sts:{action}")
        else:
            status, code, message = JSON_ERRORS[fault.kind]
        if json_protocol:
            payload = json.dumps({"__type": code, "message": message}).encode()
            content_type = "application/x-amz-json-1.1"
        else:
            payload = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                "</Error><RequestId>fault</RequestId></ErrorResponse>"
            ).encode()
            content_type = "text/xml"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Connection", "close")  # no keep-alive: refuse() must refuse the next request
        handler.end_headers()
        handler.wfile.write(payload)
        handler.close_connection = True

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        headers["Host"] = self.upstream.netloc
        connection.request(handler.command, handler.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Connection", "close")  # no keep-alive: refuse() must refuse the next request
        handler.end_headers()
        handler.wfile.write(payload)
        handler.close_connection = True
        connection.close()


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
