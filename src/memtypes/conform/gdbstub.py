"""A small client of the gdb remote serial protocol, enough to read a QEMU arm64 guest's EL2
system registers and physical memory, and a stage-2 table walker on top of it.

Protocol (GDB manual, "Remote Protocol", appendix E): packets ``$data#cc`` with a two-digit
hex modulo-256 checksum of ``data``; ``}`` escapes ``# $ } *`` (the byte XOR 0x20); ``*``
run-length encodes a repeat in replies; each packet is acknowledged with ``+`` until
``QStartNoAckMode`` is accepted; a raw 0x03 byte interrupts a running target; ``c``
continues; ``p n`` reads register ``n``; ``m addr,len`` reads memory; ``qXfer:features:read``
reads the target description whose ``<reg>`` elements number the registers (in document
order, or by their ``regnum`` attribute). QEMU specifics (docs/system/gdb.rst): the
system-register feature lists the Arm system registers by their names (``VTTBR_EL2``...),
and ``Qqemu.PhyMemMode:1`` makes ``m`` read physical memory. QEMU stops the VM when a gdb
client connects.

The walk follows the Arm ARM (DDI 0487) D8 "The AArch64 Virtual Memory System Architecture":
4KB granule, stage 2, start level from VTCR_EL2.{SL2,SL0} (D8.2 "Translation table walk",
stage 2 start level), concatenated start tables when the IPA size exceeds what one start
table resolves, FEAT_LPA2 descriptors when VTCR_EL2.DS is 1 (OA[51:50] in bits [9:8],
shareability in VTCR_EL2.SH0); stage-2 block/page attributes D8.3 (MemAttr [5:2],
S2AP [7:6], SH [9:8], AF [10], Contiguous [52], XN [54:53]).
"""

from __future__ import annotations

import re
import socket
import time

WANTED = ("VTTBR_EL2", "VTCR_EL2", "HCR_EL2", "ID_AA64MMFR2_EL1", "ID_AA64MMFR0_EL1",
          "ID_AA64PFR1_EL1", "CTR_EL0")


STOP_REPLY = re.compile(rb"[TS][0-9a-fA-F]{2}")


class GdbError(RuntimeError):
    """A protocol failure or an ``Exx`` reply; one line."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def frame(data: bytes) -> bytes:
    """``$<escaped data>#<checksum of the escaped data>``."""
    body = escape(data)
    return b"$" + body + b"#%02x" % checksum(body)


def unescape(body: bytes) -> bytes:
    """Undo ``}`` escapes and ``*`` run-length encoding of a received packet body."""
    out = bytearray()
    i = 0
    while i < len(body):
        b = body[i]
        if b == 0x7D and i + 1 < len(body):
            out.append(body[i + 1] ^ 0x20)
            i += 2
        elif b == 0x2A and out and i + 1 < len(body):
            out += bytes((out[-1],)) * (body[i + 1] - 29)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


class RemoteClient:
    """One connection to a gdbstub (a unix socket path, or ("host", port))."""

    def __init__(self, address, *, timeout_s: float = 5.0, connect_tries: int = 50) -> None:
        self.timeout_s = timeout_s
        self.ack = True
        self.buf = b""
        self.running = False          # QEMU halts the VM when a client connects
        self.regnums: dict[str, int] = {}
        self.regsizes: dict[str, int] = {}
        last = None
        for _ in range(max(1, connect_tries)):
            try:
                if isinstance(address, tuple):
                    s = socket.create_connection(address, timeout=timeout_s)
                elif isinstance(address, socket.socket):
                    s = address
                else:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(str(address))
                break
            except OSError as e:
                last = e
                time.sleep(0.1)
        else:
            raise GdbError(f"cannot connect to the gdbstub at {address}: {last}")
        s.settimeout(timeout_s)
        self.sock = s

    # -- framing
    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_some(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise GdbError("the gdbstub did not answer in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise GdbError("the gdbstub did not answer in time") from None
        if not chunk:
            raise GdbError("the gdbstub closed the connection")
        self.buf += chunk

    def _read_packet(self, timeout_s: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            # drop acks and noise before '$'
            start = self.buf.find(b"$")
            if start < 0:
                self.buf = b""
                self._recv_some(deadline)
                continue
            end = self.buf.find(b"#", start)
            if end < 0 or len(self.buf) < end + 3:
                self.buf = self.buf[start:]
                self._recv_some(deadline)
                continue
            body = self.buf[start + 1:end]
            cs = self.buf[end + 1:end + 3]
            self.buf = self.buf[end + 3:]
            try:
                good = int(cs, 16) == checksum(body)
            except ValueError:
                good = False
            if self.ack:
                self.sock.sendall(b"+" if good else b"-")
            if good:
                return unescape(body)

    def _send_packet(self, data: bytes) -> None:
        pkt = frame(data)
        for _ in range(5):
            self.sock.sendall(pkt)
            if not self.ack:
                return
            deadline = time.monotonic() + self.timeout_s
            while True:
                while not self.buf:
                    self._recv_some(deadline)
                c = self.buf[:1]
                if c == b"+":
                    self.buf = self.buf[1:]
                    return
                if c == b"-":
                    self.buf = self.buf[1:]
                    break           # resend
                if c == b"$":
                    return          # a reply already (ack lost): accept it
                self.buf = self.buf[1:]
        raise GdbError(f"the gdbstub rejected packet {data[:20]!r} five times")

    def request(self, data: str | bytes, *, timeout_s: float | None = None) -> bytes:
        """Send one packet and return the reply's body (an ``Exx`` reply raises)."""
        if isinstance(data, str):
            data = data.encode()
        self._send_packet(data)
        reply = self._read_packet(timeout_s)
        # a stop notification the stub sent on its own (QEMU 7.2 sends "T02thread:01;"
        # when a client connects) is no reply to anything but "?": skip it
        while data != b"?" and STOP_REPLY.match(reply):
            reply = self._read_packet(timeout_s)
        if re.fullmatch(rb"E[0-9a-fA-F]{2}", reply) or reply.startswith(b"E."):
            raise GdbError(f"gdbstub error {reply.decode(errors='replace')} for "
                           f"{data[:40].decode(errors='replace')}")
        return reply

    # -- session
    def handshake(self) -> None:
        """qSupported, no-ack mode when offered, the register map; QEMU's physical memory
        mode."""
        sup = self.request("qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;"
                           "xmlRegisters=aarch64").decode()
        if "QStartNoAckMode+" in sup:
            if self.request("QStartNoAckMode") == b"OK":
                self.ack = False
        if "qXfer:features:read+" not in sup:
            raise GdbError("the gdbstub offers no target description (qXfer:features:read)")
        self.stop_reason()
        self.load_registers()
        if self.request("Qqemu.PhyMemMode:1") != b"OK":
            raise GdbError("the gdbstub refused Qqemu.PhyMemMode:1 (QEMU >= 5.1 needed)")

    def stop_reason(self) -> bytes:
        r = self.request("?")
        self.running = False
        return r

    def read_xfer(self, annex: str) -> str:
        out = b""
        off = 0
        while True:
            r = self.request(f"qXfer:features:read:{annex}:{off:x},fff")
            if not r or r[:1] not in b"ml":
                raise GdbError(f"bad qXfer reply for {annex}: {r[:40]!r}")
            out += r[1:]
            off += len(r) - 1
            if r[:1] == b"l":
                return out.decode()

    def load_registers(self) -> None:
        """Number every register of the target description (includes followed in order;
        a ``regnum`` attribute resets the count)."""
        n = 0
        seen: set[str] = set()

        def walk(annex: str) -> None:
            nonlocal n
            if annex in seen:
                return
            seen.add(annex)
            text = self.read_xfer(annex)
            # QEMU's target.xml uses the xi: prefix without declaring it: no XML parser
            for m in re.finditer(r"<(?:xi:)?(include|reg)\b([^>]*)>", text):
                attrs = dict(re.findall(r'([\w:.-]+)\s*=\s*"([^"]*)"', m.group(2)))
                if m.group(1) == "include":
                    walk(attrs["href"])
                    continue
                if "regnum" in attrs:
                    n = int(attrs["regnum"])
                self.regnums.setdefault(attrs["name"], n)
                self.regsizes.setdefault(attrs["name"], int(attrs.get("bitsize", "64")))
                n += 1
        walk("target.xml")

    def reg(self, name: str) -> int:
        if name not in self.regnums:
            raise GdbError(f"the gdbstub has no register {name}")
        r = self.request(f"p{self.regnums[name]:x}")
        if not r or r.startswith(b"x"):
            raise GdbError(f"register {name} is unavailable")
        return int.from_bytes(bytes.fromhex(r.decode()), "little")

    def read_phys(self, addr: int, size: int) -> bytes:
        out = b""
        while len(out) < size:
            chunk = min(size - len(out), 0x800)
            r = self.request(f"m{addr + len(out):x},{chunk:x}")
            data = bytes.fromhex(r.decode())
            if not data:
                raise GdbError(f"cannot read physical memory at {addr + len(out):#x}")
            out += data
        return out

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read_phys(addr, 8), "little")

    def halt(self) -> bytes:
        """Interrupt a running target (0x03); the stop reply."""
        if not self.running:
            return b""
        self.sock.sendall(b"\x03")
        # the stop reply must be read here: a late one would be taken as the next reply
        r = self._read_packet(self.timeout_s)
        self.running = False
        return r

    def cont(self) -> None:
        """Continue (``c``); its stop reply comes only when the target stops again."""
        if self.running:
            return
        self._send_packet(b"c")
        self.running = True


# ---------------------------------------------------------------------------- stage-2 walk

def bits(v: int, hi: int, lo: int) -> int:
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


class WalkError(RuntimeError):
    pass


def start_level(vtcr: int) -> int:
    """Stage-2 start level for the 4KB granule from VTCR_EL2.SL2:SL0 (Arm ARM D8.2.x):
    SL0 0 -> level 2, 1 -> 1, 2 -> 0, 3 -> 3 (FEAT_TTST); SL2=1 with SL0=0 -> level -1
    (FEAT_LPA2, DS=1)."""
    sl0 = bits(vtcr, 7, 6)
    sl2 = bits(vtcr, 33, 33)
    if sl2:
        if sl0 != 0:
            raise WalkError(f"reserved VTCR_EL2 start level SL2=1 SL0={sl0}")
        return -1
    return {0: 2, 1: 1, 2: 0, 3: 3}[sl0]


def level_lsb(level: int) -> int:
    """Lowest input-address bit a 4KB-granule table at ``level`` resolves."""
    return 12 + 9 * (3 - level)


def walk_tables(read_u64, vttbr: int, vtcr: int, ipa: int) -> dict:
    """Walk stage 2 for ``ipa`` through ``read_u64(pa)``; the leaf's fields. Raises WalkError
    ("not mapped at level N", ...)."""
    tg0 = bits(vtcr, 15, 14)
    if tg0 != 0:
        raise WalkError(f"VTCR_EL2.TG0={tg0}: only the 4KB granule is walked")
    t0sz = bits(vtcr, 5, 0)
    ds = bits(vtcr, 32, 32)
    ia_bits = 64 - t0sz
    if ipa >> ia_bits:
        raise WalkError(f"IPA {ipa:#x} is beyond the {ia_bits}-bit IPA space (T0SZ={t0sz})")
    level = start_level(vtcr)
    oa_hi = 49 if ds else 47
    if ds:
        table = (vttbr & (((1 << 48) - 1) & ~0x3F)) | (bits(vttbr, 5, 2) << 48)
    else:
        table = vttbr & (((1 << 48) - 1) & ~0x1)
    if not table:
        raise WalkError("VTTBR_EL2 is 0: the CPU is not in the guest")
    first = True
    path: list[dict] = []
    while True:
        lsb = level_lsb(level)
        width = (ia_bits - lsb) if first else 9
        width = min(width, ia_bits - lsb)
        idx = (ipa >> lsb) & ((1 << width) - 1)
        daddr = table + 8 * idx
        desc = read_u64(daddr)
        path.append({"level": level, "addr": daddr, "desc": desc})
        first = False
        kind = desc & 3
        if not desc & 1:
            raise WalkError(f"not mapped at level {level} (descriptor {desc:#x} at {daddr:#x})")
        if level < 3 and kind == 3:
            nxt = desc & (((1 << (oa_hi + 1)) - 1) & ~0xFFF)
            if ds:
                nxt |= bits(desc, 9, 8) << 50
            table = nxt
            level += 1
            continue
        if level == 3 and kind != 3:
            raise WalkError(f"reserved descriptor {desc:#x} at level 3")
        if level < 1 and not (ds and level == 0):
            raise WalkError(f"block descriptor at level {level} is not allowed")
        size = 1 << lsb
        oa = desc & (((1 << (oa_hi + 1)) - 1) & ~(size - 1))
        if ds:
            oa |= bits(desc, 9, 8) << 50
        return {
            "level": level,
            "block_size": size,
            "memattr": bits(desc, 5, 2),
            "s2ap": bits(desc, 7, 6),
            "sh": bits(vtcr, 13, 12) if ds else bits(desc, 9, 8),
            "af": bits(desc, 10, 10),
            "contiguous": bits(desc, 52, 52),
            "xn": bits(desc, 54, 53),
            "oa": oa | (ipa & (size - 1)),
            "desc": desc,
            "desc_addr": daddr,
            "ds": ds,
            "ia_bits": ia_bits,
            "start_level": start_level(vtcr),
            "path": path,
        }


class Stage2Walker:
    """Stage-2 walks of the guest the emulated CPU is running, through a RemoteClient."""

    def __init__(self, client: RemoteClient, *, tries: int = 100, retry_sleep_s: float = 0.005
                 ) -> None:
        self.c = client
        self.tries = tries
        self.retry_sleep_s = retry_sleep_s

    def host_regs(self) -> dict:
        out = {}
        for name in WANTED:
            if name in self.c.regnums:
                try:
                    out[name.lower()] = self.c.reg(name)
                except GdbError:
                    pass
        return out

    def snapshot(self) -> dict:
        """Halt, read the registers of ``WANTED`` (with their decoded ``features``),
        continue. Where the CPU happens to be (host or guest) is not controlled."""
        try:
            self.c.halt()
            return _regs_out(self.host_regs())
        finally:
            self.c.cont()

    def walk(self, ipa: int, *, data_bytes: int = 8) -> dict:
        """Halt, make sure the CPU is in the guest (HCR_EL2.VM set and VTTBR_EL2 not 0;
        otherwise continue, wait, halt again, up to ``tries`` times), walk, read
        ``data_bytes`` at the output address, continue. Returns the walk's fields plus
        vttbr, vtcr, hcr, id_aa64mmfr2 and ``tries``; or {"error": "...", ...}."""
        regs: dict = {}
        try:
            for attempt in range(1, self.tries + 1):
                self.c.halt()
                regs = self.host_regs()
                vttbr, hcr = regs.get("vttbr_el2", 0), regs.get("hcr_el2", 0)
                if (hcr & 1) and (vttbr & ((1 << 48) - 1)):
                    break
                self.c.cont()
                time.sleep(self.retry_sleep_s)
            else:
                why = ("VTTBR_EL2 is 0: the CPU is not in the guest" if not
                       regs.get("vttbr_el2", 0) & ((1 << 48) - 1) else
                       "HCR_EL2.VM is 0: the CPU is not in the guest")
                return {"error": f"{why} after {self.tries} tries", **_regs_out(regs)}
            try:
                res = walk_tables(self.c.read_u64, regs["vttbr_el2"], regs["vtcr_el2"], ipa)
            except WalkError as e:
                return {"error": str(e), "tries": attempt, **_regs_out(regs)}
            if data_bytes:
                res["data"] = self.c.read_phys(res["oa"], data_bytes).hex()
            res.update(_regs_out(regs))
            res["tries"] = attempt
            return res
        finally:
            try:
                self.c.cont()
            except (GdbError, OSError):
                pass


def features(regs: dict) -> dict:
    """What the emulated CPU offers and what the host kernel turned on, from the registers
    the walk read (Arm ARM D19, register descriptions): ID_AA64MMFR2_EL1.FWB [43:40],
    CTR_EL0.DIC [29], ID_AA64PFR1_EL1.MTE [11:8] (0 none, 1 instructions only, 2 MTE2,
    3 MTE3), HCR_EL2.E2H [34] (the host runs with VHE), HCR_EL2.FWB [46] (the host uses
    FWB for this guest), VTCR_EL2.DS [32] (LPA2 stage-2 descriptors). A key is absent when
    its register could not be read."""
    out: dict = {}
    if "id_aa64mmfr2_el1" in regs:
        out["fwb"] = bits(regs["id_aa64mmfr2_el1"], 43, 40) == 1
    if "ctr_el0" in regs:
        out["dic"] = bits(regs["ctr_el0"], 29, 29) == 1
    if "id_aa64pfr1_el1" in regs:
        out["mte"] = bits(regs["id_aa64pfr1_el1"], 11, 8)
    if "hcr_el2" in regs:
        out["vhe"] = bits(regs["hcr_el2"], 34, 34) == 1
        out["hcr_fwb"] = bits(regs["hcr_el2"], 46, 46) == 1
    if "vtcr_el2" in regs:
        out["lpa2"] = bits(regs["vtcr_el2"], 32, 32) == 1
    return out


def _regs_out(regs: dict) -> dict:
    keys = {"vttbr_el2": "vttbr", "vtcr_el2": "vtcr", "hcr_el2": "hcr",
            "id_aa64mmfr2_el1": "id_aa64mmfr2", "id_aa64mmfr0_el1": "id_aa64mmfr0",
            "id_aa64pfr1_el1": "id_aa64pfr1", "ctr_el0": "ctr"}
    out = {v: regs[k] for k, v in keys.items() if k in regs}
    out["features"] = features(regs)
    return out
