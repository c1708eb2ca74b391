"""A read-only HTTP JSON API over sweep's queries, for other tools.

GET /upper-bounds[?max_loss=L][&speed_only=1][&environment=H100][&weight_dependent=1]   the bounds and speed map (as `sweep query --format json`)
GET /query?target=T[&max_loss=L][&environment=H100][&weight_dependent=1]   who reaches a target (as `sweep query --target`)
GET /targets[?max_loss=L]                         stored targets with their bound and staleness
GET /status                                       counts (as `sweep status --format json`)
GET /evaluations[?environment=H100]               graded solutions (as stored by `sweep evaluate`)
L defaults to the loss bound of search_space/defaults.py. Anything else is 404; a bad parameter is 400 with {"error": "..."}; only GET is served.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from search_space import defaults
from sweep import app, inputs
from sweep.errors import UsageError


class _BadRequest(Exception):
    pass


def _float(params: dict[str, list[str]], name: str, default: float | None,
           check: Callable[[float, str], float] = inputs.check_max_loss) -> float | None:
    """A number parameter, by the CLI's rules (sweep/inputs.py)."""
    if name not in params:
        return default
    return check(inputs.number(params[name][0], name), name)


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return params.get(name, ["0"])[0] in ("1", "true")


def make_server(db: str, host: str, port: int) -> ThreadingHTTPServer:
    """A server answering from the database at URL ``db`` through the application layer (sweep/app.py)."""

    def environment(params: dict[str, list[str]]) -> str | None:
        return params["environment"][0] if "environment" in params else None

    def upper_bounds(params: dict[str, list[str]]) -> object:
        return app.upper_bounds(db, _float(params, "max_loss", defaults.MAX_LOSS),  # type: ignore[arg-type]
                                environment=environment(params), speed_only=_flag(params, "speed_only"),
                                weight_dependent=_flag(params, "weight_dependent"))

    def query(params: dict[str, list[str]]) -> object:
        target = _float(params, "target", None, inputs.check_target)
        if target is None:
            raise _BadRequest("target is required, e.g. /query?target=8.5")
        return app.reaching(db, target, _float(params, "max_loss", defaults.MAX_LOSS),  # type: ignore[arg-type]
                            environment=environment(params), weight_dependent=_flag(params, "weight_dependent"))

    routes = {
        "/upper-bounds": upper_bounds,
        "/query": query,
        "/targets": lambda params: app.stored_targets(db, _float(params, "max_loss", None)),
        "/status": lambda params: app.status(db),
        "/evaluations": lambda params: app.evaluations(db, environment(params)),
    }
    app.repository(db)  # open (and check) the database before listening

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
                self._send(HTTPStatus.OK, route(parse_qs(url.query, keep_blank_values=True)))
            except (_BadRequest, UsageError) as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return ThreadingHTTPServer((host, port), Handler)
