"""The SSRF guard (seed: validateAgentURL) with an injected resolver: no network.

Includes every case of the seed's TestValidateAgentURL* tests, each with the
reason it must give; example.com resolves through the fake resolver to its
public address. Every literal-address case runs with a resolver that fails
the test when called, so a spelling the guard stopped parsing cannot pass
as "cannot be resolved".

The same cases run unchanged on Python 3.12 and 3.13 (only the saasMode
tests need the layer's settings module, which is stdlib-only too);
test_same_decisions_on_other_pythons compares the guard's decisions across
the interpreters found on the machine.
"""

import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from registry import settings
from registry.urlguard import DISCOVERY_NAMES, RULES, URLRefused, blocked_reason, validate_agent_url

PUBLIC = {"example.com": ["93.184.216.34"], "agent.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]}
BLOCKED = "url targets a blocked address: "


def resolver(table=None):
    table = PUBLIC if table is None else table

    def resolve(host):
        if host in table:
            return table[host]
        raise OSError(f"{host}: Name or service not known")

    return resolve


def no_dns(host):
    raise AssertionError(f"{host!r} must not be looked up: the guard should have decided without DNS")


def ok(url, saas=False, table=None, resolve=None):
    assert validate_agent_url(url, saas=saas, resolve=resolve or resolver(table)) == url


def refused(url, saas=False, table=None, resolve=None) -> str:
    with pytest.raises(URLRefused) as err:
        validate_agent_url(url, saas=saas, resolve=resolve or resolver(table))
    return str(err.value)


# The labels, written out here rather than read from the module, so a
# changed label is a visible change to what users are told.
LINK_LOCAL = "link-local address (cloud metadata endpoint)"
LOOPBACK = "loopback address"
RFC1918 = "RFC-1918 private address"
ULA_PRIVATE = "IPv6 ULA address (RFC-4193 private)"
UNSPECIFIED = "unspecified address (0.0.0.0/8 reaches this host)"
TEST_NET_1 = "TEST-NET-1 documentation range (RFC-5737)"
PCP = "anycast service address: Port Control Protocol (RFC-7723)"
MAPPED = "IPv4-mapped IPv6 address ::ffff:0:0/96"
NAT64 = "NAT64 address 64:ff9b::/96 (RFC-6052)"
COMPATIBLE = "IPv4-compatible IPv6 address ::/96"
COMPATIBLE_REFUSED = "IPv4-compatible IPv6 address ::/96 (deprecated by RFC-4291, not routable)"
NAT64_LOCAL = "NAT64 local-use address 64:ff9b:1::/48 (RFC-8215)"
NAT64_LOCAL_REFUSED = "NAT64 local-use address 64:ff9b:1::/48 (RFC-8215, not globally reachable)"
SIXTOFOUR = "6to4 address 2002::/16 (RFC-3056)"
SIXTOFOUR_REFUSED = "6to4 address 2002::/16 (RFC-3056; its relays are deprecated, RFC-7526: not globally reachable)"
TEREDO = "Teredo address 2001::/32 (RFC-4380)"
TEREDO_REFUSED = "Teredo address 2001::/32 (RFC-4380, a tunnel endpoint, not globally reachable)"
SAME = object()  # the SaaS-mode reason is the strict one

# (host as written in a URL, strict-mode reason, SaaS-mode reason or None when SaaS accepts it).
# Every rule of the guard appears at least once (test_every_rule_is_exercised).
ADDRESS_CASES = [
    # the seed's ranges
    ("169.254.169.254", LINK_LOCAL, SAME),
    ("169.254.0.1", LINK_LOCAL, SAME),
    ("127.0.0.1", LOOPBACK, SAME),
    ("127.255.255.255", LOOPBACK, SAME),
    ("[fe80::1]", "IPv6 link-local address (cloud metadata analogue)", SAME),
    ("[fe80::1%25eth0]", "IPv6 link-local address (cloud metadata analogue)", SAME),
    ("[::1]", "IPv6 loopback address", SAME),
    ("192.0.2.1", TEST_NET_1, SAME),
    ("198.51.100.1", "TEST-NET-2 documentation range (RFC-5737)", SAME),
    ("203.0.113.254", "TEST-NET-3 documentation range (RFC-5737)", SAME),
    ("100.64.0.1", "carrier-grade NAT address (RFC-6598)", SAME),
    ("100.127.255.254", "carrier-grade NAT address (RFC-6598)", SAME),
    ("224.0.0.1", "IPv4 multicast address", SAME),
    ("239.255.255.255", "IPv4 multicast address", SAME),
    ("[fc00::1]", "IPv6 ULA non-routable prefix (fc00::/8)", SAME),
    ("[2001:db8::1]", "IPv6 documentation address (RFC-3849 reserved)", SAME),
    ("10.0.0.1", RFC1918, None),
    ("172.16.0.1", RFC1918, None),
    ("172.31.255.255", RFC1918, None),
    ("192.168.1.100", RFC1918, None),
    ("[fd00::1]", ULA_PRIVATE, None),
    ("[fd12:3456:789a::42]", ULA_PRIVATE, None),
    # issue #12: special-purpose addresses the hand-kept list missed
    ("192.0.0.192", "cloud metadata endpoint (Oracle Cloud, in 192.0.0.0/24)", SAME),
    ("198.18.0.1", "benchmarking range (RFC-2544)", SAME),
    ("198.19.255.255", "benchmarking range (RFC-2544)", SAME),
    ("[fec0::1]", "IPv6 site-local address (deprecated, RFC-3879)", SAME),
    ("[64:ff9b:1::a9fe:a9fe]", f"{LINK_LOCAL}: 169.254.169.254 embedded in {NAT64_LOCAL}", SAME),
    # the rest of the IPv4 special-purpose registry
    ("0.0.0.0", UNSPECIFIED, SAME),
    ("0.255.255.255", UNSPECIFIED, SAME),
    ("192.0.0.1", "IETF protocol assignment (192.0.0.0/24, RFC-6890)", SAME),  # DS-Lite
    ("192.0.0.170", "IETF protocol assignment (192.0.0.0/24, RFC-6890)", SAME),  # NAT64 discovery
    ("192.0.0.255", "IETF protocol assignment (192.0.0.0/24, RFC-6890)", SAME),
    ("192.0.0.9", PCP, SAME),  # globally reachable for IANA and Python 3.13, still refused
    ("192.0.0.10", "anycast service address: TURN (RFC-8155)", SAME),
    ("192.31.196.1", "anycast service address: AS112 DNS (RFC-7535)", SAME),
    ("192.52.193.1", "anycast service address: AMT relay (RFC-7450)", SAME),
    ("192.88.99.2", "anycast service address: 6to4/6a44 relay (RFC-7526, RFC-6751)", SAME),
    ("192.175.48.1", "anycast service address: AS112 direct delegation (RFC-7534)", SAME),
    ("240.0.0.1", "reserved IPv4 address (240.0.0.0/4)", SAME),
    ("255.255.255.254", "reserved IPv4 address (240.0.0.0/4)", SAME),
    ("255.255.255.255", "limited broadcast address", SAME),
    # the rest of the IPv6 special-purpose registry
    ("[::]", "IPv6 unspecified address", SAME),
    ("[100::1]", "IPv6 discard-only prefix (RFC-6666)", SAME),
    ("[100:0:0:1::1]", "IPv6 dummy prefix (RFC-9780)", SAME),
    ("[2001:100::1]", "IETF protocol assignment (2001::/23, RFC-2928)", SAME),
    ("[2001:1::1]", PCP, SAME),
    ("[2001:1::2]", "anycast service address: TURN (RFC-8155)", SAME),
    ("[2001:1::3]", "anycast service address: DNS-SD registration (RFC-9665)", SAME),
    ("[2001:2::1]", "IPv6 benchmarking prefix (RFC-5180)", SAME),
    ("[2001:3::1]", "anycast service address: AMT relay (RFC-7450)", SAME),
    ("[2001:4:112::1]", "anycast service address: AS112 DNS (RFC-7535)", SAME),
    ("[2001:10::1]", "ORCHID identifier, deprecated (RFC-4843)", SAME),
    ("[2001:20::1]", "ORCHIDv2 identifier (RFC-7343)", SAME),
    ("[2001:30::1]", "drone remote ID entity tag (RFC-9374)", SAME),
    ("[2620:4f:8000::1]", "anycast service address: AS112 direct delegation (RFC-7534)", SAME),
    ("[3fff::1]", "IPv6 documentation address (RFC-9637)", SAME),
    ("[5f00::1]", "SRv6 segment identifier (RFC-9602)", SAME),
    # the IPv6 address-space registry: multicast and unallocated space
    ("[ff02::1]", "IPv6 multicast address", SAME),
    ("[ff0e::1]", "IPv6 multicast address", SAME),
    ("[4000::1]", "reserved IPv6 address (outside the global unicast range 2000::/3)", SAME),
    ("[::1:0:0:1]", "reserved IPv6 address (outside the global unicast range 2000::/3)", SAME),
    ("[::ffff:0:7f00:1]", "reserved IPv6 address (outside the global unicast range 2000::/3)", SAME),  # IPv4-translated
    # IPv4 carried in IPv6: mapped and NAT64 are as reachable as what they carry
    ("[::ffff:169.254.169.254]", f"{LINK_LOCAL}: 169.254.169.254 embedded in {MAPPED}", SAME),
    ("[::ffff:7f00:1]", f"{LOOPBACK}: 127.0.0.1 embedded in {MAPPED}", SAME),
    ("[0:0:0:0:0:ffff:127.0.0.1]", f"{LOOPBACK}: 127.0.0.1 embedded in {MAPPED}", SAME),
    ("[::ffff:10.0.0.1]", f"{RFC1918}: 10.0.0.1 embedded in {MAPPED}", None),
    ("[64:ff9b::a9fe:a9fe]", f"{LINK_LOCAL}: 169.254.169.254 embedded in {NAT64}", SAME),
    ("[64:ff9b::c000:c0]", f"cloud metadata endpoint (Oracle Cloud, in 192.0.0.0/24): 192.0.0.192 embedded in {NAT64}", SAME),
    ("[64:ff9b::a00:1]", f"{RFC1918}: 10.0.0.1 embedded in {NAT64}", None),
    # ... the other forms are refused whatever they carry
    ("[::127.0.0.1]", f"{LOOPBACK}: 127.0.0.1 embedded in {COMPATIBLE}", SAME),
    ("[::10.0.0.1]", f"{RFC1918}: 10.0.0.1 embedded in {COMPATIBLE}", f"{COMPATIBLE_REFUSED}: carries 10.0.0.1"),
    ("[::8.8.8.8]", f"{COMPATIBLE_REFUSED}: carries 8.8.8.8", SAME),
    ("[64:ff9b:1::808:808]", f"{NAT64_LOCAL_REFUSED}: carries 8.8.8.8", SAME),
    ("[64:ff9b:1::a00:1]", f"{RFC1918}: 10.0.0.1 embedded in {NAT64_LOCAL}", f"{NAT64_LOCAL_REFUSED}: carries 10.0.0.1"),
    ("[2002:a9fe:a9fe::1]", f"{LINK_LOCAL}: 169.254.169.254 embedded in {SIXTOFOUR}", SAME),
    ("[2002:a00:1::]", f"{RFC1918}: 10.0.0.1 embedded in {SIXTOFOUR}", f"{SIXTOFOUR_REFUSED}: carries 10.0.0.1"),
    ("[2002:808:808::1]", f"{SIXTOFOUR_REFUSED}: carries 8.8.8.8", SAME),
    # Teredo: RFC 4380's example (server 65.54.227.120, client 192.0.2.45), then the
    # client, then the server on the metadata/loopback address, then both public.
    ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", f"{TEST_NET_1}: 192.0.2.45 embedded as the client of {TEREDO}", SAME),
    ("[2001:0:4136:e378:8000:63bf:5601:5601]", f"{LINK_LOCAL}: 169.254.169.254 embedded as the client of {TEREDO}", SAME),
    ("[2001:0:7f00:1::f7f7:f7f7]", f"{LOOPBACK}: 127.0.0.1 embedded as the server of {TEREDO}", SAME),
    ("[2001:0:808:808::f7f7:f7f7]", f"{TEREDO_REFUSED}: carries client 8.8.8.8 and server 8.8.8.8", SAME),
]

# Public addresses, including the neighbours of refused blocks, accepted in both modes.
PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "93.184.216.34",
    "192.0.1.1",  # just past 192.0.0.0/24
    "192.0.3.1",  # just past TEST-NET-1
    "198.17.255.255",  # just before the benchmarking range
    "198.20.0.1",  # just past it
    "100.128.0.1",  # just past CGNAT
    "223.255.255.255",  # just before multicast
    "[2606:4700:4700::1111]",
    "[2a00:1450:4001::1]",
    "[2001:200::1]",  # just past 2001::/23
    "[2003::1]",  # just past 6to4
    "[2001:db9::1]",  # just past 2001:db8::/32
    "[::ffff:8.8.8.8]",  # IPv4-mapped public: the README used to say "always blocked"
    "[64:ff9b::808:808]",  # NAT64 well-known prefix carrying a public address
]


def _cases(saas):
    for host, strict, saas_reason in ADDRESS_CASES:
        reason = strict if not saas else (strict if saas_reason is SAME else saas_reason)
        yield pytest.param(host, None if reason is None else BLOCKED + reason, id=host)


@pytest.mark.parametrize("host,reason", list(_cases(saas=False)))
def test_strict_mode_address_reasons(host, reason):
    assert refused(f"http://{host}:8000/", resolve=no_dns) == reason


@pytest.mark.parametrize("host,reason", list(_cases(saas=True)))
def test_saas_mode_address_reasons(host, reason):
    if reason is None:
        ok(f"http://{host}:8000/", saas=True, resolve=no_dns)
    else:
        assert refused(f"http://{host}:8000/", saas=True, resolve=no_dns) == reason


@pytest.mark.parametrize("saas", [False, True], ids=["strict", "saas"])
@pytest.mark.parametrize("host", PUBLIC_ADDRESSES)
def test_public_addresses_are_accepted(host, saas):
    ok(f"https://{host}:8443/a2a", saas=saas, resolve=no_dns)


def test_every_rule_is_exercised():
    reasons = " | ".join(strict for _, strict, _ in ADDRESS_CASES)
    missing = [rule.label for rule in RULES if rule.label not in reasons]
    assert missing == []


# --- TestValidateAgentURL (strict mode) ---------------------------------

@pytest.mark.parametrize("url", ["https://example.com:443", "http://example.com:8000", "http://localhost:8000", "http://localhost:9000"])
def test_ValidateAgentURL_valid(url):
    ok(url)


@pytest.mark.parametrize(
    "url,reason",
    [
        ("file:///etc/passwd", "url scheme must be http or https, got 'file'"),
        ("ftp://internal-server/secrets", "url scheme must be http or https, got 'ftp'"),
        ("://not-a-url", "url scheme must be http or https, got ''"),
        ("", "url is required"),
        ("http://169.254.169.254/latest/meta-data/", BLOCKED + LINK_LOCAL),
        ("http://169.254.169.254/computeMetadata/v1/", BLOCKED + LINK_LOCAL),
        ("http://169.254.0.1/anything", BLOCKED + LINK_LOCAL),
        ("http://127.0.0.1:8080", BLOCKED + LOOPBACK),
        ("http://127.0.0.2:8080", BLOCKED + LOOPBACK),
        ("http://127.255.255.255:9000", BLOCKED + LOOPBACK),
        ("http://10.0.0.1:8080", BLOCKED + RFC1918),
        ("http://10.0.0.5:8080", BLOCKED + RFC1918),
        ("http://10.255.255.254:8080", BLOCKED + RFC1918),
        ("http://172.16.0.1:8080", BLOCKED + RFC1918),
        ("http://172.18.0.5:8000", BLOCKED + RFC1918),
        ("http://172.31.255.255:8080", BLOCKED + RFC1918),
        ("http://192.168.0.1:8080", BLOCKED + RFC1918),
        ("http://192.168.1.100:8080", BLOCKED + RFC1918),
        ("http://192.168.255.254:8080", BLOCKED + RFC1918),
        ("http://[::1]:8080", BLOCKED + "IPv6 loopback address"),
        ("http://[fe80::1]:8080", BLOCKED + "IPv6 link-local address (cloud metadata analogue)"),
        ("http://[fd00::1]:8080", BLOCKED + ULA_PRIVATE),
        ("http://192.0.2.1:8080", BLOCKED + TEST_NET_1),
        ("http://192.0.2.254:9000", BLOCKED + TEST_NET_1),
        ("http://198.51.100.1:8080", BLOCKED + "TEST-NET-2 documentation range (RFC-5737)"),
        ("http://198.51.100.99:8000", BLOCKED + "TEST-NET-2 documentation range (RFC-5737)"),
        ("http://203.0.113.1:8080", BLOCKED + "TEST-NET-3 documentation range (RFC-5737)"),
        ("http://203.0.113.254:9000", BLOCKED + "TEST-NET-3 documentation range (RFC-5737)"),
        ("http://[2001:db8::1]:8080", BLOCKED + "IPv6 documentation address (RFC-3849 reserved)"),
        ("http://[2001:db8::ffff]:8000", BLOCKED + "IPv6 documentation address (RFC-3849 reserved)"),
        ("http://[::ffff:169.254.169.254]:80", f"{BLOCKED}{LINK_LOCAL}: 169.254.169.254 embedded in {MAPPED}"),
    ],
)
def test_ValidateAgentURL_blocked(url, reason):
    assert refused(url, resolve=no_dns) == reason


def test_ValidateAgentURL_blocked_unresolvable_name():
    assert refused("https://this-domain-definitely-does-not-exist-12345.invalid/").startswith(
        "hostname 'this-domain-definitely-does-not-exist-12345.invalid' cannot be resolved (DNS error): "
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3",
        "http://10.0.0.5:8000",
        "http://172.16.0.1",
        "http://172.18.0.42:8000",
        "http://172.31.44.78",
        "http://192.168.1.100",
        "http://192.168.255.254:9000",
        "http://[fd00::1]",
        "http://[fd12:3456:789a::42]",
    ],
)
def test_ValidateAgentURL_SaaSMode_AllowsRFC1918(url):
    ok(url, saas=True, resolve=no_dns)


@pytest.mark.parametrize(
    "url,label",
    [
        ("http://169.254.169.254", LINK_LOCAL),
        ("http://169.254.0.1", LINK_LOCAL),
        ("http://127.0.0.1:8080", LOOPBACK),
        ("http://[::1]:8080", "IPv6 loopback address"),
        ("http://192.0.2.5", TEST_NET_1),
        ("http://198.51.100.5", "TEST-NET-2 documentation range (RFC-5737)"),
        ("http://203.0.113.42", "TEST-NET-3 documentation range (RFC-5737)"),
        ("http://100.64.0.1", "carrier-grade NAT address (RFC-6598)"),
        ("http://100.127.255.254:8000", "carrier-grade NAT address (RFC-6598)"),
        ("http://[fc00::1]", "IPv6 ULA non-routable prefix (fc00::/8)"),
        ("http://224.0.0.1", "IPv4 multicast address"),
    ],
)
def test_ValidateAgentURL_SaaSMode_StillBlocksMetadataEtAl(url, label):
    assert refused(url, saas=True, resolve=no_dns) == BLOCKED + label


@pytest.mark.parametrize(
    "url,label",
    [
        ("http://10.1.2.3", RFC1918),
        ("http://172.16.0.1:8000", RFC1918),
        ("http://172.31.44.78", RFC1918),
        ("http://192.168.1.100", RFC1918),
        ("http://[fd00::1]", ULA_PRIVATE),
    ],
)
def test_ValidateAgentURL_StrictMode_BlocksRFC1918(url, label):
    assert refused(url, resolve=no_dns) == BLOCKED + label


# --- saasMode() resolution order -----------------------------------------

@pytest.fixture
def deploy_env(monkeypatch):
    monkeypatch.delenv("MOLECULE_DEPLOY_MODE", raising=False)
    monkeypatch.delenv("MOLECULE_ORG_ID", raising=False)
    monkeypatch.setattr(settings, "_warned_unknown_mode", False)
    return monkeypatch


def test_ValidateAgentURL_SaaSMode_LegacyOrgID(deploy_env):
    deploy_env.setenv("MOLECULE_DEPLOY_MODE", "")
    deploy_env.setenv("MOLECULE_ORG_ID", "7b2179dc-8cc6-4581-a3c6-c8bff4481086")
    assert settings.saas_mode() is True
    for url in ["http://10.1.2.3", "http://172.18.0.42:8000", "http://192.168.1.100", "http://[fd00::1]"]:
        ok(url, saas=settings.saas_mode())


@pytest.mark.parametrize("mode,expected", [("saas", True), (" SaaS ", True), ("self-hosted", False), ("selfhosted", False), ("standalone", False)])
def test_deploy_mode_values(deploy_env, mode, expected):
    deploy_env.setenv("MOLECULE_DEPLOY_MODE", mode)
    deploy_env.setenv("MOLECULE_ORG_ID", "org-set-but-overridden")
    assert settings.saas_mode() is expected


def test_unknown_deploy_mode_falls_closed_and_warns_once(deploy_env, caplog):
    deploy_env.setenv("MOLECULE_DEPLOY_MODE", "prod")
    deploy_env.setenv("MOLECULE_ORG_ID", "7b2179dc")  # would mean SaaS if the mode were unset
    with caplog.at_level(logging.WARNING, logger="registry.settings"):
        assert settings.saas_mode() is False
        assert settings.saas_mode() is False
    warnings = [r for r in caplog.records if "not recognised" in r.getMessage()]
    assert len(warnings) == 1


def test_neither_set_is_strict(deploy_env):
    assert settings.saas_mode() is False


def test_blank_org_id_is_strict(deploy_env):
    deploy_env.setenv("MOLECULE_ORG_ID", "   ")
    assert settings.saas_mode() is False


# --- DNS (F1083/#1130) ---------------------------------------------------

# A DNS name resolving to each kind of refused address. The reason names the
# rule and the form, never the resolved address (it would show what the
# platform's resolver sees to whoever registers the URL).
DNS_CASES = [
    ("169.254.169.254", LINK_LOCAL, SAME),
    ("127.0.0.1", LOOPBACK, SAME),
    ("::1", "IPv6 loopback address", SAME),
    ("fe80::1%eth0", "IPv6 link-local address (cloud metadata analogue)", SAME),
    ("10.0.0.7", RFC1918, None),
    ("fd00::7", ULA_PRIVATE, None),
    ("fc00::7", "IPv6 ULA non-routable prefix (fc00::/8)", SAME),
    ("100.64.0.1", "carrier-grade NAT address (RFC-6598)", SAME),
    ("0.0.0.0", UNSPECIFIED, SAME),
    ("192.0.0.192", "cloud metadata endpoint (Oracle Cloud, in 192.0.0.0/24)", SAME),
    ("198.18.0.1", "benchmarking range (RFC-2544)", SAME),
    ("203.0.113.9", "TEST-NET-3 documentation range (RFC-5737)", SAME),
    ("224.0.0.251", "IPv4 multicast address", SAME),
    ("ff02::fb", "IPv6 multicast address", SAME),
    ("fec0::1", "IPv6 site-local address (deprecated, RFC-3879)", SAME),
    ("240.0.0.1", "reserved IPv4 address (240.0.0.0/4)", SAME),
    ("4000::1", "reserved IPv6 address (outside the global unicast range 2000::/3)", SAME),
    ("2001:1::1", PCP, SAME),
    ("::ffff:127.0.0.1", f"{LOOPBACK}: embedded in {MAPPED}", SAME),
    ("::ffff:10.0.0.1", f"{RFC1918}: embedded in {MAPPED}", None),
    ("64:ff9b::a9fe:a9fe", f"{LINK_LOCAL}: embedded in {NAT64}", SAME),
    ("64:ff9b:1::a9fe:a9fe", f"{LINK_LOCAL}: embedded in {NAT64_LOCAL}", SAME),
    ("64:ff9b:1::808:808", NAT64_LOCAL_REFUSED, SAME),
    ("::127.0.0.1", f"{LOOPBACK}: embedded in {COMPATIBLE}", SAME),
    ("2002:a9fe:a9fe::1", f"{LINK_LOCAL}: embedded in {SIXTOFOUR}", SAME),
    ("2002:808:808::1", SIXTOFOUR_REFUSED, SAME),
    ("2001:0:4136:e378:8000:63bf:5601:5601", f"{LINK_LOCAL}: embedded as the client of {TEREDO}", SAME),
    ("2001:0:808:808::f7f7:f7f7", TEREDO_REFUSED, SAME),
]


def _dns_cases(saas):
    for address, strict, saas_reason in DNS_CASES:
        reason = strict if not saas else (strict if saas_reason is SAME else saas_reason)
        yield pytest.param(address, reason, id=address)


@pytest.mark.parametrize("address,reason", list(_dns_cases(saas=False)))
def test_dns_name_resolving_to_refused_address_strict(address, reason):
    table = {"evil.example.com": ["93.184.216.34", address]}
    assert refused("http://evil.example.com/", table=table) == f"hostname 'evil.example.com' resolves to forbidden address: {BLOCKED}{reason}"


@pytest.mark.parametrize("address,reason", list(_dns_cases(saas=True)))
def test_dns_name_resolving_to_refused_address_saas(address, reason):
    table = {"evil.example.com": [address]}
    if reason is None:
        ok("http://evil.example.com/", saas=True, table=table)
    else:
        expected = f"hostname 'evil.example.com' resolves to forbidden address: {BLOCKED}{reason}"
        assert refused("http://evil.example.com/", saas=True, table=table) == expected


@pytest.mark.parametrize("saas", [False, True], ids=["strict", "saas"])
def test_dns_name_resolving_to_public_addresses_is_accepted(saas):
    ok("https://agent.example.com:8443/a2a", saas=saas)
    ok("http://m.example.com/", saas=saas, table={"m.example.com": ["::ffff:8.8.8.8", "64:ff9b::808:808", "2003::1"]})


def test_dns_name_resolving_to_private_is_allowed_in_saas():
    ok("http://vpc.internal.example:8000/", saas=True, table={"vpc.internal.example": ["172.31.4.5"]})


def test_unresolvable_name_is_refused_with_reason():
    assert refused("http://nowhere.example.org/") == "hostname 'nowhere.example.org' cannot be resolved (DNS error): nowhere.example.org: Name or service not known"


def test_resolver_returning_nothing_is_refused():
    assert refused("http://empty.example.com/", table={"empty.example.com": []}) == "hostname 'empty.example.com' cannot be resolved (no addresses)"


def test_resolver_returning_garbage_is_refused():
    reason = refused("http://odd.example.com/", table={"odd.example.com": ["127.1"]})
    assert reason == "hostname 'odd.example.com' resolves to an invalid address"


def test_localhost_is_allowed_without_lookup():
    assert validate_agent_url("http://localhost:8000/a2a", saas=False, resolve=no_dns)


def test_localhost_with_a_trailing_dot_is_looked_up():
    table = {"localhost": ["127.0.0.1"]}
    assert refused("http://LOCALHOST.:8000/", table=table) == f"hostname 'localhost.' resolves to forbidden address: {BLOCKED}{LOOPBACK}"


def test_docker_host_is_allowed_by_name_only_where_asked():
    """Peer discovery (seed #1484) accepts host.docker.internal; registration looks it up."""
    url = "http://host.docker.internal:8000/a2a"
    assert validate_agent_url(url, saas=False, resolve=no_dns, allowed_names=DISCOVERY_NAMES) == url
    assert validate_agent_url("http://localhost:1/", saas=False, resolve=no_dns, allowed_names=DISCOVERY_NAMES)
    table = {"host.docker.internal": ["192.168.65.254"]}
    assert refused(url, table=table) == f"hostname 'host.docker.internal' resolves to forbidden address: {BLOCKED}{RFC1918}"


def test_the_resolver_gets_the_ascii_name():
    seen = []

    def resolve(host):
        seen.append(host)
        return ["93.184.216.34"]

    ok("http://bücher.example./", resolve=resolve)
    assert seen == ["xn--bcher-kva.example"]


def test_full_width_digits_are_the_address_they_fold_to():
    # IDNA maps full-width digits and the ideographic full stop to ASCII, as HTTP clients do.
    assert refused("http://１２７.０.０.１/", resolve=no_dns) == BLOCKED + LOOPBACK
    assert refused("http://１６９。２５４。１６９。２５４/", resolve=no_dns) == BLOCKED + LINK_LOCAL


# --- other spellings of an address: parsed, never looked up --------------

# Each spelling with the reason of the address it stands for. The resolver
# fails the test if called, and the reason is the address's own, so if the
# numeric parsing is switched off these fail instead of passing on
# "cannot be resolved".
@pytest.mark.parametrize(
    "host,reason",
    [
        ("127.1", LOOPBACK),  # shortened
        ("127.0.1", LOOPBACK),
        ("2130706433", LOOPBACK),  # 127.0.0.1 as one decimal number
        ("0x7f000001", LOOPBACK),  # as one hex number
        ("0x7f.0.0.1", LOOPBACK),  # hex part
        ("0177.0.0.1", LOOPBACK),  # octal part
        ("017700000001", LOOPBACK),  # octal whole
        ("0x7F.1", LOOPBACK),
        ("127.000.000.001", LOOPBACK),  # zero-padded: octal zeros
        ("127.0.0.1.", LOOPBACK),  # trailing dot
        ("169.254.43518", LINK_LOCAL),  # 169.254.169.254 with a 16-bit last part
        ("2852039166", LINK_LOCAL),  # 169.254.169.254 as one number
        ("0xa9fea9fe", LINK_LOCAL),
        ("0251.0376.0251.0376", LINK_LOCAL),
        ("0", UNSPECIFIED),  # 0.0.0.0
        ("0x0", UNSPECIFIED),
        ("3221225664", "cloud metadata endpoint (Oracle Cloud, in 192.0.0.0/24)"),  # 192.0.0.192
        ("198.18.1", "benchmarking range (RFC-2544)"),
        ("0xffffffff", "limited broadcast address"),
    ],
)
def test_other_spellings_of_blocked_addresses_are_refused(host, reason):
    assert refused(f"http://{host}:8000/", resolve=no_dns) == BLOCKED + reason
    assert refused(f"http://{host}:8000/", saas=True, resolve=no_dns) == BLOCKED + reason


@pytest.mark.parametrize("host", ["10.1", "167772161", "0xa.0.0.1", "012.0.0.1", "[::ffff:10.0.0.1]"])
def test_other_spellings_of_private_addresses_follow_saas_mode(host):
    assert refused(f"http://{host}/", resolve=no_dns).startswith(BLOCKED + RFC1918)
    ok(f"http://{host}/", saas=True, resolve=no_dns)


@pytest.mark.parametrize("host", ["8.8.2056", "134744072", "0x8080808", "010.010.010.010"])
def test_other_spellings_of_public_addresses_are_accepted(host):
    ok(f"http://{host}/", resolve=no_dns)


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.256", "0x100.0.0.1", "4294967296", "1.16777216", "09.1.1.1"])
def test_numeric_hosts_out_of_range_are_refused(host):
    assert refused(f"http://{host}/", resolve=no_dns) == f"url host {host!r} is not a valid address"


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://", "url has no host"),
        ("http://:8080/", "url has no host"),
        ("http://example.com:99999/", "url is not valid: Port out of range 0-65535"),
        ("http://example.com:port/", "url is not valid: Port could not be cast to integer value as 'port'"),
        ("http://user:pw@example.com/", "url must not contain credentials"),
        ("http://example.com@169.254.169.254/", "url must not contain credentials"),
        ("javascript:alert(1)", "url scheme must be http or https, got 'javascript'"),
        ("HTTP://example.com/", None),
        ("http://exa mple.com/", "url contains whitespace or control characters"),
        ("http://example.com/\r\nX: y", "url contains whitespace or control characters"),
        ("http://" + "a" * 3000 + ".com/", "url is longer than 2048 characters"),
        ("http://bad_host!.com/", "url host 'bad_host!.com' is not a valid host name"),
        ("http://-leading.example.com/", "url host '-leading.example.com' is not a valid host name"),
        ("http://a..b/", "url host 'a..b' is not a valid host name"),
        ("http://%31%32%37.0.0.1/", "url host '%31%32%37.0.0.1' is not a valid host name"),
    ],
)
def test_malformed_urls_are_refused_with_reason(url, reason):
    if reason is None:
        ok(url)
    else:
        assert refused(url) == reason


@pytest.mark.parametrize("value", [None, 42, ["http://example.com"]])
def test_non_string_url_is_refused(value):
    with pytest.raises(URLRefused, match="^url is required$"):
        validate_agent_url(value, saas=False, resolve=no_dns)


# --- the decision does not depend on the Python version -------------------

def _probe_addresses() -> list[str]:
    """Boundaries of every rule and of every block this Python's ipaddress
    knows, each IPv4 probe also wrapped in every IPv6 form."""
    networks = [rule.network for rule in RULES]
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        constants = cls._constants  # private, but the only place the tables are
        networks += getattr(constants, "_private_networks", []) + getattr(constants, "_private_networks_exceptions", [])
    networks += [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "2002::/16", "2001::/32", "64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0/96", "2000::/3")]
    probes = set()
    for net in networks:
        top = 2**net.max_prefixlen - 1
        for value in (int(net.network_address) - 1, int(net.network_address), int(net.network_address) + 1,
                      int(net.broadcast_address), int(net.broadcast_address) + 1):
            if 0 <= value <= top:
                probes.add(ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value))
    ipv4 = [p for p in probes if p.version == 4] + [ipaddress.IPv4Address("8.8.8.8")]
    for v4 in ipv4:
        n = int(v4)
        probes.update(
            ipaddress.IPv6Address(value)
            for value in (
                0xFFFF << 32 | n,  # mapped
                n,  # compatible
                0x64FF9B << 96 | n,  # NAT64
                0x64FF9B0001 << 80 | n,  # local-use NAT64
                0x2002 << 112 | n << 80,  # 6to4
                0x20010000 << 96 | n << 64 | (n ^ 0xFFFFFFFF),  # Teredo, server and client
                0x20010000 << 96 | 0x08080808 << 64 | (n ^ 0xFFFFFFFF),  # Teredo, client only
            )
        )
    return sorted(str(p) for p in probes)


def _decisions(addresses: list[str]) -> dict[str, list]:
    return {a: [blocked_reason(a, saas=False), blocked_reason(a, saas=True)] for a in addresses}


def test_no_decision_comes_from_is_global(monkeypatch):
    """Every block this Python's is_global rejects has its own rule, so the
    fallback decides nothing: the decisions are the same with is_global
    claiming every address is global."""
    probes = _probe_addresses()
    before = _decisions(probes)
    monkeypatch.setattr(ipaddress.IPv4Address, "is_global", property(lambda self: True))
    monkeypatch.setattr(ipaddress.IPv6Address, "is_global", property(lambda self: True))
    assert _decisions(probes) == before
    # ... and nothing this Python's is_global rejects is accepted in strict mode,
    # except the IPv4-mapped and NAT64 forms of public addresses.
    monkeypatch.undo()
    transparent = (ipaddress.ip_network("::ffff:0:0/96"), ipaddress.ip_network("64:ff9b::/96"))
    accepted_not_global = [
        a for a, (strict, _) in before.items()
        if strict is None and not ipaddress.ip_address(a).is_global and not any(ipaddress.ip_address(a) in n for n in transparent)
    ]
    assert accepted_not_global == []


def test_is_global_still_refuses_what_no_rule_names(monkeypatch):
    """The safety net works: a block a future Python knows is refused."""
    monkeypatch.setattr(ipaddress.IPv4Address, "is_global", property(lambda self: False))
    assert blocked_reason("8.8.8.8", saas=False) == BLOCKED + "address not globally reachable (IANA special-purpose registry)"


_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from registry.urlguard import blocked_reason
probes = json.load(sys.stdin)
print(json.dumps({"version": sys.version.split()[0],
                  "decisions": {a: [blocked_reason(a, saas=False), blocked_reason(a, saas=True)] for a in probes}}))
"""


def _other_pythons() -> list[str]:
    """Python 3.11+ interpreters on this machine: PATH, pyenv, URLGUARD_PYTHONS."""
    found = [p for p in os.environ.get("URLGUARD_PYTHONS", "").split(os.pathsep) if p]
    found += [shutil.which(f"python3.{minor}") for minor in range(11, 16)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found += sorted(str(p) for p in pyenv.glob("3.1[1-9]*/bin/python"))
    return list(dict.fromkeys(p for p in found if p))


def test_same_decisions_on_other_pythons():
    """ipaddress's tables differ between 3.11.7/3.12.1 and 3.13 (gh-113171):
    the guard decides the same on every interpreter found here."""
    probes = _probe_addresses()
    mine = _decisions(probes)
    layer = str(Path(__file__).resolve().parent.parent / "layers" / "shared")
    compared = {}
    for python in _other_pythons():
        run = subprocess.run([python, "-c", _CHILD, layer], input=json.dumps(probes), capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            continue  # not a usable 3.11+ interpreter
        theirs = json.loads(run.stdout)
        if theirs["version"] == sys.version.split()[0] or theirs["version"] in compared:
            continue
        differing = {a: (mine[a], theirs["decisions"][a]) for a in probes if mine[a] != theirs["decisions"][a]}
        assert differing == {}, f"Python {theirs['version']} decides differently"
        compared[theirs["version"]] = len(probes)
    if not compared:
        pytest.skip("no other Python 3.11+ interpreter on this machine to compare with (set URLGUARD_PYTHONS)")
    print(f"same decisions for {len(probes)} addresses on {sys.version.split()[0]} and {', '.join(sorted(compared))}")
