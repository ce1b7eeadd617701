"""The HTTP floor: Python's own `http.server` (threaded, HTTP/1.1 keep-alive, Nagle off, one
send per response, no access log) answering every GET with a fixed body and the same response headers as an L1
hit, in its own process. `python -m bench.http_floor --port N --body-file F`."""
from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", required=True, help="file holding the body to answer with")
    args = parser.parse_args()
    with open(args.body_file, "rb") as f:
        body = f.read()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = 1 << 16  # one send per response, as `serve` does

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            for name, value in (("Content-Length", str(len(body))), ("Content-Type", "application/json"),
                                ("X-Cache", "L1"), ("Server-Timing", 'cache;desc="L1";dur=0.001'),
                                ("ETag", '"0123456789abcdef0123"'), ("Cache-Control", "private, max-age=3600")):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
