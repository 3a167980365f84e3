"""The TCP sockets a set of processes listens on, read from /proc (what ``ss -ltnp`` shows); which are not loopback."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

_LISTEN = "0A"

# What Ray 2.60 binds on every interface whatever the node's address (README, "Reliability and security"):
# each Serve replica's inter-deployment gRPC server, "[::]:0" in ray/serve/_private/replica.py, which Ray's
# token authentication guards. (process name as /proc shows it, first 15 characters; host)
UNAVOIDABLE = {("ray::ServeRepli", "[::]")}


def _addresses(table: str) -> dict[str, str]:
    """``inode -> host:port`` of the listening sockets in ``/proc/net/tcp`` or ``tcp6``."""
    found = {}
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] != _LISTEN:
            continue
        hex_ip, hex_port = fields[1].split(":")
        raw = bytes.fromhex(hex_ip)
        # the kernel writes each 32-bit word in host (little-endian) order
        packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        ip = ipaddress.ip_address(packed)
        host = str(ip) if ip.version == 4 else f"[::ffff:{ip.ipv4_mapped}]" if ip.ipv4_mapped else f"[{ip}]"
        found[fields[9]] = f"{host}:{int(hex_port, 16)}"
    return found


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def listening(pids: set[int]) -> list[tuple[int, str, str]]:
    """``(pid, process name, host:port)`` of every TCP socket ``pids`` listen on."""
    addresses = {**_addresses("tcp"), **_addresses("tcp6")}
    found = []
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone meanwhile
        for inode in filter(None, map(_socket_inode, (f"/proc/{pid}/fd/{fd}" for fd in fds))):
            if inode in addresses:
                found.append((pid, name, addresses[inode]))
    return sorted(set(found))


def _socket_inode(fd: str) -> str | None:
    try:
        link = os.readlink(fd)
    except OSError:
        return None  # closed meanwhile
    return link[len("socket:["):-1] if link.startswith("socket:[") else None


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rpartition(":")[0].strip("[]"))
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def exposed(pids: set[int]) -> list[tuple[int, str, str]]:
    """The listening sockets of ``pids`` reachable from another machine (not bound to loopback), but the
    :data:`UNAVOIDABLE` ones."""
    return [(pid, name, address) for pid, name, address in listening(pids)
            if not is_loopback(address) and (name, address.rpartition(":")[0]) not in UNAVOIDABLE]
