"""Socket addresses between Python's spelling and the kernel's.

A datagram transport hands the ring raw sockaddr bytes (SENDMSG's
msg_name) and gets them back from RECVMSG; its protocol speaks in the
socket module's terms: (host, port) for IPv4, (host, port, flowinfo,
scope_id) for IPv6, a str or (abstract) bytes path for Unix sockets.
Both directions follow the socket module's own rules (numeric hosts as
given, names resolved as sendto() resolves them, '' and '<broadcast>',
the errors it raises), and both are cached per address: a server answers
the same peers again and again.
"""
from __future__ import annotations

import operator
import os
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_CACHE_LIMIT = 1024
_FAMILY = {family: int(family).to_bytes(2, sys.byteorder)
           for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)}
_SUN_PATH_AT = 2         # offsetof(struct sockaddr_un, sun_path)
_SUN_PATH_MAX = 108

# The space a RECVMSG sets aside for the source address, by family.
NAME_SPACE: dict[int, int]
NAME_SPACE = {socket.AF_INET: 16, socket.AF_INET6: 28, socket.AF_UNIX: _SUN_PATH_AT + _SUN_PATH_MAX}


class Codec:
    """pack(address) -> sockaddr bytes and unpack(sockaddr bytes) ->
    address, for one family, each remembering what it has seen."""

    __slots__ = ("family", "_packed", "_unpacked")
    _packed: dict[Any, bytes]
    _unpacked: dict[bytes, Any]

    def __init__(self, family: int) -> None:
        self.family = family
        self._packed = {}
        self._unpacked = {}

    def pack(self, address: Any) -> bytes:
        try:
            return self._packed[address]
        except KeyError:
            pass
        except TypeError:                # unhashable: the socket module refuses it below
            return _PACK[self.family](address)
        raw = _PACK[self.family](address)
        if len(self._packed) >= _CACHE_LIMIT:
            self._packed.clear()
        self._packed[address] = raw
        return raw

    def unpack(self, raw: bytes) -> Any:
        try:
            return self._unpacked[raw]
        except KeyError:
            pass
        address = _unpack(self.family, raw)
        if len(self._unpacked) >= _CACHE_LIMIT:
            self._unpacked.clear()
        self._unpacked[raw] = address
        return address


# -- Python's address -> sockaddr bytes

def _port(port: int, what: str) -> bytes:
    port = operator.index(port)
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{what}: port must be 0-65535.")
    return port.to_bytes(2, "big")


def _host(family: int, host: str | bytes | bytearray) -> tuple[bytes, int]:
    """The address bytes of `host`, as the socket module's setipaddr()
    finds them: numeric forms as they are, '' as the wildcard,
    '<broadcast>', and names through getaddrinfo (blocking, as sendto()
    resolves them).  Returns (bytes, scope_id or 0)."""
    if not isinstance(host, (str, bytes, bytearray)):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if isinstance(host, (bytes, bytearray)):
        host = host.decode("idna")
    if host == "":
        return bytes(4 if family == socket.AF_INET else 16), 0
    if host == "<broadcast>" and family == socket.AF_INET:
        return b"\xff\xff\xff\xff", 0
    try:
        return socket.inet_pton(family, host), 0
    except OSError:
        pass
    info = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)[0][4]
    # (type: ignore: typeshed allows an IPv6-less build's (int, bytes); not asked for here)
    return (socket.inet_pton(family, info[0].partition("%")[0]),  # type: ignore[union-attr]
            info[3] if len(info) > 3 else 0)


def _pack_inet(address: Any) -> bytes:
    if not isinstance(address, tuple):
        raise TypeError(f"sendto(): AF_INET address must be tuple, not {type(address).__name__}")
    if len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = address
    port = _port(port, "sendto()")
    ip, _ = _host(socket.AF_INET, host)
    return _FAMILY[socket.AF_INET] + port + ip + bytes(8)


def _pack_inet6(address: Any) -> bytes:
    if not isinstance(address, tuple):
        raise TypeError(f"sendto(): AF_INET6 address must be tuple, not {type(address).__name__}")
    if not 2 <= len(address) <= 4:
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    host, port, flowinfo, scope_id = (*address, 0, 0)[:4]
    port = _port(port, "sendto()")
    flowinfo = operator.index(flowinfo)
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError("sendto(): flowinfo must be 0-1048575.")
    ip, found_scope = _host(socket.AF_INET6, host)
    scope_id = operator.index(scope_id) or found_scope
    return (_FAMILY[socket.AF_INET6] + port + flowinfo.to_bytes(4, "big") + ip
            + scope_id.to_bytes(4, sys.byteorder))


def _pack_unix(address: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(address, str):
        path = os.fsencode(address)
    elif isinstance(address, (bytes, bytearray, memoryview)):
        path = bytes(address)
    else:
        raise TypeError(f"a bytes-like object is required, not '{type(address).__name__}'")
    abstract = path[:1] == b"\0"
    if len(path) > _SUN_PATH_MAX - (not abstract):
        raise OSError(36, "AF_UNIX path too long")
    return _FAMILY[socket.AF_UNIX] + path + (b"" if abstract else b"\0")


_PACK: dict[int, Callable[[Any], bytes]]
_PACK = {socket.AF_INET: _pack_inet, socket.AF_INET6: _pack_inet6, socket.AF_UNIX: _pack_unix}


# -- sockaddr bytes -> Python's address, as the socket module's makesockaddr()

def _unpack(family: int, raw: bytes) -> Any:
    if not raw:
        return None                      # an unbound sender
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6:
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        port = int.from_bytes(raw[2:4], "big")
        flowinfo = int.from_bytes(raw[4:8], "big")
        scope_id = int.from_bytes(raw[24:28], sys.byteorder)
        if scope_id:                     # the numeric host names its scope ('%eth0')
            host = socket.getnameinfo((host, port, flowinfo, scope_id),
                                      socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
        return host, port, flowinfo, scope_id
    path = raw[_SUN_PATH_AT:]
    if path[:1] == b"\0":
        return path                      # the abstract namespace, as bytes
    return os.fsdecode(path.partition(b"\0")[0])
