"""The SSRF policy: loopback and private targets are refused before any connection; named networks let a local
receiver through. Ranges outside 127.0.0.0/8 and ::1 are checked on the address check itself, never by
connecting."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest

from cases import documented_flag_event
from flaghooks import ConfigError, Endpoint, RetryPolicy, Webhooks
from flaghooks.transports import DeliveryRequest, HttpTransport
from flaghooks.transports._address import AddressPolicy, why_blocked
from httpserver import HttpServer, Listener


def send(transport: HttpTransport, url: str) -> object:
    return transport.send(DeliveryRequest(url, b"{}", {}, 2.0, Endpoint(url), documented_flag_event()))


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = Listener()
    yield sock
    sock.close()


def _ipv6_available() -> bool:
    try:
        Listener(socket.AF_INET6).close()
    except OSError:
        return False
    return True


class TestLoopbackRefused:
    @pytest.mark.parametrize(
        "host",
        ["localhost", "127.0.0.1", "127.1.2.3", "[::ffff:127.0.0.1]", "2130706433", "0x7f000001", "0177.0.0.1"],
    )
    def test_refused_without_connecting(self, listener: Listener, host: str) -> None:
        """By default, every spelling of loopback is refused, permanently, and nothing reaches the socket."""
        with HttpTransport() as transport:
            result = send(transport, f"http://{host}:{listener.port}/hook")
        assert result.status is None and result.permanent  # type: ignore[attr-defined]
        assert "SSRF policy" in result.error  # type: ignore[attr-defined]
        assert listener.connections() == 0

    @pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback here")
    def test_ipv6_loopback_refused(self) -> None:
        """[::1] is refused without a connection."""
        six = Listener(socket.AF_INET6)
        try:
            with HttpTransport() as transport:
                result = send(transport, f"http://[::1]:{six.port}/")
            assert result.permanent and "loopback" in result.error  # type: ignore[attr-defined]
            assert six.connections() == 0
        finally:
            six.close()

    def test_not_retried_through_webhooks(self, listener: Listener) -> None:
        """Through Webhooks, a refused address fails at the first attempt."""
        with Webhooks(retry=RetryPolicy(attempts=5, backoff=0)) as webhooks:
            webhooks.subscribe(Endpoint(f"http://localhost:{listener.port}/"), environment=23)
            [result] = webhooks.publish(documented_flag_event())
        assert (result.ok, result.attempts) == (False, 1)
        assert "SSRF" in (result.error or "")
        assert listener.connections() == 0


class TestLettingThrough:
    def test_allowed_networks(self) -> None:
        """allowed_networks=["127.0.0.0/8"] lets a loopback receiver through, by name too."""
        with HttpServer() as server, HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
            assert send(transport, server.url()).status == 200  # type: ignore[attr-defined]
            by_name = send(transport, server.url(host="localhost"))
            addresses = {info[4][0] for info in socket.getaddrinfo("localhost", server.port, type=socket.SOCK_STREAM)}
            if all(address.startswith("127.") for address in addresses):
                assert by_name.status == 200  # type: ignore[attr-defined]
            else:  # localhost also resolves to ::1, which this policy does not allow: all or nothing
                assert by_name.permanent  # type: ignore[attr-defined]
            assert send(transport, server.url(host="2130706433")).status == 200  # type: ignore[attr-defined]

    def test_allow_private_addresses(self) -> None:
        """allow_private_addresses=True turns the policy off."""
        with HttpServer() as server, HttpTransport(allow_private_addresses=True) as transport:
            assert send(transport, server.url()).status == 200  # type: ignore[attr-defined]

    def test_other_network_does_not_open_loopback(self, listener: Listener) -> None:
        """Allowing one network does not allow another."""
        with HttpTransport(allowed_networks=["10.0.0.0/8"]) as transport:
            assert send(transport, f"http://127.0.0.1:{listener.port}/").permanent  # type: ignore[attr-defined]
        assert listener.connections() == 0

    @pytest.mark.parametrize("networks", [["not-a-network"], ["10.0.0.0/33"], "127.0.0.0/8", [5]])
    def test_bad_networks(self, networks: object) -> None:
        """Invalid networks are ConfigErrors."""
        with pytest.raises(ConfigError, match="allowed_networks"):
            HttpTransport(allowed_networks=networks)  # type: ignore[arg-type]


class TestResolution:
    def test_connects_to_the_checked_address(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The name is resolved once, checked, and the connection goes to that address with the URL's Host."""
        calls = []
        real = socket.getaddrinfo

        def resolver(host: str, port: object, *args: object, **kwargs: object) -> object:
            calls.append(host)
            if host == "hooks.test":
                return real("127.0.0.1", port, *args, **kwargs)  # type: ignore[arg-type]
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

        with HttpServer() as server, HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
            monkeypatch.setattr(socket, "getaddrinfo", resolver)
            result = send(transport, server.url("/x", host="hooks.test"))
            monkeypatch.undo()
            assert result.status == 200  # type: ignore[attr-defined]
            assert server.received[0].headers["host"] == f"hooks.test:{server.port}"
        # The name is resolved once, by the policy; the socket layer only ever sees the checked address.
        assert calls[0] == "hooks.test" and calls[1:] == ["127.0.0.1"] * (len(calls) - 1)

    def test_any_blocked_answer_refuses(self, monkeypatch: pytest.MonkeyPatch, listener: Listener) -> None:
        """If any resolved address is blocked, the attempt is refused (no picking the good one)."""
        answers = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", listener.port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", listener.port)),
        ]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
        with HttpTransport() as transport:
            result = send(transport, f"http://mixed.test:{listener.port}/")
        assert result.permanent and "127.0.0.1" in result.error  # type: ignore[attr-defined]
        assert listener.connections() == 0

    def test_dns_failure_is_retried(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A name that does not resolve is a retried failure (no DNS query leaves this test)."""

        def fail(*args: object, **kwargs: object) -> object:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", fail)
        with HttpTransport() as transport:
            result = send(transport, "http://nowhere.test/")
        assert result.status is None and not result.permanent  # type: ignore[attr-defined]
        assert result.error.startswith("DNS failure")  # type: ignore[attr-defined]


BLOCKED = [
    "0.0.0.0",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # shared address space
    "100.127.255.254",
    "127.0.0.1",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "192.0.0.1",
    "198.18.0.1",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:127.0.0.1",
    "2002:a00:1::1",  # 6to4 around 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo around 10.0.0.1
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked_ranges(address: str) -> None:
    """Every non-public range is blocked by the address check, with a reason."""
    ip = ipaddress.ip_address(address)
    assert why_blocked(ip) is not None
    assert not AddressPolicy().allows(ip)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_allowed(address: str) -> None:
    """Public unicast addresses pass the check."""
    assert why_blocked(ipaddress.ip_address(address)) is None


def test_allowed_networks_cover_mapped_forms() -> None:
    """A network allowed in IPv4 also allows its IPv4-mapped IPv6 form."""
    policy = AddressPolicy(allowed_networks=["127.0.0.0/8"])
    assert policy.allows(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.allows(ipaddress.ip_address("::1"))
    assert AddressPolicy(enabled=False).allows(ipaddress.ip_address("10.0.0.1"))


# The IANA IPv4 and IPv6 Special-Purpose Address Registries, entry by entry: (block, name, Globally Reachable).
# Written out here, apart from the policy's own table, so that a block dropped from the code fails its test.
IANA_REGISTRIES = [
    ("0.0.0.0/8", '"This network"', "False"),
    ("0.0.0.0/32", '"This host on this network"', "False"),
    ("10.0.0.0/8", "Private-Use", "False"),
    ("100.64.0.0/10", "Shared Address Space", "False"),
    ("127.0.0.0/8", "Loopback", "False"),
    ("169.254.0.0/16", "Link Local", "False"),
    ("172.16.0.0/12", "Private-Use", "False"),
    ("192.0.0.0/24", "IETF Protocol Assignments", "False"),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", "False"),
    ("192.0.0.8/32", "IPv4 dummy address", "False"),
    ("192.0.0.9/32", "Port Control Protocol Anycast", "True"),
    ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "True"),
    ("192.0.0.170/32", "NAT64/DNS64 Discovery", "False"),
    ("192.0.0.171/32", "NAT64/DNS64 Discovery", "False"),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", "False"),
    ("192.31.196.0/24", "AS112-v4", "True"),
    ("192.52.193.0/24", "AMT", "True"),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "N/A"),
    ("192.168.0.0/16", "Private-Use", "False"),
    ("192.175.48.0/24", "Direct Delegation AS112 Service", "True"),
    ("198.18.0.0/15", "Benchmarking", "False"),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", "False"),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", "False"),
    ("240.0.0.0/4", "Reserved", "False"),
    ("255.255.255.255/32", "Limited Broadcast", "False"),
    ("::1/128", "Loopback Address", "False"),
    ("::/128", "Unspecified Address", "False"),
    ("::ffff:0:0/96", "IPv4-mapped Address", "False"),
    ("64:ff9b::/96", "IPv4-IPv6 Translat.", "True"),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "False"),
    ("100::/64", "Discard-Only Address Block", "False"),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", "False"),
    ("2001::/23", "IETF Protocol Assignments", "False"),
    ("2001::/32", "TEREDO", "N/A"),
    ("2001:1::1/128", "Port Control Protocol Anycast", "True"),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "True"),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "True"),
    ("2001:2::/48", "Benchmarking", "False"),
    ("2001:3::/32", "AMT", "True"),
    ("2001:4:112::/48", "AS112-v6", "True"),
    ("2001:10::/28", "Deprecated (previously ORCHID)", "False"),
    ("2001:20::/28", "ORCHIDv2", "True"),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "True"),
    ("2001:db8::/32", "Documentation", "False"),
    ("2002::/16", "6to4", "N/A"),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", "True"),
    ("3fff::/20", "Documentation", "False"),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", "False"),
    ("fc00::/7", "Unique-Local", "False"),
    ("fe80::/10", "Link-Local Unicast", "False"),
]
# Judged by the IPv4 address they carry (kept from before: a mapped public address is that public address).
EMBEDDING = {"::ffff:0:0/96", "64:ff9b::/96", "2001::/32", "2002::/16"}
# Globally reachable, yet inside a block that is not: protocol service addresses, refused with their parent.
INSIDE_A_REFUSED_BLOCK = {"192.0.0.0/24", "2001::/23"}


def samples(block: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The first, a middle and the last address of a block."""
    network = ipaddress.ip_network(block)
    return sorted({network[0], network[network.num_addresses // 2], network[-1]})


def _parent_refused(block: str) -> bool:
    network = ipaddress.ip_network(block)
    return any(
        network != parent and network.version == parent.version and network.subnet_of(parent)  # type: ignore[arg-type]
        for parent in map(ipaddress.ip_network, INSIDE_A_REFUSED_BLOCK)
    )


@pytest.mark.parametrize(("block", "name", "reachable"), IANA_REGISTRIES, ids=[entry[0] for entry in IANA_REGISTRIES])
def test_iana_special_purpose_entry(block: str, name: str, reachable: str) -> None:
    """Each registry entry: every block not globally reachable (False or N/A) is refused, first to last address;
    forms that embed an IPv4 address follow that address; the globally reachable blocks outside refused
    parents pass."""
    policy = AddressPolicy()
    if block in EMBEDDING:
        network = ipaddress.ip_network(block)
        private, public = ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("93.184.216.34")
        if block == "::ffff:0:0/96":
            forms = [ipaddress.ip_address(f"::ffff:{v4}") for v4 in (private, public)]
        elif block == "64:ff9b::/96":
            forms = [ipaddress.ip_address(int(network[0]) | int(v4)) for v4 in (private, public)]
        elif block == "2002::/16":
            forms = [ipaddress.ip_address(int(network[0]) | int(v4) << 80) for v4 in (private, public)]
        else:  # Teredo: the client's address, inverted, in the last 32 bits
            forms = [ipaddress.ip_address(int(network[0]) | (int(v4) ^ 0xFFFFFFFF)) for v4 in (private, public)]
        assert "10.1.2.3" in (why_blocked(forms[0]) or "")  # type: ignore[arg-type]
        assert why_blocked(forms[1]) is None and policy.allows(forms[1])  # type: ignore[arg-type]
        return
    for address in samples(block):
        if reachable == "True" and not _parent_refused(block):
            assert why_blocked(address) is None, (name, address)
        else:
            assert why_blocked(address) is not None, (name, address)
            assert not policy.allows(address)


@pytest.mark.parametrize("address", ["fec0::1", "feff:ffff::1", "192.0.0.8", "192.0.0.200", "224.0.0.1", "ff0e::1"])
def test_outside_the_registries(address: str) -> None:
    """Deprecated site-local (fec0::/10), all of 192.0.0.0/24, and multicast are refused too."""
    assert why_blocked(ipaddress.ip_address(address)) is not None


def test_refusal_names_the_fix(listener: Listener) -> None:
    """The SSRF refusal says how to send there anyway: allowed_networks= or allow_private_addresses=True."""
    with HttpTransport() as transport:
        result = send(transport, f"http://127.0.0.1:{listener.port}/")
    assert result.permanent  # type: ignore[attr-defined]
    assert "allowed_networks=['127.0.0.1/32']" in result.error  # type: ignore[attr-defined]
    assert "allow_private_addresses=True" in result.error  # type: ignore[attr-defined]


@pytest.mark.parametrize("address", ["::2", "4000::1", "::10.0.0.1"])
def test_reserved_beyond_the_registries(address: str) -> None:
    """Addresses the IETF keeps in reserve outside the special-purpose registries (::/8, 4000::/3) are refused,
    on the standard library's word."""
    assert "reserved" in (why_blocked(ipaddress.ip_address(address)) or "")
