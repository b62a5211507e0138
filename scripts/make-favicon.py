"""Write src/keyless/index/static/favicon.ico: keyless' 16x16 icon, drawn here as pixel art.

Run it again after changing the drawing; the .ico is committed so the server needs nothing at
run time. One 32-bit BMP image inside an ICO container, the format every browser reads.
"""

from __future__ import annotations

import struct
from pathlib import Path

# A key on a dark blue square: '#' key (white), '.' background.
DRAWING = """\
................
................
..####..........
.#....#.........
.#....#.........
.#....##########
.#....#.......#.
.#....#...#.#.#.
..####....#.#...
................
................
................
................
................
................
................
"""
BACKGROUND = (0x3B, 0x1F, 0x12, 0xFF)  # BGRA: dark blue
KEY = (0xFF, 0xFF, 0xFF, 0xFF)
SIZE = 16
TARGET = Path(__file__).resolve().parents[1] / "src/keyless/index/static/favicon.ico"


def icon() -> bytes:
    rows = [line.ljust(SIZE, ".")[:SIZE] for line in DRAWING.splitlines()][:SIZE]
    pixels = b"".join(  # BMP rows go bottom-up
        bytes(KEY if cell == "#" else BACKGROUND) for row in reversed(rows) for cell in row
    )
    mask = b"\0" * (4 * SIZE)  # 1 bit per pixel, rows padded to 32 bits: all opaque
    header = struct.pack("<IiiHHIIiiII", 40, SIZE, 2 * SIZE, 1, 32, 0, 0, 0, 0, 0, 0)
    image = header + pixels + mask
    directory = struct.pack("<HHH", 0, 1, 1) + struct.pack(
        "<BBBBHHII", SIZE, SIZE, 0, 0, 1, 32, len(image), 6 + 16
    )
    return directory + image


if __name__ == "__main__":
    TARGET.write_bytes(icon())
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")
