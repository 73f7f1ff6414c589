"""Human formatting of measured quantities. Every energy string carries its label."""

from __future__ import annotations


def joules(j: float | None) -> str:
    if j is None:
        return "unknown"
    if abs(j) >= 3.6e6:
        return f"{j / 3.6e6:.3f} kWh"
    if abs(j) >= 3600:
        return f"{j:,.0f} J ({j / 3600:.2f} Wh)"
    return f"{j:.2f} J"


def watts(w: float | None) -> str:
    return "unknown" if w is None else f"{w:.1f} W"


def nbytes(b: float | None) -> str:
    if b is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(b) < 1024 or unit == "TiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return f"{b:.1f} TiB"


def seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 60:
        return f"{s:.2f} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{int(m)} min {s:04.1f} s"
    h, m = divmod(m, 60)
    return f"{int(h)} h {int(m):02d} min"
