"""SSRF guard for the URLs agents register (seed: validateAgentURL, C6, F1083/#1130).

A registered URL is where the platform later sends A2A traffic, so a URL
that lands on a cloud metadata endpoint, on the platform itself or on a
private network turns the registry into an SSRF relay.

The rule: an address is accepted only when it is globally reachable. Every
block of the IANA special-purpose address registries is refused (with the
seed's own ranges and labels kept), as are multicast, deprecated site-local
and the IPv6 space outside global unicast 2000::/3; SaaS mode still accepts
RFC 1918 and fd00::/8. IPv4 addresses carried inside IPv6 forms (mapped,
compatible, NAT64, 6to4, Teredo) are decoded and checked too, and every
spelling of an IPv4 address that HTTP clients accept (``127.1``,
``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``) is parsed as the address it
is. A refusal names the rule it broke.

Python's ``ipaddress.is_global`` is the last check, not the first: its
tables changed in 3.11.10/3.12.4/3.13.0 (gh-113171), and the tests run on
3.11 while Lambda runs 3.13. Every block where versions disagree has its
own rule below, so the decision is the same on each (tests/test_urlguard.py
compares them).

The resolver is a parameter, so tests need no network; peer discovery
calls the same function at read time (seed #1484) with DNS resolved again.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Iterable[str]]

MAX_URL_LENGTH = 2048

# Names accepted without a DNS lookup. "localhost" is the standard dev alias
# agents in local development rely on (seed behaviour).
LOCAL_NAMES = frozenset({"localhost"})
# Peer discovery also hands out host.docker.internal: the seed rewrites
# localhost to it for callers inside Docker and its isSafeURL accepts it.
DISCOVERY_NAMES = LOCAL_NAMES | {"host.docker.internal"}


class URLRefused(ValueError):
    """The URL may not be registered; str(error) is the reason for the 400."""


@dataclass(frozen=True)
class Rule:
    network: IPNetwork
    label: str
    saas_allowed: bool = False


def _rule(cidr: str, label: str, *, saas_allowed: bool = False) -> Rule:
    return Rule(ipaddress.ip_network(cidr), label, saas_allowed)


RULES = (
    # --- the seed's ranges, with its labels ---------------------------------
    # Link-local, loopback and the IPv6 analogues: never a legitimate agent
    # URL; they cover the AWS/GCP/Azure metadata endpoints (IMDSv1/v2) and
    # send A2A traffic back to the platform itself.
    _rule("169.254.0.0/16", "link-local address (cloud metadata endpoint)"),
    _rule("127.0.0.0/8", "loopback address"),
    _rule("fe80::/10", "IPv6 link-local address (cloud metadata analogue)"),
    _rule("::1/128", "IPv6 loopback address"),
    # Documentation, CGNAT, multicast and the non-routable ULA half are
    # never VPC subnets on any cloud, so they are blocked in SaaS mode too.
    _rule("192.0.2.0/24", "TEST-NET-1 documentation range (RFC-5737)"),
    _rule("198.51.100.0/24", "TEST-NET-2 documentation range (RFC-5737)"),
    _rule("203.0.113.0/24", "TEST-NET-3 documentation range (RFC-5737)"),
    _rule("100.64.0.0/10", "carrier-grade NAT address (RFC-6598)"),
    _rule("224.0.0.0/4", "IPv4 multicast address"),
    _rule("fc00::/8", "IPv6 ULA non-routable prefix (fc00::/8)"),
    _rule("2001:db8::/32", "IPv6 documentation address (RFC-3849 reserved)"),
    # In SaaS mode workspaces register with their VPC-private address and the
    # control plane is the source of truth for which instances exist.
    _rule("10.0.0.0/8", "RFC-1918 private address", saas_allowed=True),
    _rule("172.16.0.0/12", "RFC-1918 private address", saas_allowed=True),
    _rule("192.168.0.0/16", "RFC-1918 private address", saas_allowed=True),
    _rule("fd00::/8", "IPv6 ULA address (RFC-4193 private)", saas_allowed=True),
    # --- the rest of the IANA IPv4 special-purpose registry -----------------
    # 0.0.0.0 reaches the local host on Linux, so it is a loopback spelling.
    _rule("0.0.0.0/8", "unspecified address (0.0.0.0/8 reaches this host)"),
    _rule("192.0.0.0/24", "IETF protocol assignment (192.0.0.0/24, RFC-6890)"),
    # Oracle Cloud's instance metadata answered here (classic), like 169.254.169.254.
    _rule("192.0.0.192/32", "cloud metadata endpoint (Oracle Cloud, in 192.0.0.0/24)"),
    # IANA marks the anycast service blocks globally reachable, but an anycast
    # address answers from the instance nearest the caller, which for the
    # platform is its own network or its provider's; none is an agent host.
    _rule("192.0.0.9/32", "anycast service address: Port Control Protocol (RFC-7723)"),
    _rule("192.0.0.10/32", "anycast service address: TURN (RFC-8155)"),
    _rule("192.31.196.0/24", "anycast service address: AS112 DNS (RFC-7535)"),
    _rule("192.52.193.0/24", "anycast service address: AMT relay (RFC-7450)"),
    _rule("192.88.99.0/24", "anycast service address: 6to4/6a44 relay (RFC-7526, RFC-6751)"),
    _rule("192.175.48.0/24", "anycast service address: AS112 direct delegation (RFC-7534)"),
    _rule("198.18.0.0/15", "benchmarking range (RFC-2544)"),
    _rule("240.0.0.0/4", "reserved IPv4 address (240.0.0.0/4)"),
    _rule("255.255.255.255/32", "limited broadcast address"),
    # --- the rest of the IANA IPv6 special-purpose registry -----------------
    # ::ffff:0:0/96, 64:ff9b::/96, 64:ff9b:1::/48, 2001::/32, 2002::/16 and
    # the IPv4-compatible ::/96 carry an IPv4 address: see _FORMS.
    _rule("::/128", "IPv6 unspecified address"),
    _rule("100::/64", "IPv6 discard-only prefix (RFC-6666)"),
    _rule("100:0:0:1::/64", "IPv6 dummy prefix (RFC-9780)"),
    _rule("2001::/23", "IETF protocol assignment (2001::/23, RFC-2928)"),
    _rule("2001:1::1/128", "anycast service address: Port Control Protocol (RFC-7723)"),
    _rule("2001:1::2/128", "anycast service address: TURN (RFC-8155)"),
    _rule("2001:1::3/128", "anycast service address: DNS-SD registration (RFC-9665)"),
    _rule("2001:2::/48", "IPv6 benchmarking prefix (RFC-5180)"),
    _rule("2001:3::/32", "anycast service address: AMT relay (RFC-7450)"),
    _rule("2001:4:112::/48", "anycast service address: AS112 DNS (RFC-7535)"),
    # ORCHID and drone entity tags are identifiers, not routable hosts.
    _rule("2001:10::/28", "ORCHID identifier, deprecated (RFC-4843)"),
    _rule("2001:20::/28", "ORCHIDv2 identifier (RFC-7343)"),
    _rule("2001:30::/28", "drone remote ID entity tag (RFC-9374)"),
    _rule("2620:4f:8000::/48", "anycast service address: AS112 direct delegation (RFC-7534)"),
    _rule("3fff::/20", "IPv6 documentation address (RFC-9637)"),
    _rule("5f00::/16", "SRv6 segment identifier (RFC-9602)"),
    # --- the IPv6 address-space registry ------------------------------------
    _rule("fec0::/10", "IPv6 site-local address (deprecated, RFC-3879)"),
    _rule("ff00::/8", "IPv6 multicast address"),
)

# Longest prefix first, so a specific label wins over its parent block.
_BY_SPECIFICITY = sorted(RULES, key=lambda rule: -rule.network.prefixlen)

_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_OUTSIDE_GLOBAL_UNICAST = "reserved IPv6 address (outside the global unicast range 2000::/3)"
_NOT_GLOBAL = "address not globally reachable (IANA special-purpose registry)"


@dataclass(frozen=True)
class _Form:
    """An IPv6 form that carries an IPv4 address."""

    network: ipaddress.IPv6Network
    name: str
    # Transparent forms are as reachable as the address they carry (the
    # translator forwards to it); the others are refused whatever they carry,
    # and ``refusal`` says why.
    refusal: str | None = None


_MAPPED = _Form(ipaddress.ip_network("::ffff:0:0/96"), "IPv4-mapped IPv6 address ::ffff:0:0/96")
_NAT64 = _Form(ipaddress.ip_network("64:ff9b::/96"), "NAT64 address 64:ff9b::/96 (RFC-6052)")
_COMPATIBLE = _Form(
    ipaddress.ip_network("::/96"),
    "IPv4-compatible IPv6 address ::/96",
    "IPv4-compatible IPv6 address ::/96 (deprecated by RFC-4291, not routable)",
)
_NAT64_LOCAL = _Form(
    ipaddress.ip_network("64:ff9b:1::/48"),
    "NAT64 local-use address 64:ff9b:1::/48 (RFC-8215)",
    "NAT64 local-use address 64:ff9b:1::/48 (RFC-8215, not globally reachable)",
)
_SIXTOFOUR = _Form(
    ipaddress.ip_network("2002::/16"),
    "6to4 address 2002::/16 (RFC-3056)",
    "6to4 address 2002::/16 (RFC-3056; its relays are deprecated, RFC-7526: not globally reachable)",
)
_TEREDO = _Form(
    ipaddress.ip_network("2001::/32"),
    "Teredo address 2001::/32 (RFC-4380)",
    "Teredo address 2001::/32 (RFC-4380, a tunnel endpoint, not globally reachable)",
)


@dataclass(frozen=True)
class Refusal:
    """Why an address is refused. The addresses it names are left out of
    reasons about DNS answers: they would show what the platform's resolver
    sees (split-horizon names) to whoever registers the URL."""

    label: str
    # Shown only with addresses: the carried IPv4 address ("169.254.169.254")
    # or, for a refused form, what it carries ("carries 8.8.8.8").
    address_note: str = ""
    # Always shown: the form the address was carried in.
    form_note: str = ""

    def text(self, *, show_addresses: bool = True) -> str:
        notes = [self.address_note if show_addresses else "", self.form_note]
        detail = " ".join(note for note in notes if note)
        return f"url targets a blocked address: {self.label}" + (f": {detail}" if detail else "")


def _rule_refusal(ip: IPAddress, saas: bool) -> Refusal | None:
    for rule in _BY_SPECIFICITY:
        if ip.version == rule.network.version and ip in rule.network:
            return None if (saas and rule.saas_allowed) else Refusal(rule.label)
    if ip.version == 6 and ip not in _GLOBAL_UNICAST:
        return Refusal(_OUTSIDE_GLOBAL_UNICAST)
    # Safety net for blocks a future Python knows and the rules above do not;
    # on 3.11-3.13 every block it knows has a rule (tested).
    if not ip.is_global:
        return Refusal(_NOT_GLOBAL)
    return None


def _low32(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _carried(ip: ipaddress.IPv6Address) -> tuple[_Form, list[tuple[str, ipaddress.IPv4Address]]] | None:
    """The form and the (role, IPv4 address) pairs an IPv6 address carries."""
    if ip in _MAPPED.network:
        return _MAPPED, [("", _low32(ip))]
    if ip in _NAT64.network:
        return _NAT64, [("", _low32(ip))]
    if ip in _COMPATIBLE.network and int(ip) > 1:  # :: and ::1 have rules
        return _COMPATIBLE, [("", _low32(ip))]
    if ip in _NAT64_LOCAL.network:
        # The operator picks where in the /48 the address sits (RFC 6052);
        # the /96 layout is the common one and the one shown in a refusal.
        return _NAT64_LOCAL, [("", _low32(ip))]
    if ip in _SIXTOFOUR.network:
        return _SIXTOFOUR, [("", ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))]
    if ip in _TEREDO.network:
        server, client = ip.teredo
        # The client is where the tunnel delivers, so it is checked first.
        return _TEREDO, [("client", client), ("server", server)]
    return None


def refusal_for(ip: IPAddress | str, *, saas: bool) -> Refusal | None:
    """The structured form of blocked_reason."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # a zone id (%eth0) changes nothing
        carried = _carried(ip)
        if carried is not None:
            form, addresses = carried
            for role, ipv4 in addresses:
                inner = _rule_refusal(ipv4, saas)
                if inner is not None:
                    where = f"embedded as the {role} of {form.name}" if role else f"embedded in {form.name}"
                    return Refusal(inner.label, str(ipv4), where)
            if form.refusal is None:
                return None
            carries = " and ".join(f"{role} {ipv4}" if role else str(ipv4) for role, ipv4 in addresses)
            return Refusal(form.refusal, f"carries {carries}")
    return _rule_refusal(ip, saas)


def blocked_reason(ip: IPAddress | str, *, saas: bool) -> str | None:
    """Why this address may not be registered, or None when it may."""
    refusal = refusal_for(ip, saas=saas)
    return None if refusal is None else refusal.text()


def resolve_with_dns(hostname: str) -> list[str]:
    """Every address the system resolver returns for the host."""
    infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    return sorted({info[4][0] for info in infos})


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


def validate_agent_url(
    url: object,
    *,
    saas: bool,
    resolve: Resolver = resolve_with_dns,
    allowed_names: Collection[str] = LOCAL_NAMES,
) -> str:
    """Return the URL when it may be registered; raise URLRefused with the reason.

    allowed_names are host names accepted as they are, without a lookup
    (lower case, no trailing dot).
    """
    if not isinstance(url, str) or url == "":
        raise URLRefused("url is required")
    if len(url) > MAX_URL_LENGTH:
        raise URLRefused(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise URLRefused("url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
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

    # IDNA folds full-width digits and dots, so "１２７.０.０.１" is 127.0.0.1
    # to an HTTP client: decide on the name as clients will send it.
    host = hostname
    if not hostname.isascii():
        try:
            host = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise URLRefused(f"url host {hostname!r} is not a valid host name") from None

    ip = _literal_address(host)
    if ip is not None:
        # Agents register by DNS name; a raw address is checked as it is.
        refusal = refusal_for(ip, saas=saas)
        if refusal is not None:
            raise URLRefused(refusal.text())
        return url

    if host in allowed_names:
        return url

    name = host.rstrip(".")
    labels = name.split(".") if name else []
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
        refusal = refusal_for(resolved, saas=saas)
        if refusal is not None:
            reason = refusal.text(show_addresses=False)
            raise URLRefused(f"hostname {hostname!r} resolves to forbidden address: {reason}")
    return url
