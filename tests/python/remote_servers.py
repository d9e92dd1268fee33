"""Real servers on 127.0.0.1 for the remote-shard tests and benchmark:
moto's S3 server (the one s3fs tests against), and a small HTTP file
server of our own that honours Range and can misbehave on request."""
from __future__ import annotations

import email.utils
import http.server
import os
import re
import socket
import threading
import time
import urllib.parse
from typing import Dict, List, Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 API in server mode, in a thread of this process."""

    def __init__(self):
        import logging
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        from moto.server import ThreadedMotoServer
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        import boto3
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")

    def storage_options(self, key: str = "testing", secret: str = "testing") -> Dict:
        return {"key": key, "secret": secret, "skip_instance_cache": True,
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"}}

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def require_auth(self, on: bool) -> None:
        """From now on, check credentials against moto's IAM (none exist,
        so every key is wrong), or stop checking."""
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0" if on else b"inf",
            method="POST", headers={"Content-Type": "text/plain"})).read()

    def stop(self) -> None:
        self._server.stop()


class RangeHTTPServer:
    """Serves files from a directory over HTTP/1.1 with Range and ETag.

    Misbehaviour, set as attributes: ``truncate`` (int): the next that many
    GETs send fewer bytes than announced, then drop the connection;
    ``die_after`` (int): after sending that many body bytes in total the
    server shuts down for good; ``rate`` (bytes/s): throttle bodies;
    ``token``: require ``Authorization: Bearer <token>``; ``ignore_range``:
    answer every GET with 200 and the whole body, as some servers do;
    ``max_range`` (int): answer a Range with at most that many bytes (a
    valid 206 whose Content-Range says how many, as some CDNs do).  ``log`` records
    (path, first byte, bytes sent) of each GET; reading it waits until every
    request in progress has logged (a client may see its last bytes before
    the server thread records them)."""

    def __init__(self, root: str):
        self.root = root
        self.truncate = 0
        self.die_after: Optional[int] = None
        self.rate: Optional[float] = None
        self.token: Optional[str] = None
        self.ignore_range = False
        self.max_range: Optional[int] = None
        self._log: List[tuple] = []
        self._busy = 0  # requests being served
        self._idle = threading.Condition()
        self.sent = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                with owner._idle:
                    owner._busy += 1
                try:
                    self._serve(body=True)
                finally:
                    with owner._idle:
                        owner._busy -= 1
                        owner._idle.notify_all()

            def _serve(self, body: bool):
                if owner.token and self.headers.get("Authorization") != f"Bearer {owner.token}":
                    return self._status(403)
                path = os.path.join(owner.root, urllib.parse.unquote(self.path.lstrip("/").split("?")[0]))
                if not os.path.isfile(path):
                    return self._status(404)
                st = os.stat(path)
                size, start, end = st.st_size, 0, st.st_size
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
                if m and not owner.ignore_range:
                    if m.group(1):
                        start = int(m.group(1))
                        end = min(size, int(m.group(2)) + 1) if m.group(2) else size
                    else:
                        start = max(0, size - int(m.group(2)))
                    if owner.max_range is not None:
                        end = min(end, start + owner.max_range)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{st.st_mtime_ns:x}-{size:x}"')
                self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
                self.end_headers()
                if not body:
                    return
                with open(path, "rb") as fh:
                    fh.seek(start)
                    data = fh.read(end - start)
                if owner.truncate > 0:
                    owner.truncate -= 1
                    data = data[:len(data) // 2]
                    self.close_connection = True
                sent = 0
                for i in range(0, len(data), 64 << 10):
                    chunk = data[i:i + (64 << 10)]
                    if owner.die_after is not None and owner.sent + len(chunk) > owner.die_after:
                        owner.sent = owner.die_after
                        self.close_connection = True
                        threading.Thread(target=owner.stop, daemon=True).start()
                        break
                    try:
                        self.wfile.write(chunk)
                    except OSError:
                        break
                    sent += len(chunk)
                    owner.sent += len(chunk)
                    if owner.rate:
                        time.sleep(len(chunk) / owner.rate)
                owner._log.append((self.path, start, sent))

            def _status(self, code: int):
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def log(self) -> List[tuple]:
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=10)
            return list(self._log)

    def bytes_sent(self, path: str) -> int:
        return sum(n for p, _, n in self.log if p == path)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._httpd.shutdown()
            self._httpd.server_close()
