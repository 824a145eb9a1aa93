"""`index.html` beside a run's JSON: tables, every annotated frame and the plots, readable
offline (one self-contained file: inline CSS, relative image links, no network).

The page counts its images once they have loaded and writes the figure into
`<body data-images-loaded=N data-images-total=M>` and the footer, so a reader (or a headless
browser in a test) sees at once when a picture is missing.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #bbb;padding:3px 8px;text-align:left;font-size:14px}
th{background:#eee}
.frames{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;max-width:480px}
figure img{max-width:480px;width:100%;border:1px solid #888}
figcaption{font-size:13px}
.plots img{max-width:640px;margin:6px;border:1px solid #ccc}
.note{color:#555}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-loaded', String(ok));
  document.body.setAttribute('data-images-total', String(imgs.length));
  var f = document.getElementById('loaded');
  if (f) { f.textContent = ok + ' of ' + imgs.length + ' images loaded'; }
});
"""


@dataclass
class Table:
    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass
class Picture:
    """An image file relative to the page, with a caption."""

    path: str
    caption: str = ""


@dataclass
class Page:
    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    frames: list[Picture] = field(default_factory=list)
    plots: list[Picture] = field(default_factory=list)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render(page: Page) -> str:
    """The page as one HTML document."""
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{_e(page.title)}</title><style>{_STYLE}</style>",
           f"<script>{_SCRIPT}</script></head><body>", f"<h1>{_e(page.title)}</h1>"]
    out += [f"<p class=\"note\">{_e(n)}</p>" for n in page.notes]
    for t in page.tables:
        out.append(f"<table><caption>{_e(t.caption)}</caption><thead><tr>"
                   + "".join(f"<th>{_e(h)}</th>" for h in t.header) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in t.rows]
        out.append("</tbody></table>")
    if page.plots:
        out.append("<h2>Plots</h2><div class=\"plots\">")
        out += [f"<img src=\"{_e(p.path)}\" alt=\"{_e(p.caption or p.path)}\">"
                for p in page.plots]
        out.append("</div>")
    out.append(f"<h2>Frames ({len(page.frames)})</h2><div class=\"frames\">")
    out += [f"<figure><a href=\"{_e(p.path)}\"><img src=\"{_e(p.path)}\" "
            f"alt=\"{_e(p.caption)}\"></a><figcaption>{_e(p.caption)}</figcaption></figure>"
            for p in page.frames]
    out.append("</div><p class=\"note\" id=\"loaded\"></p></body></html>")
    return "\n".join(out) + "\n"


def write_page(out_dir: Path, page: Page, name: str = "index.html") -> Path:
    """Write the page into `out_dir`; every image it links must already be there (relative
    links only), so the directory can be moved or zipped and still reads offline."""
    out_dir = Path(out_dir)
    for p in [*page.frames, *page.plots]:
        if Path(p.path).is_absolute() or ".." in Path(p.path).parts:
            raise ValueError(f"image link {p.path!r} must be relative, inside {out_dir}")
        if not (out_dir / p.path).is_file():
            raise FileNotFoundError(out_dir / p.path)
    path = out_dir / name
    path.write_text(render(page), encoding="utf-8")
    return path
