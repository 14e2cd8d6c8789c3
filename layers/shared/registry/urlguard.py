"""SSRF guard for the URLs agents register (seed: validateAgentURL, C6, F1083/#1130).

A registered URL is where the platform later sends A2A traffic, so a URL
that lands on a cloud metadata endpoint, on the platform itself or on a
private network turns the registry into an SSRF relay. Every rule of the
seed is kept; on top of it, every other spelling of an address is caught
(``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``, IPv4-mapped,
-compatible, NAT64 and 6to4 IPv6 forms, unspecified addresses) and the
refusal names its reason instead of a bare "invalid request body".

The resolver is a parameter, so tests need no network.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Iterable[str]]

MAX_URL_LENGTH = 2048


class URLRefused(ValueError):
    """The URL may not be registered; str(error) is the reason for the 400."""


def _net(cidr: str, label: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]:
    return ipaddress.ip_network(cidr), label


# Blocked in every mode: never a legitimate agent URL, and they cover the
# AWS/GCP/Azure metadata endpoints (IMDSv1/v2) and the platform itself.
ALWAYS_BLOCKED = (
    _net("169.254.0.0/16", "link-local address (cloud metadata endpoint)"),
    _net("127.0.0.0/8", "loopback address"),
    _net("fe80::/10", "IPv6 link-local address (cloud metadata analogue)"),
    _net("::1/128", "IPv6 loopback address"),
    # Documentation, CGNAT, multicast and the non-routable ULA prefix are
    # never VPC subnets on any cloud, so they are blocked in SaaS mode too.
    _net("192.0.2.0/24", "TEST-NET-1 documentation range (RFC-5737)"),
    _net("198.51.100.0/24", "TEST-NET-2 documentation range (RFC-5737)"),
    _net("203.0.113.0/24", "TEST-NET-3 documentation range (RFC-5737)"),
    _net("100.64.0.0/10", "carrier-grade NAT address (RFC-6598)"),
    _net("224.0.0.0/4", "IPv4 multicast address"),
    _net("fc00::/8", "IPv6 ULA non-routable prefix (fc00::/8)"),
    _net("2001:db8::/32", "IPv6 documentation address (RFC-3849 reserved)"),
    # Beyond the seed: addresses that are no unicast endpoint at all.
    # 0.0.0.0 reaches the local host on Linux, so it is a loopback spelling.
    _net("0.0.0.0/8", "unspecified address (0.0.0.0/8 reaches this host)"),
    _net("::/128", "IPv6 unspecified address"),
    _net("240.0.0.0/4", "reserved or broadcast IPv4 address"),
    _net("ff00::/8", "IPv6 multicast address"),
)

# Blocked unless SaaS mode, where workspaces register with their VPC-private
# address and the control plane is the source of truth for which exist.
PRIVATE_BLOCKED = (
    _net("10.0.0.0/8", "RFC-1918 private address"),
    _net("172.16.0.0/12", "RFC-1918 private address"),
    _net("192.168.0.0/16", "RFC-1918 private address"),
    _net("fd00::/8", "IPv6 ULA address (RFC-4193 private)"),
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

# The inet_aton grammar: one to four parts, each decimal, octal (leading 0)
# or hex (0x); the last part fills the remaining bytes. Browsers, curl and
# libc all accept it, so "127.1" or "2130706433" is a loopback spelling.
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?")
_HOST_LABELS = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def _parse_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """Parse any inet_aton spelling of an IPv4 address; None if out of range."""
    parts = host.rstrip(".").split(".")
    values = []
    for part in parts:
        if part.startswith("0x"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c not in "01234567" for c in part):
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where it stands for one."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress, *, saas: bool) -> str | None:
    """Why this address may not be registered, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return blocked_reason(embedded, saas=saas)
    ranges = ALWAYS_BLOCKED if saas else ALWAYS_BLOCKED + PRIVATE_BLOCKED
    for network, label in ranges:
        if ip.version == network.version and ip in network:
            return f"url targets a blocked address: {label}"
    return None


def resolve_with_dns(hostname: str) -> list[str]:
    """Every address the system resolver returns for the host."""
    infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    return sorted({info[4][0] for info in infos})


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        ip = _parse_inet_aton(host)
        if ip is None:
            raise URLRefused(f"url host {host!r} is not a valid address")
        return ip
    return None


def validate_agent_url(raw_url: object, *, saas: bool, resolve: Resolver = resolve_with_dns) -> str:
    """Return the URL when it may be registered; raise URLRefused with the reason."""
    if not isinstance(raw_url, str) or raw_url == "":
        raise URLRefused("url is required")
    if len(raw_url) > MAX_URL_LENGTH:
        raise URLRefused(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in raw_url):
        raise URLRefused("url contains whitespace or control characters")
    try:
        parts = urlsplit(raw_url)
        hostname = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise URLRefused(f"url is not valid: {err}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise URLRefused(f"url scheme must be http or https, got {parts.scheme!r}")
    if not hostname:
        raise URLRefused("url has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials would be cached and broadcast with the URL, and a
        # user-info part is the classic way to make a URL look like another.
        raise URLRefused("url must not contain credentials")

    ip = _literal_address(hostname)
    if ip is not None:
        # Agents register by DNS name; a raw address is checked as it is.
        reason = blocked_reason(ip, saas=saas)
        if reason:
            raise URLRefused(reason)
        return raw_url

    # "localhost" is allowed by name, without a lookup: the standard dev
    # alias that agents in local development rely on (seed behaviour).
    if hostname == "localhost":
        return raw_url

    name = hostname.rstrip(".")
    try:
        labels = name.encode("idna").decode("ascii").split(".") if name else []
    except UnicodeError:
        labels = []
    if not labels or not all(_HOST_LABELS.fullmatch(label) for label in labels):
        raise URLRefused(f"url host {hostname!r} is not a valid host name")

    # F1083/#1130: a DNS name is resolved and every address it returns is
    # checked, so agent.example.com pointing at 169.254.169.254 is refused.
    # A name that does not resolve is refused: the platform has no use for
    # a workspace it cannot reach.
    try:
        addresses = list(resolve(name))
    except (OSError, UnicodeError) as err:
        raise URLRefused(f"hostname {hostname!r} cannot be resolved (DNS error): {err}") from None
    if not addresses:
        raise URLRefused(f"hostname {hostname!r} cannot be resolved (no addresses)")
    for address in addresses:
        try:
            resolved = ipaddress.ip_address(address)
        except ValueError:
            raise URLRefused(f"hostname {hostname!r} resolves to an invalid address") from None
        reason = blocked_reason(resolved, saas=saas)
        if reason:
            raise URLRefused(f"hostname {hostname!r} resolves to forbidden address: {reason}")
    return raw_url
