#!/usr/bin/env python3
"""Prints the BGP messages in pcap files (Ethernet, IPv4/IPv6, TCP), one per line:
<file> <src> -> <dst> <type> <hex>. The TCP stream of each direction is reassembled by
sequence number before being cut at BGP message boundaries."""
import struct
import sys

TYPES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        yield linktype, data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def tcp_segments(path):
    for linktype, frame in packets(path):
        if linktype == 1:
            ethertype = struct.unpack(">H", frame[12:14])[0]
            ip = frame[14:]
        elif linktype == 113:
            ethertype = struct.unpack(">H", frame[14:16])[0]
            ip = frame[16:]
        else:
            raise SystemExit(f"unsupported link type {linktype}")
        if ethertype == 0x0800:
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            if ip[9] != 6:
                continue
            src = ".".join(map(str, ip[12:16]))
            dst = ".".join(map(str, ip[16:20]))
            tcp = ip[ihl:total]
        elif ethertype == 0x86DD:
            if ip[6] != 6:
                continue
            plen = struct.unpack(">H", ip[4:6])[0]
            src = ip[8:24].hex()
            dst = ip[24:40].hex()
            tcp = ip[40:40 + plen]
        else:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        yield (f"{src}:{sport}", f"{dst}:{dport}", seq, flags, tcp[doff:])


def streams(path):
    out = {}
    isn = {}
    for src, dst, seq, flags, payload in tcp_segments(path):
        key = (src, dst)
        if flags & 0x02:  # SYN
            isn[key] = seq + 1
            out[key] = {}
            continue
        if not payload or key not in isn:
            continue
        out[key][(seq - isn[key]) % 2**32] = payload
    for key, segs in out.items():
        buf = bytearray()
        for rel in sorted(segs):
            p = segs[rel]
            if rel > len(buf):
                break
            buf += p[len(buf) - rel:]
        yield key, bytes(buf)


def main():
    for path in sys.argv[1:]:
        for (src, dst), stream in streams(path):
            i = 0
            while i + 19 <= len(stream):
                length = struct.unpack(">H", stream[i + 16:i + 18])[0]
                msg = stream[i:i + length]
                print(path.split("/")[-1], src, "->", dst, TYPES.get(msg[18], msg[18]), msg.hex())
                i += length


if __name__ == "__main__":
    main()
