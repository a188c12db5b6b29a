"""A fake gdbstub for the conform tests: speaks the gdb remote serial protocol over one
connected socket, with registers and physical memory given by the test, and halts/continues
like QEMU (halted on connect). Also synthetic stage-2 tables and a fake QEMU program.

It frames its own packets by hand (not with memtypes.conform.gdbstub.frame), so the client's
framing is checked against an independent implementation.
"""

from __future__ import annotations

import socket
import threading

TARGET_XML = ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
              '<target><architecture>aarch64</architecture>'
              '<xi:include href="core.xml"/><xi:include href="sys.xml"/></target>')
CORE_XML = ('<?xml version="1.0"?><feature name="org.gnu.gdb.aarch64.core">'
            '<reg name="x0" bitsize="64"/><reg name="x1" bitsize="64"/>'
            '<reg name="pc" bitsize="64" type="code_ptr"/></feature>')
SYS_NAMES = ["ID_AA64MMFR0_EL1", "ID_AA64MMFR2_EL1", "HCR_EL2", "VTTBR_EL2", "VTCR_EL2"]


def sys_xml(base: int) -> str:
    regs = "".join(f'<reg name="{n}" bitsize="64" regnum="{base + i}" group="cp_regs"/>'
                   for i, n in enumerate(SYS_NAMES))
    return f'<?xml version="1.0"?><feature name="org.qemu.gdb.aarch64.sysregs">{regs}</feature>'


def _cs(b: bytes) -> bytes:
    return b"%02x" % (sum(b) % 256)


class FakeStub:
    """Serve one connection. ``regs``: name -> value, or a callable(halt_count) -> value
    (to model a CPU that is in or out of the guest when halted); ``mem``: {address: byte}
    via ``set_u64``. ``noack``: offer QStartNoAckMode. ``corrupt_first``: send the first
    reply with a bad checksum (the client must NAK it and get it again)."""

    def __init__(self, sock: socket.socket, *, regs: dict | None = None, noack: bool = True,
                 corrupt_first: bool = False, sysbase: int = 100, hello_stop: bool = False,
                 xfer: bool = True, on_continue=None) -> None:
        self.sock = sock
        self.regs = dict(regs or {})
        self.mem: dict[int, int] = {}
        self.noack_offer = noack
        self.ack = True
        self.corrupt = corrupt_first
        self.sysbase = sysbase
        self.running = False
        self.halts = 0
        self.conts = 0
        self.packets: list[bytes] = []
        self.naks = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.last_reply = b""
        self.hello_stop = hello_stop      # send a stop packet unasked on connect (QEMU 7.2)
        self.xfer = xfer                  # offer qXfer:features:read
        self.on_continue = on_continue

    def start(self) -> FakeStub:
        self.thread.start()
        return self

    def set_u64(self, addr: int, value: int) -> None:
        for i in range(8):
            self.mem[addr + i] = (value >> (8 * i)) & 0xFF

    def regnum(self, name: str) -> int:
        return self.sysbase + SYS_NAMES.index(name)

    def value(self, name: str) -> int:
        v = self.regs.get(name, 0)
        return v(self.halts) if callable(v) else v

    def send(self, body: bytes) -> None:
        cs = _cs(body)
        if self.corrupt:
            self.corrupt = False
            cs = b"%02x" % ((int(cs, 16) + 1) % 256)
        self.last_reply = body
        self.sock.sendall(b"$" + body + b"#" + cs)

    def reply(self, body: bytes) -> None:
        self.send(body)
        if self.ack:
            # wait for the client's + (or - and resend)
            while True:
                c = self.sock.recv(1)
                if c == b"+" or not c:
                    return
                if c == b"-":
                    self.naks += 1
                    self.sock.sendall(b"$" + body + b"#" + _cs(body))

    def serve(self) -> None:
        buf = b""
        if self.hello_stop:
            self.sock.sendall(b"$T02thread:01;#" + _cs(b"T02thread:01;"))
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    return
                buf += data
                while buf:
                    if buf[:1] == b"\x03":
                        buf = buf[1:]
                        if self.running:
                            self.running = False
                            self.halts += 1
                            self.reply(b"T02thread:01;")
                        continue
                    if buf[:1] in (b"+", b"-"):
                        buf = buf[1:]
                        continue
                    if buf[:1] != b"$":
                        buf = buf[1:]
                        continue
                    end = buf.find(b"#")
                    if end < 0 or len(buf) < end + 3:
                        break
                    body, cs = buf[1:end], buf[end + 1:end + 3]
                    buf = buf[end + 3:]
                    if self.ack:
                        if _cs(body) != cs:
                            self.sock.sendall(b"-")
                            continue
                        self.sock.sendall(b"+")
                    self.packets.append(body)
                    self.handle(body)
        except OSError:
            return

    def handle(self, p: bytes) -> None:
        if p.startswith(b"qSupported"):
            feats = b"PacketSize=1000" + (b";qXfer:features:read+" if self.xfer else b"")
            if self.noack_offer:
                feats += b";QStartNoAckMode+"
            self.reply(feats)
        elif p == b"QStartNoAckMode":
            self.reply(b"OK")
            self.ack = False
        elif p == b"?":
            self.reply(b"T05thread:01;")
        elif p.startswith(b"qXfer:features:read:"):
            annex, _, rng = p[len(b"qXfer:features:read:"):].partition(b":")
            off, _, length = rng.partition(b",")
            doc = {b"target.xml": TARGET_XML, b"core.xml": CORE_XML,
                   b"sys.xml": sys_xml(self.sysbase)}.get(annex)
            if doc is None:
                self.reply(b"E00")
                return
            raw = doc.encode()
            o, n = int(off, 16), min(int(length, 16), 40)   # small chunks: paging is tested
            chunk = raw[o:o + n]
            # escape the characters the protocol reserves
            esc = bytearray()
            for b in chunk:
                if b in b"#$}*":
                    esc += bytes((0x7D, b ^ 0x20))
                else:
                    esc.append(b)
            self.reply((b"l" if o + n >= len(raw) else b"m") + bytes(esc))
        elif p == b"Qqemu.PhyMemMode:1":
            self.reply(b"OK")
        elif p.startswith(b"p"):
            n = int(p[1:], 16)
            names = {self.regnum(x): x for x in SYS_NAMES}
            if n in names:
                self.reply(self.value(names[n]).to_bytes(8, "little").hex().encode())
            elif n < 3:
                self.reply(b"00" * 8)
            else:
                self.reply(b"E14")
        elif p.startswith(b"m"):
            a, _, n = p[1:].partition(b",")
            a, n = int(a, 16), int(n, 16)
            if a not in self.mem:
                self.reply(b"E14")
                return
            self.reply(bytes(self.mem.get(a + i, 0) for i in range(n)).hex().encode())
        elif p == b"c":
            self.running = True
            self.conts += 1
            if self.on_continue:
                self.on_continue()
        else:
            self.reply(b"")


# --- synthetic stage-2 tables ------------------------------------------------------------

class Tables:
    """Stage-2 tables built in a dict memory: ``alloc`` hands out 4 KB-aligned pages."""

    def __init__(self, first: int = 0x40000000) -> None:
        self.mem: dict[int, int] = {}
        self.next = first

    def alloc(self, pages: int = 1) -> int:
        a = self.next
        self.next += 0x1000 * pages
        return a

    def put(self, addr: int, desc: int) -> None:
        self.mem[addr] = desc

    def read_u64(self, addr: int) -> int:
        return self.mem.get(addr, 0)
