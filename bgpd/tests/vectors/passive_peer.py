#!/usr/bin/env python3
"""A minimal passive BGP peer: it answers OPEN/KEEPALIVE so that the active side reaches
Established and sends its table. It records nothing itself (tcpdump does). Used by
capture.sh as a 2-octet-only peer (no 4-octet AS capability, so BIRD sends AS_TRANS +
AS4_PATH, RFC 6793) and as an iBGP route-reflector client (BIRD reflects to it with
ORIGINATOR_ID and CLUSTER_LIST).
Usage: passive_peer.py LISTEN_ADDR MY_AS FOUR_OCTET(0|1)"""
import socket
import struct
import sys


def msg(msg_type, body):
    return b"\xff" * 16 + struct.pack(">HB", 19 + len(body), msg_type) + body


addr, my_as, four = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
caps = bytes([1, 4, 0, 1, 0, 1])  # Multiprotocol IPv4 unicast
if four:
    caps += bytes([65, 4]) + struct.pack(">I", my_as)
opt = bytes([2, len(caps)]) + caps
as2 = my_as if my_as < 65536 else 23456
open_body = struct.pack(">BHH4sB", 4, as2, 90, socket.inet_aton(addr), len(opt)) + opt

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, 179))
srv.listen(1)
conn, _ = srv.accept()
conn.sendall(msg(1, open_body))
conn.sendall(msg(4, b""))
conn.settimeout(5)
for _ in range(120):  # bounded: at most ~10 minutes
    try:
        if not conn.recv(65536):
            break
    except socket.timeout:
        conn.sendall(msg(4, b""))
