"""Binding the view's address, saying how to open it, and serving it with uvicorn."""

from __future__ import annotations

import getpass
import socket
import sys

from .guard import Guard, is_loopback, needs_token, new_token


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (port 0: a free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int, token: str | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/" + (f"?token={token}" if token else "")


def serve(runs_dir: str, *, host: str, port: int, allow_actions: bool,
          namespace: str | None = None, poll: float = 0.5) -> None:
    """Serve the view until interrupted, after one start message on stdout."""
    import uvicorn

    from .app import ViewConfig, make_app

    token = new_token() if needs_token(host, allow_actions) else None
    try:
        sock = bind(host, port)
    except OSError as e:  # a port in use, an address not of this host: bad input
        from ..errors import SubmitError

        raise SubmitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    port = sock.getsockname()[1]
    guard = Guard(host, port, allow_actions, token)
    app = make_app(ViewConfig(runs_dir, guard, namespace, poll))
    lines = [f"gage-submit view: serving {runs_dir} at {url_for(host, port, token)}"]
    if token:
        why = [] if is_loopback(host) else [f"it listens on {host}, not on 127.0.0.1"]
        if allow_actions:
            why.append("actions are on")
        lines.append(f"  a token is needed ({' and '.join(why)}): open the URL above,"
                     " with its token; it is good until the view stops")
    if allow_actions:
        lines.append(f"  actions on: cancel and label act as {_user()}")
    else:
        lines.append("  read-only (--allow-actions to cancel and label runs)")
    print("\n".join(lines), flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1, proxy_headers=False,
                            server_header=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        sys.stdout.flush()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "this user"
