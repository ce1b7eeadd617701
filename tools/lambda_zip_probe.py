"""Runs inside an unpacked deployment zip, the way Lambda's Python runtime would: started
by tools/lambda_zip_check.py as `python -S -I -B lambda_zip_probe.py RESULT.json` with the
unpacked folder as working directory and a Lambda-like environment.

Standard library only until `import app`: sys.path is the unpacked folder, then (for a
stage with X-Ray on) the stand-in for the runtime's own SDK folder named by
PROBE_RUNTIME_DIR, then the standard library. It times the cold `import app`, sends API
Gateway REST proxy events through `app.app(event, context)`, and writes what it saw to
RESULT.json (stdout belongs to the app's JSON log lines), including every module of the
zip that was compiled from source because it had no usable .pyc (-B writes none, as
Lambda's read-only task root keeps none).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from typing import Any, Optional

TASK_ROOT = os.getcwd()


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self) -> None:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "probe")
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "2026/12/01/[$LATEST]probe"
        self._deadline = time.monotonic() + 10

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the (10 s) timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def rest_event(path: str, query: Optional[dict[str, str]] = None,
               headers: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for a GET of `path` on stage `api`."""
    headers = {"Accept": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com",
               **(headers or {})}
    return {
        "resource": path, "path": path, "httpMethod": "GET",
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": path, "httpMethod": "GET", "path": f"/api{path}", "stage": "api",
            "requestId": str(uuid.uuid4()), "accountId": "123456789012", "apiId": "abc123",
            "identity": {"sourceIp": "198.51.100.7", "userAgent": "lambda_zip_probe"},
            "protocol": "HTTP/1.1", "requestTimeEpoch": int(time.time() * 1000),
        },
    }


def trace_header() -> str:
    """A sampled X-Ray trace header, as Lambda puts in _X_AMZN_TRACE_ID per invocation."""
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"


def invoke(app_module: Any, name: str, event: dict[str, Any], expect_status: int,
           expect_keys: tuple[str, ...]) -> dict[str, Any]:
    """One invocation; the check passes with the expected status and a JSON object body
    holding the expected keys."""
    if os.environ.get("TRACING") == "1":
        os.environ["_X_AMZN_TRACE_ID"] = trace_header()
    started = time.perf_counter()
    try:
        response = app_module.app(event, LambdaContext())
    except BaseException as exc:  # noqa: BLE001 - a traceback is a failed check, not a crash
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ms = (time.perf_counter() - started) * 1000
    status = response.get("statusCode")
    content_type = {k.lower(): v for k, v in (response.get("headers") or {}).items()}.get("content-type", "")
    problems = []
    try:
        body = json.loads(response.get("body") or "")
    except ValueError:
        body, problems = None, ["body is not JSON"]
    if status != expect_status:
        problems.append(f"status {status}, expected {expect_status}")
    if not content_type.startswith("application/json"):
        problems.append(f"Content-Type {content_type!r}")
    if body is not None and (not isinstance(body, dict) or not set(expect_keys) <= set(body)):
        problems.append(f"body lacks {list(expect_keys)}")
    preview = json.dumps(body)[:160] if body is not None else str(response.get("body"))[:160]
    return {"name": name, "ok": not problems, "status": status, "ms": round(ms, 2),
            "problems": problems, "body": preview}


def sign_token(secret: str) -> str:
    """A development admin token for tenant 1, signed with the zip's own PyJWT."""
    import jwt

    claims = {"sub": "lambda-zip-probe", "tenant": 1, "role": "admin", "exp": int(time.time()) + 600}
    return jwt.encode(claims, secret, algorithm="HS256")


def provider_token(port: int) -> str:
    """An ES256 admin token of the stage's identity provider (AUTH_OIDC_*), signed with a key
    made here, whose JWKS this process serves on loopback `port` (the zip's own PyJWT and
    cryptography do the work)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "probe", "alg": "ES256"}
    document = json.dumps({"keys": [jwk]}).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    now = int(time.time())
    claims = {"iss": os.environ["AUTH_OIDC_ISSUER"], "aud": os.environ["AUTH_OIDC_AUDIENCE"], "sub": "zip-probe",
              "tenant": 1, "role": "admin", "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "probe"})


def xray_datagrams(sock: Optional[socket.socket]) -> list[str]:
    """Names of the segments and subsegments the X-Ray SDK sent to the stand-in daemon."""
    names: list[str] = []
    if sock is None:
        return names
    sock.setblocking(False)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            time.sleep(0.02)
            continue
        _, _, document = data.decode(errors="replace").partition("\n")
        try:
            names.append(str(json.loads(document).get("name")))
        except ValueError:
            names.append("?")
    return names


def daemon_socket() -> Optional[socket.socket]:
    """For a traced stage: a UDP socket standing in for the X-Ray daemon."""
    if os.environ.get("TRACING") != "1":
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{sock.getsockname()[1]}"
    os.environ["AWS_XRAY_DAEMON_ADDRESS"] = address
    os.environ["_AWS_XRAY_DAEMON_ADDRESS"], os.environ["_AWS_XRAY_DAEMON_PORT"] = address.split(":")
    return sock


def record_compiles() -> list[str]:
    """The paths of the sources the import system compiles from now on (a module whose
    .pyc is missing or unusable), appended as they are compiled."""
    from importlib.machinery import SourceFileLoader

    compiled: list[str] = []
    compile_source = SourceFileLoader.source_to_code

    def source_to_code(self: Any, data: Any, path: Any, *, _optimize: int = -1) -> Any:
        compiled.append(str(path))
        return compile_source(self, data, path, _optimize=_optimize)

    SourceFileLoader.source_to_code = source_to_code  # type: ignore[method-assign]
    return compiled


def module_origins(runtime_dir: str) -> dict[str, list[str]]:
    """Top-level modules loaded so far, by where they came from: the zip or the runtime."""
    out: dict[str, list[str]] = {"zip": [], "runtime": []}
    for name, module in list(sys.modules.items()):
        if "." in name:
            continue
        origin = getattr(module, "__file__", None) or ""
        if origin.startswith(TASK_ROOT + os.sep):
            out["zip"].append(name)
        elif runtime_dir and origin.startswith(runtime_dir + os.sep):
            out["runtime"].append(name)
    return {k: sorted(v) for k, v in out.items()}


def main(result_path: str) -> int:
    """Import the app, invoke it, write the result; 0 when every check passed."""
    runtime_dir = os.environ.get("PROBE_RUNTIME_DIR", "")
    sys.path[:] = [TASK_ROOT] + ([runtime_dir] if runtime_dir else []) + [
        p for p in sys.path if p and not p.startswith(TASK_ROOT)]
    result: dict[str, Any] = {"sys_path": list(sys.path), "checks": []}
    daemon = daemon_socket()
    compiled = record_compiles()
    started = time.perf_counter()
    try:
        import app  # noqa: PLC0415 - the point of the probe
    except BaseException as exc:  # noqa: BLE001
        import traceback

        result["import_error"] = "".join(traceback.format_exception(exc))[-3000:]
        result["ok"] = False
        with open(result_path, "w") as f:
            json.dump(result, f)
        return 1
    result["import_ms"] = round((time.perf_counter() - started) * 1000, 1)
    result["tracing_at_import"] = "aws_xray_sdk" in sys.modules
    development = sign_token(os.environ["AUTH_SECRET"])
    provider_only = os.environ.get("AUTH_SHARED_SECRET_TOKENS") == "0"
    token = provider_token(int(os.environ["PROBE_JWKS_PORT"])) if provider_only else development
    result["checks"] = [
        invoke(app, "openapi 200", rest_event("/api/openapi.json"), 200, ("openapi", "paths")),
        invoke(app, "health 503 (database unreachable)", rest_event("/api/health"), 503,
               ("status", "db", "redis")),
        invoke(app, "departments 503 (cached route, valid token)",
               rest_event("/api/departments", {"clientId": "1"}, {"Authorization": f"Bearer {token}"}),
               503, ("error",)),
    ]
    if provider_only:
        result["checks"].append(invoke(app, "departments 401 (a development token, refused by this stage)",
                                       rest_event("/api/departments", {"clientId": "1"},
                                                  {"Authorization": f"Bearer {development}"}), 401, ("error",)))
    result["modules"] = module_origins(runtime_dir)
    in_zip = TASK_ROOT + os.sep
    result["zip_modules_loaded"] = sum((getattr(m, "__file__", None) or "").startswith(in_zip)
                                       for m in list(sys.modules.values()))
    result["zip_modules_compiled"] = sorted(path[len(in_zip):] for path in compiled if path.startswith(in_zip))
    result["xray_loaded"] = "aws_xray_sdk" in sys.modules
    result["boto_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))[:5]
    result["xray_segments"] = xray_datagrams(daemon)
    result["ok"] = all(c["ok"] for c in result["checks"])
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
