"""A read-only HTTP JSON API over sweep's queries, for other tools.

GET /upper-bounds?max_loss=0.02[&speed_only=1][&environment=H100][&weight_dependent=1]   the bounds and speed map (as `sweep query --format json`)
GET /query?target=8.5[&max_loss=0.02][&environment=H100][&weight_dependent=1]   who reaches a target (as `sweep query --target`)
GET /targets[?max_loss=0.02]                      stored targets with their bound and staleness
GET /status                                       counts (as `sweep status --format json`)
Anything else is 404; a bad parameter is 400 with {"error": "..."}; only GET is served.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from search_space import defaults
from storage.repository import Repository


class _BadRequest(Exception):
    pass


def _float(params: dict[str, list[str]], name: str, default: float | None, low: float = 0.0, high: float = 1e9) -> float | None:
    if name not in params:
        return default
    try:
        value = float(params[name][0])
    except ValueError:
        raise _BadRequest(f"{name} must be a number") from None
    if not low <= value < high:
        raise _BadRequest(f"{name} must be in [{low:g}, {high:g})")
    return value


def make_server(repo: Repository, host: str, port: int) -> ThreadingHTTPServer:
    def environments(params: dict[str, list[str]]) -> list[int] | None:
        if "environment" not in params:
            return None
        found = repo.environment_ids(params["environment"][0])
        if not found:
            raise _BadRequest("environment matches no stored environment")
        return found

    def upper_bounds(params: dict[str, list[str]]) -> object:
        max_loss = _float(params, "max_loss", defaults.MAX_LOSS, high=1.0)
        speed_only = params.get("speed_only", ["0"])[0] in ("1", "true")
        weight_dependent = params.get("weight_dependent", ["0"])[0] in ("1", "true")
        return [b.as_row() for b in repo.bounds.rows(max_loss, environment_ids=environments(params),  # type: ignore[arg-type]
                                                     speed_only=speed_only, weight_dependent=weight_dependent)]

    def query(params: dict[str, list[str]]) -> object:
        target = _float(params, "target", None)
        if target is None:
            raise _BadRequest("target is required, e.g. /query?target=8.5")
        return repo.bounds.by_target(target, _float(params, "max_loss", defaults.MAX_LOSS, high=1.0), environments(params),  # type: ignore[arg-type]
                                     weight_dependent=params.get("weight_dependent", ["0"])[0] in ("1", "true"))

    routes = {
        "/upper-bounds": upper_bounds,
        "/query": query,
        "/targets": lambda params: repo.targets.targets(_float(params, "max_loss", None, high=1.0)),
        "/status": lambda params: repo.status(),
    }

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: HTTPStatus, body: object) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            route = routes.get(url.path.rstrip("/") or "/")
            if route is None:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {url.path}", "endpoints": sorted(routes)})
                return
            try:
                self._send(HTTPStatus.OK, route(parse_qs(url.query)))
            except _BadRequest as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return ThreadingHTTPServer((host, port), Handler)
