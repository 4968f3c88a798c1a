"""A streamed ZIP archive: zip64, stored (not deflated), its exact size known before a byte.

Every member is written as zip64 with a data descriptor: the local header carries no CRC, the
CRC-32 is computed while the file streams through and lands in the descriptor and the central
directory. Stored data plus fixed-size headers make the archive's length a sum of the members'
file sizes and name lengths, so ``Content-Length`` is set up front, and memory holds one read
buffer and the central directory entries (a few dozen bytes per member), whatever the size.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final

READ_SIZE: Final = 1 << 20
VERSION: Final = 45  # 4.5: zip64
FLAGS: Final = 0x0808  # bit 3: sizes and CRC in a data descriptor; bit 11: UTF-8 names
STORED: Final = 0
MAX32: Final = 0xFFFFFFFF
MAX16: Final = 0xFFFF

LOCAL_HEADER: Final = struct.Struct("<IHHHHHIIIHH")
LOCAL_ZIP64_EXTRA: Final = struct.Struct("<HHQQ")
DATA_DESCRIPTOR: Final = struct.Struct("<IIQQ")
CENTRAL_HEADER: Final = struct.Struct("<IHHHHHHIIIHHHHHII")
CENTRAL_ZIP64_EXTRA: Final = struct.Struct("<HHQQQ")
ZIP64_END: Final = struct.Struct("<IQHHIIQQQQ")
ZIP64_LOCATOR: Final = struct.Struct("<IIQI")
END: Final = struct.Struct("<IHHHHIIH")

Write = Callable[[bytes], Awaitable[None]]


class ArchiveChanged(RuntimeError):
    """A member's file no longer has the size it had when the archive was sized."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    path: Path
    size: int
    modified: datetime

    @property
    def encoded_name(self) -> bytes:
        return self.name.encode()


def _dos_time(moment: datetime) -> tuple[int, int]:
    year = min(max(moment.year, 1980), 2107)
    date = ((year - 1980) << 9) | (moment.month << 5) | moment.day
    time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    return time, date


def _local_size(member: Member) -> int:
    return LOCAL_HEADER.size + len(member.encoded_name) + LOCAL_ZIP64_EXTRA.size


def _central_size(member: Member) -> int:
    return CENTRAL_HEADER.size + len(member.encoded_name) + CENTRAL_ZIP64_EXTRA.size


def archive_size(members: Sequence[Member]) -> int:
    entries = sum(
        _local_size(m) + m.size + DATA_DESCRIPTOR.size + _central_size(m) for m in members
    )
    return entries + ZIP64_END.size + ZIP64_LOCATOR.size + END.size


def _local_header(member: Member) -> bytes:
    time, date = _dos_time(member.modified)
    name = member.encoded_name
    return (
        LOCAL_HEADER.pack(
            0x04034B50,
            VERSION,
            FLAGS,
            STORED,
            time,
            date,
            0,
            MAX32,
            MAX32,
            len(name),
            LOCAL_ZIP64_EXTRA.size,
        )
        + name
        + LOCAL_ZIP64_EXTRA.pack(0x0001, 16, 0, 0)
    )


def _central_header(member: Member, crc: int, offset: int) -> bytes:
    time, date = _dos_time(member.modified)
    name = member.encoded_name
    return (
        CENTRAL_HEADER.pack(
            0x02014B50,
            (3 << 8) | VERSION,
            VERSION,
            FLAGS,
            STORED,
            time,
            date,
            crc,
            MAX32,
            MAX32,
            len(name),
            CENTRAL_ZIP64_EXTRA.size,
            0,
            0,
            0,
            0o100644 << 16,
            MAX32,
        )
        + name
        + CENTRAL_ZIP64_EXTRA.pack(0x0001, 24, member.size, member.size, offset)
    )


def _end_records(count: int, directory_size: int, directory_offset: int) -> bytes:
    zip64_end_offset = directory_offset + directory_size
    return (
        ZIP64_END.pack(
            0x06064B50,
            ZIP64_END.size - 12,
            VERSION,
            VERSION,
            0,
            0,
            count,
            count,
            directory_size,
            directory_offset,
        )
        + ZIP64_LOCATOR.pack(0x07064B50, 0, zip64_end_offset, 1)
        + END.pack(0x06054B50, 0, 0, MAX16, MAX16, MAX32, MAX32, 0)
    )


def _read(handle: BinaryIO, size: int) -> bytes:
    return handle.read(size)


async def _stream_member(member: Member, write: Write) -> int:
    crc = 0
    left = member.size
    handle = await asyncio.to_thread(member.path.open, "rb")
    try:
        while left:
            block = await asyncio.to_thread(_read, handle, min(READ_SIZE, left))
            if not block:
                raise ArchiveChanged(f"{member.path} shrank while it was being archived")
            crc = zlib.crc32(block, crc)
            left -= len(block)
            await write(block)
    finally:
        await asyncio.to_thread(handle.close)
    return crc


async def write_archive(members: Sequence[Member], write: Write) -> int:
    """Write the archive; returns the number of bytes written (equal to archive_size)."""
    offset = 0
    directory: list[bytes] = []
    for member in members:
        header = _local_header(member)
        await write(header)
        crc = await _stream_member(member, write)
        await write(DATA_DESCRIPTOR.pack(0x08074B50, crc, member.size, member.size))
        directory.append(_central_header(member, crc, offset))
        offset += len(header) + member.size + DATA_DESCRIPTOR.size
    directory_size = sum(len(entry) for entry in directory)
    for entry in directory:
        await write(entry)
    tail = _end_records(len(members), directory_size, offset)
    await write(tail)
    return offset + directory_size + len(tail)
