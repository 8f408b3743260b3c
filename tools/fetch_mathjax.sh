#!/usr/bin/env bash
# Install MathJax, pinned, from the npm registry into _build/vendor/mathjax so that the
# built book renders its math without reaching the internet (tools/book_sphinx.py copies
# it into _build/html/_static/mathjax and points Sphinx's mathjax_path at it).
# Usage: bash tools/fetch_mathjax.sh [DEST]   (idempotent: a second run is a no-op)
set -euo pipefail

VERSION=3.2.2
# `npm view mathjax@3.2.2 dist.integrity`; checked again here so a changed tarball fails.
INTEGRITY="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
DEST="${1:-_build/vendor/mathjax}"

if [[ -f "$DEST/VERSION" && "$(cat "$DEST/VERSION")" == "$VERSION" ]]; then
    echo "MathJax $VERSION already in $DEST"
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "error: npm is needed to install MathJax $VERSION (Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tarball="$(cd "$tmp" && npm pack --silent "mathjax@$VERSION")"
actual="sha512-$(openssl dgst -sha512 -binary "$tmp/$tarball" | base64 -w0)"
if [[ "$actual" != "$INTEGRITY" ]]; then
    echo "error: $tarball has integrity $actual, expected $INTEGRITY" >&2
    exit 1
fi
tar -xzf "$tmp/$tarball" -C "$tmp"

# Keep the one combined component Sphinx loads (TeX and MathML input, CommonHTML output)
# plus what it loads lazily: TeX extensions, fonts, the menu and the accessibility tools.
src="$tmp/package/es5"
stage="$tmp/stage"
mkdir -p "$stage/output"
cp "$src/tex-mml-chtml.js" "$tmp/package/LICENSE" "$stage/"
cp -r "$src/input" "$src/ui" "$src/a11y" "$src/sre" "$src/adaptors" "$stage/"
cp -r "$src/output/chtml" "$src/output/chtml.js" "$stage/output/"
echo "$VERSION" > "$stage/VERSION"

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$stage" "$DEST"
echo "Installed MathJax $VERSION from the npm registry into $DEST ($(du -sh "$DEST" | cut -f1))"
