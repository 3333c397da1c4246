"""What every chattune HTML report shares: a page shell with one stylesheet, and figures embedded as
base64 PNGs, so each report is one file that can be mailed or attached to a ticket as is.

    from chattune.report import figure, page
    html = page("chattune eval", "<h1>...</h1>" + figure(fig, "per category"), css=EXTRA_CSS)
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; } td, th { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } img { max-width: 100%; }
.dim { color: #777; font-size: .85em; } pre { white-space: pre-wrap; margin: .3em 0; font-family: ui-monospace, monospace; font-size: .85em; }
"""


def esc(value: object) -> str:
    return html.escape(str(value))


def figure(source: Any, alt: str = "chart", *, dpi: int = 110) -> str:
    """An <img> of a matplotlib figure (closed afterwards), PNG bytes, or a PNG file."""
    if isinstance(source, Path):
        png = source.read_bytes()
    elif isinstance(source, bytes):
        png = source
    else:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        source.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(source)
        png = buf.getvalue()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def page(title: str, body: str, *, css: str = "") -> str:
    """A whole HTML document: the shared stylesheet, then the report's own rules."""
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{CSS}{css}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
