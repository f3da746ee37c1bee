"""The local stack listens on loopback only: every listening TCP socket of every process of
every running service (its whole process tree), read from /proc, is on 127.0.0.0/8 or ::1.

Run against the running stack (`./run.sh up`, and `./run.sh stream` for the stream job).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

from pipeline import config
from script import stack
from script.procs import process_tree

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column


def _address(hex_address: str) -> str:
    """/proc/net/tcp{,6}'s address: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(words) == 4 else socket.AF_INET6, words)


def listening_sockets() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket of this network namespace."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            address, _, port = fields[1].partition(":")
            found[int(fields[9])] = (_address(address), int(port, 16))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds open; empty when it is gone."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # Java's IPv4 sockets show as ::ffff:a.b.c.d
    return (mapped or ip).is_loopback


def command(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    return " ".join(text.split())[:80]  # a process title may be padded with blanks


def stack_listeners() -> list[tuple[str, int, str, str, int]]:
    """(service, pid, command, address, port) of every listening socket of the running stack."""
    listening = listening_sockets()
    rows = []
    for row in stack.status_rows():
        if row["state"] != "up":
            continue
        for pid in process_tree(int(row["pid"])):
            for inode in socket_inodes(pid) & listening.keys():
                address, port = listening[inode]
                rows.append((str(row["service"]), pid, command(pid), address, port))
    return rows


def test_every_listening_socket_of_the_stack_is_on_loopback() -> None:
    up = {str(r["service"]): r["port"] for r in stack.status_rows() if r["state"] == "up"}
    if not up:
        pytest.fail("no service of the local stack is running: start it with `./run.sh up`")
    listeners = stack_listeners()

    # The sockets were read: each running service with a port is seen listening on it.
    seen = {(service, port) for service, _, _, _, port in listeners}
    unseen = [f"{s}:{p}" for s, p in up.items() if p != "-" and (s, p) not in seen]
    assert not unseen, f"no listening socket found for {unseen}: is /proc readable?"

    exposed = [
        f"{service} pid {pid} ({cmd}) listens on "
        + (f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
        for service, pid, cmd, address, port in sorted(set(listeners))
        if not is_loopback(address)
    ]
    assert not exposed, "listening beyond loopback:\n  " + "\n  ".join(exposed)


def test_the_pipeline_page_listens_on_loopback_only() -> None:
    """The monitor's Dash server, on MONITOR_PORT: seen listening, and only on 127.0.0.1."""
    port = config.load().monitor.port
    mine = [(address, p) for service, _, _, address, p in stack_listeners() if service == "monitor"]
    assert (
        "127.0.0.1",
        port,
    ) in mine, f"the pipeline page is not listening on 127.0.0.1:{port} (`./run.sh up monitor`)"
    assert all(is_loopback(address) for address, _ in mine), mine


@pytest.mark.parametrize(
    ("hex_address", "expected", "loopback"),
    [
        ("0100007F", "127.0.0.1", True),
        ("00000000", "0.0.0.0", False),
        ("0000000000000000FFFF00000100007F", "::ffff:127.0.0.1", True),
        ("0000000000000000FFFF00000200000A", "::ffff:10.0.0.2", False),
        ("00000000000000000000000001000000", "::1", True),
        ("00000000000000000000000000000000", "::", False),
    ],
)
def test_proc_net_addresses_are_read_as_the_kernel_writes_them(
    hex_address: str, expected: str, loopback: bool
) -> None:
    assert _address(hex_address) == expected
    assert is_loopback(expected) is loopback
