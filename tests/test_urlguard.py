"""The SSRF guard (seed: validateAgentURL) with an injected resolver: no network.

Includes every case of the seed's TestValidateAgentURL* tests; example.com
resolves through the fake resolver to its public address.
"""

import logging

import pytest

from registry import settings
from registry.urlguard import URLRefused, validate_agent_url

PUBLIC = {"example.com": ["93.184.216.34"], "agent.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]}


def resolver(table=None):
    table = PUBLIC if table is None else table

    def resolve(host):
        if host in table:
            return table[host]
        raise OSError(f"{host}: Name or service not known")

    return resolve


def ok(url, saas=False, table=None):
    assert validate_agent_url(url, saas=saas, resolve=resolver(table)) == url


def refused(url, saas=False, table=None) -> str:
    with pytest.raises(URLRefused) as err:
        validate_agent_url(url, saas=saas, resolve=resolver(table))
    return str(err.value)


# --- TestValidateAgentURL (strict mode) ---------------------------------

@pytest.mark.parametrize("url", ["https://example.com:443", "http://example.com:8000", "http://localhost:8000", "http://localhost:9000"])
def test_ValidateAgentURL_valid(url):
    ok(url)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://internal-server/secrets",
        "://not-a-url",
        "",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254/computeMetadata/v1/",
        "http://169.254.0.1/anything",
        "http://127.0.0.1:8080",
        "http://127.0.0.2:8080",
        "http://127.255.255.255:9000",
        "http://10.0.0.1:8080",
        "http://10.0.0.5:8080",
        "http://10.255.255.254:8080",
        "http://172.16.0.1:8080",
        "http://172.18.0.5:8000",
        "http://172.31.255.255:8080",
        "http://192.168.0.1:8080",
        "http://192.168.1.100:8080",
        "http://192.168.255.254:8080",
        "http://[::1]:8080",
        "http://[fe80::1]:8080",
        "http://[fd00::1]:8080",
        "http://192.0.2.1:8080",
        "http://192.0.2.254:9000",
        "http://198.51.100.1:8080",
        "http://198.51.100.99:8000",
        "http://203.0.113.1:8080",
        "http://203.0.113.254:9000",
        "http://[2001:db8::1]:8080",
        "http://[2001:db8::ffff]:8000",
        "http://[::ffff:169.254.169.254]:80",
        "https://this-domain-definitely-does-not-exist-12345.invalid/",
    ],
)
def test_ValidateAgentURL_blocked(url):
    refused(url)


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
    ok(url, saas=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254",
        "http://169.254.0.1",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://192.0.2.5",
        "http://198.51.100.5",
        "http://203.0.113.42",
        "http://100.64.0.1",
        "http://100.127.255.254:8000",
        "http://[fc00::1]",
        "http://224.0.0.1",
    ],
)
def test_ValidateAgentURL_SaaSMode_StillBlocksMetadataEtAl(url):
    refused(url, saas=True)


@pytest.mark.parametrize("url", ["http://10.1.2.3", "http://172.16.0.1:8000", "http://172.31.44.78", "http://192.168.1.100", "http://[fd00::1]"])
def test_ValidateAgentURL_StrictMode_BlocksRFC1918(url):
    assert "RFC-1918" in refused(url) or "RFC-4193" in refused(url)


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

def test_dns_name_resolving_to_metadata_is_refused():
    reason = refused("http://evil.example.com/", table={"evil.example.com": ["169.254.169.254"]})
    assert "resolves to forbidden address" in reason and "metadata" in reason


def test_every_resolved_address_is_checked():
    reason = refused("http://mixed.example.com/", table={"mixed.example.com": ["93.184.216.34", "10.0.0.7"]})
    assert "RFC-1918" in reason


def test_dns_name_resolving_to_private_is_allowed_in_saas():
    ok("http://vpc.internal.example:8000/", saas=True, table={"vpc.internal.example": ["172.31.4.5"]})


def test_dns_name_resolving_to_ipv4_mapped_loopback_is_refused():
    refused("http://m.example.com/", table={"m.example.com": ["::ffff:127.0.0.1"]})


def test_unresolvable_name_is_refused_with_reason():
    assert "cannot be resolved" in refused("http://nowhere.example.org/")


def test_resolver_returning_nothing_is_refused():
    assert "cannot be resolved" in refused("http://empty.example.com/", table={"empty.example.com": []})


def test_localhost_is_allowed_without_lookup():
    def no_dns(host):
        raise AssertionError("localhost must not be looked up")

    assert validate_agent_url("http://localhost:8000/a2a", saas=False, resolve=no_dns)


def test_public_ipv6_literal_allowed():
    ok("http://[2606:2800:220:1:248:1893:25c8:1946]:8080/")


# --- beyond the seed: other spellings of blocked addresses ---------------

@pytest.mark.parametrize(
    "host",
    [
        "127.1",  # shortened
        "127.0.1",
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f000001",  # as one hex number
        "0x7f.0.0.1",  # hex part
        "0177.0.0.1",  # octal part
        "017700000001",  # octal whole
        "0x7F.1",
        "169.254.43518",  # 169.254.169.254 with a 16-bit last part
        "2852039166",  # 169.254.169.254 as one number
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "0",  # 0.0.0.0
        "0.0.0.0",
        "0x0",
        "[::]",
        "[::ffff:7f00:1]",  # IPv4-mapped, hex form
        "[::ffff:a9fe:a9fe]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",  # IPv4-compatible (deprecated)
        "[64:ff9b::a9fe:a9fe]",  # NAT64 to the metadata endpoint
        "[2002:a9fe:a9fe::1]",  # 6to4 wrapping 169.254.169.254
        "[fe80::1%25eth0]",  # link-local with a zone id
        "127.0.0.1.",  # trailing dot
        "LOCALHOST.",  # goes to DNS (only plain "localhost" is allowed by name)
        "255.255.255.255",
        "[ff02::1]",
    ],
)
def test_other_spellings_of_blocked_addresses_are_refused(host):
    refused(f"http://{host}:8000/", table={})


@pytest.mark.parametrize("host", ["10.1", "167772161", "0xa.0.0.1", "012.0.0.1", "[::ffff:10.0.0.1]"])
def test_other_spellings_of_private_addresses_follow_saas_mode(host):
    refused(f"http://{host}/", table={})
    ok(f"http://{host}/", saas=True, table={})


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.256", "0x100.0.0.1", "4294967296", "1.16777216", "09.1.1.1"])
def test_numeric_hosts_out_of_range_are_refused(host):
    assert "not a valid" in refused(f"http://{host}/", table={})


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://", "no host"),
        ("http://:8080/", "no host"),
        ("http://example.com:99999/", "not valid"),
        ("http://example.com:port/", "not valid"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com@169.254.169.254/", "credentials"),
        ("javascript:alert(1)", "scheme"),
        ("HTTP://example.com/", None),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\r\nX: y", "whitespace"),
        ("http://" + "a" * 3000 + ".com/", "longer than"),
        ("http://bad_host!.com/", "not a valid host"),
        ("http://-leading.example.com/", "not a valid host"),
    ],
)
def test_malformed_urls_are_refused_with_reason(url, reason):
    if reason is None:
        ok(url)
    else:
        assert reason in refused(url)


@pytest.mark.parametrize("value", [None, 42, ["http://example.com"]])
def test_non_string_url_is_refused(value):
    with pytest.raises(URLRefused):
        validate_agent_url(value, saas=False, resolve=resolver())
