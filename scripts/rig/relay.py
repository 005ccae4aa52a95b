#!/usr/bin/python3
"""The rig's relay for one guest connection: QEMU's guestfwd runs `relay.py PORT` per connection
to 10.0.2.100:PORT, with the guest's side of the connection on stdin/stdout, and this copies bytes
both ways between it and 127.0.0.1:PORT.

Why not `nc`: libslirp hands the command a loopback TCP socket whose QEMU end has Nagle's
algorithm on. A request the guest sends in several segments reaches that socket as several
writes, and QEMU holds back the second one until this end acknowledges the first, which Linux
delays by 40 ms: every NBD write request took 45 ms. Acknowledging at once (TCP_QUICKACK, which
the kernel clears again after each delayed-ACK decision, so it is set after every read) and
TCP_NODELAY on both sockets bring that down to the few milliseconds TCG needs.
"""

import os
import select
import socket
import sys


def tune(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def main() -> int:
    port = int(sys.argv[1])
    guest = socket.socket(fileno=os.dup(0))
    server = socket.create_connection(("127.0.0.1", port), timeout=30)
    server.settimeout(None)
    tune(guest)
    tune(server)
    peer = {guest.fileno(): server, server.fileno(): guest}
    sock_of = {guest.fileno(): guest, server.fileno(): server}
    open_fds = set(peer)
    while open_fds:
        readable, _, _ = select.select(list(open_fds), [], [])
        for fd in readable:
            src = sock_of[fd]
            try:
                data = src.recv(1 << 20)
            except ConnectionError:
                data = b""
            tune(src)
            dst = peer[fd]
            if not data:
                # End of one direction: pass it on, and stop once both are done (or the
                # other side is gone).
                open_fds.discard(fd)
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    open_fds.clear()
                continue
            try:
                dst.sendall(data)
            except OSError:
                open_fds.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
