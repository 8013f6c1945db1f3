"""The application icon at every size a desktop asks for, and as SVG: a causal attention pattern
(a lower-triangular grid of cells, the diagonal and the previous token strongest) on a dark
rounded square. Writes assets/icons/toylens.svg and assets/icons/<size>x<size>/toylens.png for
16, 24, 32, 48, 64, 128, 256 and 512 pixels, and assets/icon.png (64, the window's icon).

    python3 scripts/make-icons.py

Plain Python (zlib for PNG); each pixel is the share of it each shape covers, sampled 4 × 4.
"""
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets")
SIZES = [16, 24, 32, 48, 64, 128, 256, 512]
N = 5  # cells per side
BACKGROUND = (30, 37, 48)
EMPTY = (52, 62, 78)


def weight(row, col):
    """How strongly query `row` attends to key `col` (0 above the diagonal: causal)."""
    if col > row:
        return None
    if col == row:
        return 1.0
    if col == row - 1:
        return 0.72
    return 0.18 + 0.1 * ((row * 7 + col * 3) % 3)


def colour(w):
    if w is None:
        return EMPTY
    low, high = (45, 80, 130), (120, 190, 255)
    return tuple(round(a + (b - a) * w) for a, b in zip(low, high))


def shapes(size):
    """(x0, y0, x1, y1, radius, rgb) in pixels, back to front."""
    out = [(0, 0, size, size, size * 0.18, BACKGROUND)]
    margin, gap = size * 0.14, size * 0.035
    cell = (size - 2 * margin - (N - 1) * gap) / N
    for r in range(N):
        for c in range(N):
            x0, y0 = margin + c * (cell + gap), margin + r * (cell + gap)
            out.append((x0, y0, x0 + cell, y0 + cell, cell * 0.18, colour(weight(r, c))))
    return out


def inside(x, y, s):
    x0, y0, x1, y1, rad, _ = s
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        return False
    cx = min(max(x, x0 + rad), x1 - rad)
    cy = min(max(y, y0 + rad), y1 - rad)
    return (x - cx) ** 2 + (y - cy) ** 2 <= rad * rad


def top_shape(size, x, y):
    """The colour of the frontmost shape at (x, y): a cell (found by arithmetic) over the
    background."""
    shapes_ = shapes_cache[size]
    margin, gap = size * 0.14, size * 0.035
    cell = (size - 2 * margin - (N - 1) * gap) / N
    c, r = int((x - margin) // (cell + gap)), int((y - margin) // (cell + gap))
    if 0 <= r < N and 0 <= c < N and inside(x, y, shapes_[1 + r * N + c]):
        return shapes_[1 + r * N + c][5]
    return shapes_[0][5] if inside(x, y, shapes_[0]) else None


def render(size):
    rows = []
    k = 4 if size <= 64 else 2
    for py in range(size):
        row = bytearray([0])
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(k):
                for sx in range(k):
                    x, y = px + (sx + 0.5) / k, py + (sy + 0.5) / k
                    hit = top_shape(size, x, y)
                    if hit:
                        acc[0] += hit[0]
                        acc[1] += hit[1]
                        acc[2] += hit[2]
                        acc[3] += 255
            n = k * k
            alpha = acc[3] / n
            if alpha > 0:
                scale = 255 / acc[3]
                row += bytes(round(v * scale) for v in acc[:3]) + bytes([round(alpha)])
            else:
                row += bytes(4)
        rows.append(bytes(row))
    return rows


def png(size, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def svg():
    size = 512
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'viewBox="0 0 {size} {size}">']
    for x0, y0, x1, y1, rad, rgb in shapes(size):
        parts.append(f'<rect x="{x0:.2f}" y="{y0:.2f}" width="{x1 - x0:.2f}" '
                     f'height="{y1 - y0:.2f}" rx="{rad:.2f}" fill="#{"%02x%02x%02x" % rgb}"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


shapes_cache = {s: shapes(s) for s in SIZES}

if __name__ == "__main__":
    icons = os.path.join(ROOT, "icons")
    os.makedirs(icons, exist_ok=True)
    with open(os.path.join(icons, "toylens.svg"), "w") as f:
        f.write(svg())
    for size in SIZES:
        data = png(size, render(size))
        folder = os.path.join(icons, f"{size}x{size}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "toylens.png"), "wb") as f:
            f.write(data)
        if size == 64:
            with open(os.path.join(ROOT, "icon.png"), "wb") as f:
                f.write(data)
        print(f"{size}x{size}: {len(data)} bytes")
