"""Lists each publishable crate's public API from rustdoc's HTML; see .ci/api."""

import difflib
import html
import json
import os
import re
import sys

AUTO_TRAITS = {"Send", "Sync", "Unpin", "UnwindSafe", "RefUnwindSafe"}


def text(fragment):
    """The plain text of an HTML fragment, whitespace collapsed."""
    fragment = re.sub(r"<(?:div|br)\b[^>]*>", " ", fragment)
    fragment = re.sub(r"<[^>]+>", "", fragment)
    return re.sub(r"\s+", " ", html.unescape(fragment)).strip()


def publishable_crates(metadata):
    """(package name, crate name) of every workspace package with a lib that is published."""
    crates = []
    for package in metadata["packages"]:
        if package.get("publish") == []:
            continue
        for target in package["targets"]:
            if "lib" in target["kind"]:
                crates.append((package["name"], target["name"].replace("-", "_")))
    return sorted(crates)


def item_pages(doc, crate):
    """The pages of every item in the crate's all.html, relative to its directory."""
    with open(os.path.join(doc, crate, "all.html"), encoding="utf-8") as f:
        page = f.read()
    lists = re.findall(r'<ul class="all-items">(.*?)</ul>', page, re.S)
    return sorted({href for ul in lists for href in re.findall(r'href="([^"]+)"', ul)})


def item_name(crate, href):
    """`struct tower_prism::Reliability` from `struct.Reliability.html`."""
    *modules, leaf = href.split("/")
    kind, name = leaf[: -len(".html")].split(".", 1)
    return f"{kind} {'::'.join([crate, *modules, name])}"


def auto_impl_kept(header):
    """Whether an auto-trait impl is one of the stable set (toolchains add new ones)."""
    m = re.match(r"impl(?:<.*?>)? !?([A-Za-z]+) for ", header)
    return bool(m) and m.group(1) in AUTO_TRAITS


def describe(doc, crate, href):
    """The lines of one item: its name, its declaration, then its impl blocks, sorted."""
    with open(os.path.join(doc, crate, href), encoding="utf-8") as f:
        page = f.read()
    lines = [item_name(crate, href)]
    decl = re.search(r'<pre class="rust item-decl">(.*?)</pre>', page, re.S)
    if decl:
        raw = re.sub(r"<[^>]+>", "", decl.group(1))
        for line in html.unescape(raw).splitlines():
            if line.strip():
                lines.append("    " + re.sub(r"\s+", " ", line.strip()))
    # Section headers (h2 with an id) and code headers (h3: an impl, h4: an item in it).
    blocks = []
    section = ""
    current = None
    pattern = r'<h2 id="([^"]+)"[^>]*>|<h([34]) class="code-header">(.*?)</h\2>'
    for m in re.finditer(pattern, page, re.S):
        if m.group(1):
            section = m.group(1)
            current = None
            continue
        if section.startswith("blanket-implementations"):
            continue
        header = text(m.group(3))
        if m.group(2) == "3":
            if section.startswith("synthetic-implementations") and not auto_impl_kept(header):
                current = None
                continue
            current = [header]
            blocks.append(current)
        elif current is not None:
            current.append("    " + header)
        else:
            # An item outside an impl block: a trait's required and provided methods.
            blocks.append([f"[{section}] {header}"])
    for block in sorted(blocks):
        lines.extend("    " + line for line in block)
    return lines


def listing(doc, crate):
    items = [describe(doc, crate, href) for href in item_pages(doc, crate)]
    out = []
    for item in sorted(items):
        out.extend(item)
        out.append("")
    return "\n".join(out)


def main():
    mode, doc, api_dir, rustdoc = sys.argv[1:5]
    metadata = json.load(sys.stdin)
    failed = False
    expected_files = set()
    for package, crate in publishable_crates(metadata):
        path = os.path.join(api_dir, f"{package}.txt")
        expected_files.add(f"{package}.txt")
        if not os.path.exists(os.path.join(doc, crate, "all.html")):
            sys.exit(f"no docs for {crate} under {doc}: run cargo doc --workspace --no-deps --all-features")
        new = listing(doc, crate)
        if mode == "update":
            os.makedirs(api_dir, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            print(f"wrote {path}")
            continue
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        if old != new:
            failed = True
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"{path} (committed)",
                    tofile=f"{path} (this build)",
                )
            )
    toolchain = os.path.join(api_dir, "TOOLCHAIN")
    if mode == "update":
        with open(toolchain, "w", encoding="utf-8") as f:
            f.write(rustdoc + "\n")
        for name in sorted(os.listdir(api_dir)):
            if name.endswith(".txt") and name not in expected_files:
                os.remove(os.path.join(api_dir, name))
                print(f"removed {os.path.join(api_dir, name)} (no such publishable crate)")
        return
    for name in sorted(os.listdir(api_dir)) if os.path.isdir(api_dir) else []:
        if name.endswith(".txt") and name not in expected_files:
            failed = True
            print(f"{api_dir}/{name}: no publishable crate of that name (run .ci/api update)")
    if failed:
        recorded = open(toolchain).read().strip() if os.path.exists(toolchain) else "(none)"
        print("\nThe public API differs from api/*.txt (above: - committed, + this build).")
        if recorded != rustdoc:
            print(f"Note: api/ was written by {recorded}, this build used {rustdoc};")
            print("rustdoc's rendering may differ between releases.")
        print("If the change is intended, run .ci/api update and commit api/.")
        sys.exit(1)
    print("public API matches api/*.txt")


if __name__ == "__main__":
    main()
