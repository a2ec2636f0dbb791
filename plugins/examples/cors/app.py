"""cors: answers CORS preflight requests and marks responses as readable cross-origin (Python,
built with componentize-py).

Config:
  origin   the allowed origin (default *)
  methods  what a preflight allows (default GET, POST, PUT, DELETE)
  max_age  how long browsers may cache a preflight, in seconds (default 600)
A preflight (OPTIONS with Access-Control-Request-Method) is answered here with 204 and never
reaches the upstream; every other response gets Access-Control-Allow-Origin.
"""

from wit_world import WitWorld as World
from wit_world.imports import config
from wit_world.imports.types import (
    Header,
    HeaderOp_Set,
    Reply,
    Request,
    RequestAction,
    RequestAction_Continue,
    RequestAction_Respond,
    RequestEdits,
    Response,
    ResponseAction,
)


def setting(key: str, default: str) -> str:
    value = config.get(key)
    return default if value is None else value


def header(name: str, value: str) -> Header:
    return Header(name, value.encode())


def is_preflight(req: Request) -> bool:
    if req.method != "OPTIONS":
        return False
    return any(h.name.lower() == "access-control-request-method" for h in req.headers)


class WitWorld(World):
    def on_request(self, req: Request) -> RequestAction:
        if not is_preflight(req):
            return RequestAction_Continue(RequestEdits([], None))
        headers = [
            header("access-control-allow-origin", setting("origin", "*")),
            header("access-control-allow-methods", setting("methods", "GET, POST, PUT, DELETE")),
            header("access-control-max-age", setting("max_age", "600")),
        ]
        requested = [h.value for h in req.headers if h.name.lower() == "access-control-request-headers"]
        if requested:
            headers.append(Header("access-control-allow-headers", requested[0]))
        return RequestAction_Respond(Reply(204, headers, b""))

    def on_response(self, resp: Response) -> ResponseAction:
        origin = setting("origin", "*")
        return ResponseAction(None, [HeaderOp_Set(header("access-control-allow-origin", origin))])
