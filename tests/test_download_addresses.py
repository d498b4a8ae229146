"""The SSRF guard (kgcurate.download.addresses): which addresses are refused, with injected resolvers."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from kgcurate.download.addresses import AddressGuard, AddressRefused, ResolutionFailed, refusal_reason


def resolver(answers: dict[str, list[str]]):
    """A getaddrinfo stand-in: name -> addresses; records the names asked."""
    asked: list[str] = []

    def resolve(host, port, *args, **kwargs):
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = {True: socket.AF_INET6, False: socket.AF_INET}
        return [(family[":" in a], socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    resolve.asked = asked
    return resolve


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoint
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not-global"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private (embedded in ::ffff:a00:1)"),
        ("::ffff:127.0.0.1", "loopback (embedded in ::ffff:7f00:1)"),
        ("2002:a00:1::", "private (embedded in 2002:a00:1::)"),  # 6to4 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local (embedded in 64:ff9b::a9fe:a9fe)"),  # NAT64 of 169.254.169.254
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_refusal_reason(address, reason):
    assert refusal_reason(ipaddress.ip_address(address)) == reason


def test_public_name_resolving_to_private_is_refused():
    guard = AddressGuard(resolver=resolver({"images.example.com": ["10.0.0.1"]}))
    with pytest.raises(AddressRefused, match=r"images\.example\.com -> 10\.0\.0\.1: private"):
        guard.resolve("images.example.com", 80)


def test_every_answer_is_checked_not_only_the_first():
    guard = AddressGuard(resolver=resolver({"mixed.example": ["93.184.216.34", "192.168.0.7"]}))
    with pytest.raises(AddressRefused, match="192.168.0.7"):
        guard.resolve("mixed.example", 443)


def test_public_answers_return_the_first():
    guard = AddressGuard(resolver=resolver({"ok.example": ["93.184.216.34", "93.184.216.34", "2606:2800::1"]}))
    assert guard.resolve("ok.example", 80) == "93.184.216.34"


def test_allow_private_and_allow_networks():
    answers = resolver({"lan.example": ["10.0.0.1"], "home.example": ["192.168.0.1"]})
    assert AddressGuard(allow_private=True, resolver=answers).resolve("lan.example", 80) == "10.0.0.1"
    narrow = AddressGuard(allow_networks=("10.0.0.0/8",), resolver=answers)
    assert narrow.resolve("lan.example", 80) == "10.0.0.1"
    with pytest.raises(AddressRefused):
        narrow.resolve("home.example", 80)
    with pytest.raises(ValueError):
        AddressGuard(allow_networks=("not a network",))


def test_literal_addresses_skip_the_resolver():
    answers = resolver({})
    guard = AddressGuard(resolver=answers)
    with pytest.raises(AddressRefused, match="loopback"):
        guard.resolve("127.0.0.1", 80)
    with pytest.raises(AddressRefused, match="loopback"):
        guard.resolve("[::1]", 80)
    assert guard.resolve("8.8.8.8", 80) == "8.8.8.8"
    assert answers.asked == []


def test_resolution_failure_and_zone_ids():
    with pytest.raises(ResolutionFailed, match="nowhere.example"):
        AddressGuard(resolver=resolver({})).resolve("nowhere.example", 80)
    with pytest.raises(ResolutionFailed, match="no address"):
        AddressGuard(resolver=resolver({"empty.example": []})).resolve("empty.example", 80)
    with pytest.raises(AddressRefused, match="link-local"):
        AddressGuard(resolver=resolver({"zone.example": ["fe80::1%eth0"]})).resolve("zone.example", 80)
