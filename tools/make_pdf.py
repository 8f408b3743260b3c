"""The whole book as one PDF, printed by headless Chromium from Sphinx's single-page HTML.

Usage: python tools/make_pdf.py [--path-output DIR] [--config FILE] [--output PDF]

1. `jupyter-book build --builder singlehtml` writes every page into one HTML file. It uses
   the same build folder as `make book` (`_build/`), so after `make book` it reuses the
   executed notebooks already there and executes nothing; alone, or in a checkout moved or
   copied since that build (Sphinx keys its pages by absolute path), it executes them first,
   and says so before it starts.
2. Chromium opens that page from 127.0.0.1 with no other host reachable and waits until
   MathJax has typeset every formula and every image has loaded (as the browser test does).
3. A print stylesheet drops the web navigation, and a title page and a contents page are
   added; links between pages become links inside the document.
4. The page is printed twice: the first PDF tells on which page each heading landed (from
   its named destinations), the second carries those numbers in the contents.
5. pypdf adds the outline (bookmarks: parts, chapters, sections) and the metadata.

The output (default `_build/pdf/book.pdf`) is what `tests/test_pdf.py` checks.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

import headless
import yaml

ROOT = headless.ROOT

TEXT_WIDTH = "174mm"  # A4's 210 mm less PRINT_CSS's margins

PRINT_CSS = r"""
@page {
  size: A4;
  margin: 20mm 18mm 20mm 18mm;
  @bottom-center { content: counter(page); font: 9pt sans-serif; color: #555; }
}
@page :first { @bottom-center { content: none; } }
html { font-size: 13.5px !important; }
body { background: white !important; }
/* The web page's furniture: navigation, buttons, search, footers, permalinks. */
.bd-header, .bd-header-article, .bd-sidebar-primary, .bd-sidebar-secondary, .prev-next-area,
.bd-footer, .bd-footer-content, .bd-footer-article, #jb-print-docs-body, .headerlink,
.copybtn, .sbt-scroll-pixel-helper, .bd-search, .search-button__wrapper, #pst-back-to-top,
.skip-link, .header-article-items, .theme-switch-button, .dropdown-toggle, button
  { display: none !important; }
.bd-main .bd-content { margin-left: 0 !important; }
.bd-main .bd-content .bd-article-container { max-width: none !important; padding: 0 !important; }
.bd-container, .bd-container__inner, .bd-page-width, .bd-article
  { max-width: none !important; padding: 0 !important; margin: 0 !important; }
a { color: #1a4f8b !important; text-decoration: none !important; }
/* Code and outputs wrap instead of scrolling: nothing may be cut off at the margin. */
pre { white-space: pre-wrap !important; overflow-wrap: anywhere; overflow: visible !important;
      font-size: 8.5pt !important; line-height: 1.35 !important; max-height: none !important; }
.cell_output, .output, .highlight, .cell_input, .pst-scrollable-table-container,
div.output.text_html, .table-wrapper
  { overflow: visible !important; max-height: none !important; }
table { font-size: 8.5pt !important; width: auto !important; }
table td, table th { padding: 0.15em 0.5em !important; }
table td { white-space: nowrap; }
table.pdf-wrap td { white-space: normal; overflow-wrap: anywhere; min-width: 4em; }
.bd-main .bd-content .bd-article h1:first-of-type { display: block !important; }
/* A code cell's frame moves with its code (div.highlight already avoids breaks), so that no
   empty frame is left at the foot of a page. */
tr, figure, img, .math, mjx-container[display="true"], .cell_input { break-inside: avoid; }
h1, h2, h3, h4, h5, .cell_input, figcaption, .caption { break-after: avoid; }
h1, h2, h3, h4, h5 { break-inside: avoid; }
figure img, .cell_output img { max-width: 100% !important; max-height: 210mm; }
figcaption, figcaption p, .caption-text, .caption-number
  { color: #222 !important; font-weight: 400 !important; }
mjx-container[display="true"] { overflow: visible !important; }
/* Every chapter starts on a new page with a heading the size of a chapter title. */
span[id^="document-"] + section { break-before: page; }
span[id^="document-"] + section > h2 { font-size: 2rem; margin-top: 0; }
.pdf-part { text-transform: uppercase; color: #555; font-size: 0.9rem; font-weight: 600;
            margin: 0 0 0.4rem 0; }
/* Title page and contents. */
.pdf-title-page { break-after: page; height: 240mm; display: flex; flex-direction: column;
                  justify-content: center; text-align: center; }
.pdf-title-page .pdf-title { font-size: 2.6rem; font-weight: 700; margin-bottom: 1.2rem; }
.pdf-title-page .pdf-subtitle { font-size: 1.2rem; color: #333; margin: 0 3rem 3rem 3rem; }
.pdf-title-page .pdf-author { font-size: 1.2rem; }
.pdf-title-page .pdf-date { font-size: 0.95rem; color: #555; margin-top: 0.4rem; }
.pdf-contents { break-after: page; }
.pdf-contents h2 { font-size: 2rem; margin: 0 0 1rem 0; }
.pdf-contents ul { list-style: none; padding: 0; margin: 0; }
.pdf-contents li { margin: 0; }
.pdf-contents .toc-part { font-weight: 700; margin: 0.9rem 0 0.2rem 0; color: #444;
                          text-transform: uppercase; font-size: 0.85em; }
.pdf-contents a { display: flex; align-items: baseline; color: #111 !important;
                  break-inside: avoid; }
.pdf-contents .toc-1 > a { font-weight: 600; margin-top: 0.45rem; }
.pdf-contents .toc-2 > a { padding-left: 1.6rem; }
.pdf-contents .toc-3 > a { padding-left: 3.4rem; font-size: 0.92em; }
.pdf-contents .toc-num { min-width: 2.6em; flex: none; }
.pdf-contents .toc-3 .toc-num { min-width: 3.4em; }
.pdf-contents .toc-fill { flex: 1; border-bottom: 1px dotted #999; margin: 0 0.4em; }
.pdf-contents .toc-page { flex: none; width: 1.8em; text-align: right; }
"""

# Arguments: the book (title, author, subtitle, date) and its parts from _toc.yml. Returns the
# contents entries [{id, level, title, part}] and the links that could not be resolved.
PREPARE_JS = r"""
const [css, book, width] = arguments;
const style = document.createElement('style');
style.textContent = css;
document.head.append(style);
// A table wider than the printed page is scaled down to fit, never cut off.
const fit = document.createElement('div');
fit.style.width = width;
document.body.append(fit);
const widthPx = fit.getBoundingClientRect().width;
fit.remove();
for (const table of document.querySelectorAll('main table')) {
  if (table.getBoundingClientRect().width <= widthPx) continue;
  table.classList.add('pdf-wrap');  // first let its cells wrap, then shrink what still must
  const natural = table.getBoundingClientRect().width;
  if (natural > widthPx) table.style.zoom = (widthPx / natural).toFixed(3);
}
document.querySelectorAll('#jb-print-docs-body').forEach(e => e.remove());

const markers = Array.from(document.querySelectorAll('span[id^="document-"]'));
const docOf = el => {
  let doc = book.root;
  for (const m of markers) {
    if (m.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) {
      doc = m.id.slice('document-'.length);
    } else break;
  }
  return doc;
};

// Links written for the multi-page site (page.html#anchor) point into this one document.
// Sphinx's ids are unique per page only, so a repeated id is renamed where it is a target.
const byId = new Map();
for (const el of document.querySelectorAll('[id]')) {
  if (!byId.has(el.id)) byId.set(el.id, []);
  byId.get(el.id).push(el);
}
const unresolved = [];
const plan = [];
for (const a of document.querySelectorAll('main a[href]')) {
  const raw = a.getAttribute('href');
  const url = new URL(raw, location.href);
  if (url.origin !== location.origin || !url.hash || raw === '#') continue;
  const id = decodeURIComponent(url.hash.slice(1));
  const targets = byId.get(id) || [];
  let target = null;
  if (targets.length === 1) target = targets[0];
  else if (targets.length > 1) {
    const cited = targets.filter(t => t.matches('.citation, [role="doc-biblioentry"]'));
    const here = targets.filter(t => docOf(t) === docOf(a));
    target = a.closest('.bibtex-citation, .cite') && cited.length === 1 ? cited[0]
           : raw.startsWith('#') && here.length === 1 ? here[0]
           : cited.length === 1 ? cited[0] : null;
  }
  if (target === null) unresolved.push(raw);
  else plan.push([a, target, id]);
}
for (const [a, target, id] of plan) {
  const targets = byId.get(id);
  if (targets.length > 1 && target !== targets[0] && !target.dataset.pdfId) {
    target.dataset.pdfId = `${id}--${targets.indexOf(target)}`;
  }
}
for (const [a, target] of plan) {
  if (target.dataset.pdfId) target.id = target.dataset.pdfId;
  a.setAttribute('href', '#' + target.id);
}

// Plain text of a heading: no permalink, formulas as their MathML text (C_out, d^model).
const plain = heading => {
  const copy = heading.cloneNode(true);
  copy.querySelectorAll('.headerlink, .section-number').forEach(e => e.remove());
  heading.querySelectorAll('mjx-container').forEach((m, i) => {
    const text = Array.from(m.querySelectorAll('mjx-assistive-mml math')).map(function walk(n) {
      if (n.nodeType === Node.TEXT_NODE) return n.textContent;
      const kids = Array.from(n.childNodes).map(walk);
      if (n.localName === 'msub' && kids.length === 2) return kids[0] + '_' + kids[1];
      if (n.localName === 'msup' && kids.length === 2) return kids[0] + '^' + kids[1];
      if (n.localName === 'mfrac' && kids.length === 2) return kids[0] + '/' + kids[1];
      return kids.join('');
    }).join('');
    const slot = copy.querySelectorAll('mjx-container')[0];
    if (slot) slot.replaceWith(text.replace(/\s+/g, ''));
  });
  return copy.textContent.replace(/\s+/g, ' ').trim();
};
const number = heading => {
  const n = heading.querySelector('.section-number');
  return n ? n.textContent.trim() : '';
};
const headingOf = section =>
  section.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');

// The contents: the introduction's sections, then each part with its chapters, their
// sections and subsections. Each chapter of a part's first page names the part.
const entries = [];
const add = (section, level, part) => {
  const heading = headingOf(section);
  if (!heading) return;
  const prose = heading.cloneNode(true);  // the words around its formulas, if any
  prose.querySelectorAll('.headerlink, .section-number, mjx-container').forEach(e => e.remove());
  entries.push({id: section.id, level, number: number(heading), title: plain(heading),
                prose: prose.textContent.replace(/\s+/g, ' ').trim(), part});
};
const first = document.querySelector('main section');
add(first, 1, '');
first.querySelectorAll(':scope > section').forEach(s => add(s, 2, ''));
for (const part of book.parts) {
  part.docs.forEach((doc, i) => {
    const marker = document.getElementById('document-' + doc);
    const chapter = marker && marker.nextElementSibling;
    if (!chapter || chapter.localName !== 'section') { unresolved.push('document-' + doc); return; }
    if (i === 0) {
      const banner = document.createElement('p');
      banner.className = 'pdf-part';
      banner.textContent = part.caption;
      chapter.prepend(banner);
    }
    add(chapter, 1, part.caption);
    chapter.querySelectorAll(':scope > section').forEach(s => {
      add(s, 2, part.caption);
      s.querySelectorAll(':scope > section').forEach(t => add(t, 3, part.caption));
    });
  });
}

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const title = el('section', 'pdf-title-page');
title.append(el('div', 'pdf-title', book.title));
const opening = first.querySelector(':scope > p');
book.subtitle = opening ? opening.textContent.replace(/\s+/g, ' ').split(/(?<=\.) /)[0] : '';
title.append(el('div', 'pdf-subtitle', book.subtitle));
title.append(el('div', 'pdf-author', book.author));
title.append(el('div', 'pdf-date', book.date));
const contents = el('nav', 'pdf-contents');
contents.id = 'pdf-contents';
contents.append(el('h2', '', 'Contents'));
const list = el('ul');
let part = '';
for (const e of entries) {
  if (e.part !== part) { list.append(el('li', 'toc-part', e.part)); part = e.part; }
  const item = el('li', 'toc-' + e.level);
  const link = el('a');
  link.href = '#' + e.id;
  link.append(el('span', 'toc-num', e.number), el('span', 'toc-title', e.title),
              el('span', 'toc-fill'), el('span', 'toc-page', '00'));
  link.querySelector('.toc-page').dataset.target = e.id;
  item.append(link);
  list.append(item);
}
contents.append(list);
const article = document.querySelector('main article') || document.querySelector('main');
article.prepend(title, contents);
return {entries, unresolved, subtitle: book.subtitle};
"""

SET_PAGES_JS = r"""
const pages = arguments[0];
for (const span of document.querySelectorAll('.pdf-contents .toc-page')) {
  span.textContent = String(pages[span.dataset.target] ?? '?');
}
"""


def print_pdf(driver) -> bytes:
    """The open page as PDF, with the page size and margins of PRINT_CSS's @page rule."""
    result = driver.execute_cdp_cmd("Page.printToPDF", {
        "printBackground": True, "preferCSSPageSize": True, "displayHeaderFooter": False,
        "generateTaggedPDF": True,
    })
    return base64.b64decode(result["data"])


def heading_pages(pdf: bytes, ids: list[str]) -> dict[str, int]:
    """The 1-based page of each id that is the target of a link in ``pdf``."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf))
    named = reader.named_destinations
    return {i: reader.get_destination_page_number(named[f"/{i}"]) + 1
            for i in ids if f"/{i}" in named}


class _CloneNotice(logging.Filter):
    """Drop pypdf's notice that cloning Chromium's PDF made more objects than its trailer
    counted: the copy it writes has the right /Size, so the notice asks nothing of a reader."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "exceeds defined trailer size" not in record.getMessage()


logging.getLogger("pypdf._writer").addFilter(_CloneNotice())


def add_outline_and_metadata(pdf: bytes, entries: list[dict], pages: dict[str, int],
                             book: dict) -> bytes:
    """Bookmarks (part > chapter > section > subsection) and the document's metadata."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.add_outline_item(title="Contents", page_number=1)  # after the title page
    parents: dict[int, object] = {}
    part, part_item = "", None
    for entry in entries:
        page = pages[entry["id"]] - 1
        if entry["part"] != part:
            part = entry["part"]
            part_item = (writer.add_outline_item(title=part, page_number=page)
                         if part else None)
        title = " ".join(filter(None, (entry["number"], entry["title"])))
        parent = part_item if entry["level"] == 1 else parents.get(entry["level"] - 1)
        parents[entry["level"]] = writer.add_outline_item(title=title, page_number=page,
                                                          parent=parent)
    writer.page_mode = "/UseOutlines"
    writer.add_metadata({"/Title": book["title"], "/Author": book["author"],
                         "/Subject": book["subtitle"], "/Creator": "tools/make_pdf.py"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def book_facts(config_path: Path) -> dict:
    """Title, author, date and parts of the book, from its config and _toc.yml."""
    config = yaml.safe_load(config_path.read_text())
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = [{"caption": p.get("caption", ""),
              "docs": [c["file"].removesuffix(".ipynb").removesuffix(".md")
                       for c in p.get("chapters", [])]}
             for p in toc.get("parts", [])]
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    date = datetime.date.today().isoformat()
    return {"title": config["title"], "author": config.get("author", ""),
            "subtitle": "",  # the first sentence of the root page, found when printing
            "date": f"{date}, commit {commit}" if commit else date,
            "root": toc["root"].removesuffix(".md"), "parts": parts}


def make_pdf(html_dir: Path, output: Path, book: dict) -> dict:
    """Print ``html_dir``'s single-page book to ``output``; return what the print found."""
    # singlehtml writes the root page at the root document's path but with links relative
    # to the top folder; a copy there makes every link resolve.
    page = html_dir / "book.html"
    page.write_bytes((html_dir / f"{book['root']}.html").read_bytes())
    with headless.serve(html_dir) as url, headless.start() as driver:
        driver.get(url + page.name)
        facts = headless.wait_until_rendered(driver)
        problems = [f"{key}: {facts[key]}" for key in ("unrendered", "errors", "broken")
                    if facts[key]]
        if problems:
            raise RuntimeError("the single-page book did not render: " + "; ".join(problems))
        prepared = driver.execute_script(PREPARE_JS, PRINT_CSS, book, TEXT_WIDTH)
        if prepared["unresolved"]:
            raise RuntimeError(f"links with no target in the book: {prepared['unresolved']}")
        entries = prepared["entries"]
        book = {**book, "subtitle": prepared["subtitle"]}
        ids = [e["id"] for e in entries]
        pages = heading_pages(print_pdf(driver), ids)
        if lost := [i for i in ids if i not in pages]:
            raise RuntimeError(f"headings with no page in the PDF: {lost}")
        for _ in range(3):  # the numbers could move a heading to another page; rarely
            driver.execute_script(SET_PAGES_JS, pages)
            pdf = print_pdf(driver)
            printed, pages = pages, heading_pages(pdf, ids)
            if pages == printed:
                break
        else:
            raise RuntimeError("the contents' page numbers do not settle")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(add_outline_and_metadata(pdf, entries, pages, book))
    return {"entries": entries, "pages": pages, "book": book}


def why_notebooks_run_again(build_parent: Path, source: Path = ROOT) -> str | None:
    """Why ``build_parent/_build`` holds no executed pages of ``source`` that Sphinx will reuse
    (None when it does): no build there yet, or one made from another folder (a moved or
    copied checkout), whose pages Sphinx treats as another book's."""
    environment = build_parent / "_build" / ".doctrees" / "environment.pickle"
    if not environment.exists():
        return f"there is no build in {build_parent / '_build'} yet"
    try:
        built_from = Path(pickle.loads(environment.read_bytes()).srcdir)
    except Exception as error:  # a damaged or foreign pickle: Sphinx starts afresh too
        return f"{environment} cannot be read ({type(error).__name__})"
    if built_from.resolve() != source.resolve():
        return f"{build_parent / '_build'} was built from {built_from}, not from {source}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path-output", type=Path, default=None,
                        help="build folder's parent, as for jupyter-book (default: the book)")
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (default: _config.yml)")
    parser.add_argument("--output", type=Path, default=ROOT / "_build" / "pdf" / "book.pdf")
    args = parser.parse_args(argv)
    reason = why_notebooks_run_again(args.path_output or ROOT)
    if reason:
        print(f"make pdf: {reason}, so every notebook is executed first (minutes; `make book` "
              "in this checkout builds them once for both).", file=sys.stderr, flush=True)
    start = time.monotonic()
    html_dir = headless.build_book(args.path_output, builder="singlehtml", config=args.config,
                                   echo=True)
    built = time.monotonic()
    book = book_facts(args.config or ROOT / "_config.yml")
    make_pdf(html_dir, args.output, book)
    from pypdf import PdfReader

    pages = len(PdfReader(args.output).pages)
    print(f"Wrote {args.output} ({pages} pages, {args.output.stat().st_size / 1e6:.1f} MB): "
          f"single-page HTML {built - start:.0f} s, printing {time.monotonic() - built:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
