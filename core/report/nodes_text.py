"""Other nodes' energy (--nodes / --prometheus) in words, for the terminal and the reports:
every figure with its source label, unknown said as unknown."""

from __future__ import annotations


def nodes_lines(nodes: dict) -> list[str]:
    """Other nodes' energy over the run's measured phase (--nodes / --prometheus): the total
    with its label, or why it is unknown and what the known nodes sum to; then each node."""
    per = nodes.get("per_node") or []
    if nodes.get("total_j") is None:
        head = (
            f"other nodes: total unknown ({nodes.get('reason')}); the known nodes sum "
            f"{nodes.get('known_j') or 0:.4g} J ({nodes.get('label') or 'unknown source'})"
        )
    else:
        label = nodes.get("label") or "unknown source"
        head = f"other nodes: {nodes['total_j']:.4g} J ({label}) over {len(per)} node(s)"
    return [head] + [f"  {n['node']}: {_node_energy(n)}" for n in per]


def comparison_nodes_lines(runs: list[tuple[str, dict]]) -> list[str]:
    """Other nodes' energy in a comparison: per side, the median total over its runs with the
    weakest label, or how many runs had it unknown. ``runs``: (side, stored result)."""
    import statistics

    lines = []
    for side in ("baseline", "optimized"):
        nodes: list[dict] = [r["nodes"] for s, r in runs if s == side and r.get("nodes")]
        if not nodes:
            continue
        known = [n["total_j"] for n in nodes if n.get("total_j") is not None]
        labels = sorted({n.get("label") or "unknown source" for n in nodes})
        text = f"median {statistics.median(known):.4g} J" if known else "unknown"
        missing = len(nodes) - len(known)
        lines.append(
            f"other nodes, {side}: {text} over {len(known)} run(s) ({', '.join(labels)})"
            + (f"; {missing} run(s) with a node unknown" if missing else "")
        )
    return lines


def _node_energy(node: dict) -> str:
    if node.get("energy_j") is None:
        return "unknown"
    res = node.get("resolution_s")
    at = f", {res:g} s resolution" if isinstance(res, (int, float)) else ""
    return f"{node['energy_j']:.4g} J ({node.get('label') or 'unknown source'}{at})"


def live_nodes_text(live: list[tuple[str, float | None, str | None]]) -> str:
    """The live view's line: each node's recent power with its label ("-" until two scrapes
    answered); empty when no node is scraped."""
    if not live:
        return ""
    parts = [
        f"{_short(node)} {'-' if watts is None else f'{watts:,.1f} W'}"
        + (f" ({label})" if watts is not None and label else "")
        for node, watts, label in live
    ]
    return "Other nodes: " + " · ".join(parts)


def _short(url: str) -> str:
    """``http://gpu1:9464/metrics`` -> ``gpu1:9464``: what the user typed."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    return parts.netloc or url
