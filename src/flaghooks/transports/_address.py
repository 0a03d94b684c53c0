"""The SSRF policy: which addresses a web hook may be sent to.

Web hook URLs come from users; without a policy, a URL can make the sender reach its own internal network
(a database's admin port, the cloud metadata service at 169.254.169.254). The policy resolves the host and
refuses the attempt if any address is not a public unicast address, before any connection is made; the
connection then goes to the address that was checked, so that a second DNS answer cannot slip through.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable, Sequence

from ..exceptions import ConfigError

__all__ = ["AddressPolicy", "BlockedAddress"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """A resolved address the policy refuses."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped, 6to4, Teredo (client) or NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


# Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries whose "Globally Reachable" is
# False or N/A, as (network, name). A more specific block marked globally reachable inside one of these (the
# anycast addresses 192.0.0.9 and 192.0.0.10, 2001:1::1 to ::3, AMT, AS112, ORCHIDv2, DETs inside 2001::/23)
# stays refused with its parent: those are protocol service addresses, never a web hook receiver. Forms
# that embed an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) are judged by that address before this
# table is consulted. Added beside the registries: multicast and the deprecated IPv6 site-local block.
SPECIAL_PURPOSE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), name)
    for network, name in (
        ("0.0.0.0/8", '"this network"'),
        ("10.0.0.0/8", "private-use"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private-use"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.168.0.0/16", "private-use"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
        ("::1/128", "loopback"),
        ("::/128", "unspecified"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "dummy IPv6 prefix"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing (SRv6) SIDs"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "deprecated site-local"),
        ("ff00::/8", "multicast"),
    )
)
_V4_TABLE = tuple(entry for entry in SPECIAL_PURPOSE if entry[0].version == 4)
_V6_TABLE = tuple(entry for entry in SPECIAL_PURPOSE if entry[0].version == 6)


def why_blocked(address: IPAddress) -> str | None:
    """Why ``address`` must not be sent to, or ``None`` for a globally reachable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = why_blocked(embedded)
            return None if reason is None else f"{reason} (embedded in {address})"
        if address.scope_id is not None:  # pragma: no cover - resolve() strips zone ids, URLs refuse them
            return f"scoped address {address}"
    table = _V6_TABLE if isinstance(address, ipaddress.IPv6Address) else _V4_TABLE
    for network, name in table:
        if address in network:
            return f"{name} address {address} ({network})"
    # The standard library's view, which later Pythons keep up to date: a second opinion, never a way out.
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address {address}"
    if not address.is_global:  # pragma: no cover - the table covers every such block this Python knows
        return f"non-public address {address}"
    return None


def parse_networks(networks: Iterable[str], field: str = "HttpTransport.allowed_networks") -> tuple[IPNetwork, ...]:
    if isinstance(networks, str):
        raise ConfigError(f"{field} must be a sequence of CIDR strings, not one string")
    parsed = []
    for network in networks:
        if not isinstance(network, str):
            raise ConfigError(f"{field} must hold CIDR strings, got {type(network).__name__}")
        try:
            parsed.append(ipaddress.ip_network(network, strict=False))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{field} has an invalid network {network!r}: {exc}") from None
    return tuple(parsed)


def refusal(address: IPAddress) -> str:
    """The error text of a refused address: what it is, and the two ways to let it through."""
    host = ipaddress.ip_network(address)
    return (
        f"refused by the SSRF policy: {why_blocked(address)}; to send there, let it through with "
        f"HttpTransport(allowed_networks=[{str(host)!r}]) or turn the policy off with "
        "HttpTransport(allow_private_addresses=True)"
    )


class AddressPolicy:
    """Resolve a host and check every address against the policy.

    Verdicts are memoised per address text (an address's class never changes, nor does the policy); names are
    resolved again at every attempt, so a changed DNS answer is always checked.
    """

    _MAX_MEMO = 4096

    def __init__(
        self, *, enabled: bool = True, allowed_networks: Sequence[str] = (), owner: str = "HttpTransport"
    ) -> None:
        self.enabled = enabled
        self.allowed = parse_networks(
            allowed_networks,
            f"{owner}'s allowed_networks" if owner != "HttpTransport" else "HttpTransport.allowed_networks",
        )
        self._verdicts: dict[str, str | None] = {}  # address text -> why it is refused, or None
        self._literals: dict[str, str] = {}  # host written as an allowed address -> that address

    def allows(self, address: IPAddress) -> bool:
        if not self.enabled:
            return True
        forms = [address]
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                forms.append(embedded)
        if any(form in network for form in forms for network in self.allowed if form.version == network.version):
            return True
        return why_blocked(address) is None

    def _verdict(self, text: str) -> str | None:
        """Why the address ``text`` is refused (None: allowed); ``ValueError`` if it is not an address."""
        try:
            return self._verdicts[text]
        except KeyError:
            pass
        address = ipaddress.ip_address(text)
        verdict = None if self.allows(address) else refusal(address)
        if len(self._verdicts) >= self._MAX_MEMO:
            self._verdicts.clear()
        self._verdicts[text] = verdict
        return verdict

    def resolve(self, host: str, port: int) -> str:
        """Resolve ``host`` and check every address; return the one to connect to.

        Raises :class:`BlockedAddress` when any address is refused, and ``OSError`` (``socket.gaierror``) when
        the name does not resolve.
        """
        literal = self._literals.get(host)
        if literal is not None:  # an allowed address written in the URL: its verdict cannot change
            return literal
        literal = _literal(host)
        if literal is not None:
            verdict = self._verdict(literal)
            if verdict is not None:
                raise BlockedAddress(verdict)
            if len(self._literals) >= self._MAX_MEMO:
                self._literals.clear()
            self._literals[host] = literal
            return literal
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = []
        for info in infos:
            text = str(info[4][0]).partition("%")[0]  # drop an IPv6 zone index
            verdict = self._verdict(text)
            if verdict is not None:
                raise BlockedAddress(verdict)
            addresses.append(text)
        if not addresses:  # pragma: no cover - getaddrinfo raises rather than answer nothing
            raise socket.gaierror(f"no address for {host}")
        return addresses[0]


@functools.lru_cache(maxsize=1024)
def _literal(host: str) -> str | None:
    """The normalised text of an IP address written in the URL, or None for a name."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
