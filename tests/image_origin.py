"""A web server on 127.0.0.1 playing an image host, for tests of search by image URL."""

from __future__ import annotations

import http.server
import threading


class ImageOrigin:
    """A web server on 127.0.0.1 playing an image host: /photo.jpg, /text, and /hop, a redirect
    to 127.0.0.2 (a non-public address the policy does not allow)."""

    def __init__(self, photo: bytes) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/photo.jpg":
                    body, kind = photo, "image/jpeg"
                elif self.path == "/hop":
                    self.send_response(302)
                    self.send_header("Location", outer.url.replace("127.0.0.1", "127.0.0.2"))
                    self.end_headers()
                    return
                else:
                    body, kind = b"secret internal page", "text/plain"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
