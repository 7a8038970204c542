"""The report: `report.json` (every number), `report.md` (tables), and bar charts as PNG
drawn with Pillow (no plotting library is needed)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageDraw

BAR_COLOUR = (60, 110, 200)


def bar_chart(
    title: str, values: Mapping[str, float], path: Path, top: float | None = None
) -> None:
    """A horizontal bar chart of `values` (scaled to `top`, default the largest)."""
    row, label_w, bar_w = 22, 260, 300
    height = 40 + row * len(values)
    image = Image.new("RGB", (label_w + bar_w + 80, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black")
    scale = top or max([abs(v) for v in values.values()] + [1e-9])
    for i, (name, value) in enumerate(values.items()):
        y = 34 + i * row
        draw.text((10, y + 4), name[:40], fill="black")
        length = int(bar_w * min(1.0, abs(value) / scale))
        draw.rectangle((label_w, y + 2, label_w + length, y + row - 4), fill=BAR_COLOUR)
        draw.text((label_w + length + 6, y + 4), f"{value:.3f}", fill="black")
    image.save(path)


def write_report(
    out: Path, sections: Mapping[str, Mapping[str, float]], notes: Mapping[str, object]
) -> Path:
    """Write report.json, report.md and one chart per section into `out`; the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps({"sections": sections, "notes": notes}, indent=2) + "\n"
    )
    lines = ["# Toy-world evaluation", ""]
    for key, value in notes.items():
        lines.append(f"- {key}: {value}")
    for section, values in sections.items():
        lines += ["", f"## {section}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in values.items()]
        if values:
            chart = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-") + ".png"
            rates = all(0 <= v <= 1 for v in values.values())
            bar_chart(section, values, out / chart, top=1.0 if rates else None)
            lines += ["", f"![{section}]({chart})"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
