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


def why_blocked(address: IPAddress) -> str | None:
    """Why ``address`` must not be sent to, or ``None`` for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = why_blocked(embedded)
            return None if reason is None else f"{reason} (embedded in {address})"
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
    if not address.is_global:  # shared address space (100.64.0.0/10) and other special ranges
        return f"non-public address {address}"
    return None


def parse_networks(networks: Iterable[str], field: str = "allowed_networks") -> tuple[IPNetwork, ...]:
    if isinstance(networks, str):
        raise ConfigError(f"HttpTransport.{field} must be a sequence of CIDR strings, not one string")
    parsed = []
    for network in networks:
        if not isinstance(network, str):
            raise ConfigError(f"HttpTransport.{field} must hold CIDR strings, got {type(network).__name__}")
        try:
            parsed.append(ipaddress.ip_network(network, strict=False))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"HttpTransport.{field} has an invalid network {network!r}: {exc}") from None
    return tuple(parsed)


class AddressPolicy:
    """Resolve a host and check every address against the policy.

    Verdicts are memoised per address text (an address's class never changes, nor does the policy); names are
    resolved again at every attempt, so a changed DNS answer is always checked.
    """

    _MAX_MEMO = 4096

    def __init__(self, *, enabled: bool = True, allowed_networks: Sequence[str] = ()) -> None:
        self.enabled = enabled
        self.allowed = parse_networks(allowed_networks)
        self._verdicts: dict[str, str | None] = {}  # address text -> why it is refused, or None

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
        verdict = None if self.allows(address) else f"refused by the SSRF policy: {why_blocked(address)}"
        if len(self._verdicts) >= self._MAX_MEMO:
            self._verdicts.clear()
        self._verdicts[text] = verdict
        return verdict

    def resolve(self, host: str, port: int) -> str:
        """Resolve ``host`` and check every address; return the one to connect to.

        Raises :class:`BlockedAddress` when any address is refused, and ``OSError`` (``socket.gaierror``) when
        the name does not resolve.
        """
        literal = _literal(host)
        if literal is not None:
            verdict = self._verdict(literal)
            if verdict is not None:
                raise BlockedAddress(verdict)
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
