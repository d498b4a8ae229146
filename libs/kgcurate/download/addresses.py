"""Refuse to connect to addresses that are not on the public internet (SSRF guard).

Image URLs come from crawled pages, so anyone can point one (or a redirect) at ``127.0.0.1``, a cloud
metadata endpoint (``169.254.169.254``) or the cluster's own network. The fetcher resolves each hop's host
here, refuses it if any address is non-public, and connects to the address checked here, so a DNS answer
cannot change between check and connect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# socket.getaddrinfo's signature: (host, port, family, type, ...) -> [(family, type, proto, canonname, sockaddr)]
Resolver = Callable[..., list[tuple[Any, ...]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the IPv4 address is embedded


class AddressRefused(Exception):
    """The host is (or resolves to) an address we must not connect to."""


class ResolutionFailed(Exception):
    """The host did not resolve to any address."""


def refusal_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (e.g. ``"loopback"``), or None when it is one."""
    embedded: ipaddress.IPv4Address | None = None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if embedded is not None:
        reason = refusal_reason(embedded)
        return f"{reason} (embedded in {ip})" if reason else None
    for name in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT), which is neither private nor global
        return "not-global"
    return None


@dataclass(frozen=True)
class AddressGuard:
    """Resolves a host and returns the address to connect to, refusing non-public ones.

    ``allow_private=True`` turns the check off (tests against a local server); ``allow_networks`` lets
    through only the networks named (a test server on 127.0.0.1, an internal mirror) while everything
    else non-public stays refused. The resolver is injectable so tests can make a public-looking name
    resolve to ``10.0.0.1``.
    """

    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()  # CIDRs, e.g. ("127.0.0.0/8",)
    resolver: Resolver = field(default=socket.getaddrinfo, compare=False)
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        networks = tuple(ipaddress.ip_network(n) for n in self.allow_networks)  # ValueError on a bad CIDR
        object.__setattr__(self, "_networks", networks)

    def allowed(self, ip: IPAddress) -> str | None:
        """None when ``ip`` may be connected to, else why not."""
        if self.allow_private or any(ip in net for net in self._networks):
            return None
        return refusal_reason(ip)

    def resolve(self, host: str, port: int) -> str:
        """The first address of ``host`` as a string, once every address it resolves to is allowed.

        All addresses are checked, not only the one used, so a name mixing public and private answers is
        refused. Raises :class:`AddressRefused` or :class:`ResolutionFailed`.
        """
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = self.resolver(host, port, 0, socket.SOCK_STREAM)
            except (OSError, UnicodeError) as e:
                raise ResolutionFailed(f"cannot resolve {host}: {e}") from e
            addresses = []
            for info in infos:
                ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # drop an IPv6 zone id
                if ip not in addresses:
                    addresses.append(ip)
            if not addresses:
                raise ResolutionFailed(f"{host} resolved to no address")
        for ip in addresses:
            reason = self.allowed(ip)
            if reason:
                raise AddressRefused(f"{host} -> {ip}: {reason} address")
        return str(addresses[0])
