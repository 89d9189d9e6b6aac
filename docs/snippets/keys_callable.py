# myapp/keys.py, named in the policy file as  key: [call:myapp.keys:tenant, ip]
from ratelimit_mw.types import RequestView


def tenant(request: RequestView) -> str | None:
    """The tenant from the Host header; None falls through to the next key of the chain."""
    host = request.header("host") or ""
    return host.split(".", 1)[0] or None
