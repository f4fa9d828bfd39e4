"""Loopback policy shared by the service and whoever launches it: a service that injects faults on
request must say loudly when it listens beyond loopback."""

from __future__ import annotations

import ipaddress

__all__ = ["non_loopback_binds", "bind_warning"]


def non_loopback_binds(binds) -> list[str]:
    """The bind addresses (``host:port``, ``[v6]:port``, ``unix:...``) that are not loopback."""
    exposed = []
    for bind in binds:
        if bind.startswith(("unix:", "fd://")):
            continue
        host = bind.rsplit(":", 1)[0].strip("[]") if ":" in bind else bind
        if host == "localhost":
            continue
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass  # a host name: cannot tell, so warn
        exposed.append(bind)
    return exposed


def bind_warning(binds, admin_allow_remote: bool) -> str | None:
    """The warning to print when the API listens beyond loopback (None when it does not)."""
    exposed = non_loopback_binds(binds)
    if not exposed:
        return None
    admin = ("and OBSLAB_ADMIN_ALLOW_REMOTE=1 lets remote clients reach the control plane with the token"
             if admin_allow_remote else "the control plane still refuses non-loopback clients")
    return (f"WARNING: obslab publish API listens on {', '.join(exposed)}, beyond loopback: anyone who can "
            f"reach it can drive the demo service, {admin}. Bind 127.0.0.1 unless you need this.")
