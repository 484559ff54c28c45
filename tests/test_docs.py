"""The user docs stand alone: no `../shared` paths, and every "SPEC x.y" (or "pitfall N")
that the code cites is a section (an item of section 13) of docs/reference.md."""

from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "docs", "reference.md")
# Where citations live; this file is left out (its negative controls cite missing sections).
CITING = ("nas_jax", "configs", "experiments", "tests")
NUMBER = r"\d+(?:\.\d+)?"
# "SPEC 7.9", "SPEC 6, 15", "SPEC 8.1-8.3", "SPEC 2.1, 4.1, 4.2, 7.9"
SPEC_RE = re.compile(rf"SPEC ({NUMBER}(?:\s*[,-]\s*{NUMBER})*)")
PITFALL_RE = re.compile(r"pitfall (\d+)")


def user_docs() -> list[str]:
    return [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def reference_sections(text: str) -> tuple[set[str], set[int]]:
    """Section numbers of the headings ('## 7. ...', '### 7.9 ...') and the numbered
    items of section 13 (the pitfalls)."""
    sections, pitfalls, section = set(), set(), None
    for line in text.splitlines():
        m = re.match(rf"#{{2,4}} ({NUMBER})\.? ", line)
        if m:
            section = m.group(1)
            sections.add(section)
            continue
        m = re.match(r"(\d+)\. ", line)
        if m and section == "13":
            pitfalls.add(int(m.group(1)))
    return sections, pitfalls


def cited(text: str) -> tuple[set[str], set[int]]:
    """Sections cited as SPEC x.y (ranges expanded within a section) and pitfall numbers."""
    sections = set()
    for group in SPEC_RE.findall(text):
        for part in re.split(r"\s*,\s*", group):
            lo, _, hi = part.partition("-")
            sections.add(lo.strip())
            if hi:
                (a_major, _, a_minor), (b_major, _, b_minor) = (
                    lo.strip().partition("."), hi.strip().partition(".")
                )  # fmt: skip
                if a_major == b_major and a_minor and b_minor:
                    sections |= {f"{a_major}.{i}" for i in range(int(a_minor), int(b_minor) + 1)}
                else:
                    sections.add(hi.strip())
    return sections, {int(n) for n in PITFALL_RE.findall(text)}


def dangling(text: str, reference: str) -> list[str]:
    """The citations in `text` that `reference` has no section (pitfall item) for."""
    have_sections, have_pitfalls = reference_sections(reference)
    want_sections, want_pitfalls = cited(text)
    missing = [f"SPEC {s}" for s in sorted(want_sections - have_sections)]
    return missing + [f"pitfall {n}" for n in sorted(want_pitfalls - have_pitfalls)]


def citing_files() -> list[str]:
    files = []
    for folder in CITING:
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True):
            if path.endswith((".py", ".sh")) and os.path.abspath(path) != os.path.abspath(__file__):
                files.append(path)
    return sorted(files) + user_docs()


@pytest.mark.parametrize("path", user_docs(), ids=os.path.basename)
def test_user_docs_have_no_shared_paths(path):
    with open(path) as f:
        lines = [f"{i}: {line}" for i, line in enumerate(f, 1) if "../shared" in line]
    assert not lines, f"{path} points outside the project:\n" + "".join(lines)


def test_readme_points_to_the_reference():
    with open(os.path.join(ROOT, "README.md")) as f:
        assert "docs/reference.md" in f.read()


def test_readme_links_exist():
    with open(os.path.join(ROOT, "README.md")) as f:
        targets = re.findall(r"\]\(([^)#\s]+)\)", f.read())
    local = [t for t in targets if "://" not in t]
    assert local  # the pictures and the reference at least
    assert [t for t in local if not os.path.exists(os.path.join(ROOT, t))] == []


def test_every_cited_section_exists():
    with open(REFERENCE) as f:
        reference = f.read()
    problems, found = [], set()
    for path in citing_files():
        with open(path, errors="replace") as f:
            text = f.read()
        found |= cited(text)[0]
        problems += [f"{os.path.relpath(path, ROOT)}: {m}" for m in dangling(text, reference)]
    listing = "\n".join(problems)
    assert not problems, f"citations without a section in docs/reference.md:\n{listing}"
    assert {"2.2", "7.9", "8.2", "11"} <= found  # the scan does find the code's citations


def test_dangling_citations_are_caught():
    """Negative controls: a missing section, a range end, a pitfall beyond the list."""
    reference = "## 7. Selection\n### 7.9 Read-out\n## 13. Pitfalls\n1. one\n2. two\n"
    assert dangling("(SPEC 7.9, pitfall 2)", reference) == []
    assert dangling("see SPEC 7.10", reference) == ["SPEC 7.10"]
    assert dangling("SPEC 7.8-7.9", reference) == ["SPEC 7.8"]
    assert dangling("SPEC 6, 7", reference) == ["SPEC 6"]
    assert dangling("SPEC 7.9 pitfall 3", reference) == ["pitfall 3"]
    # Numbered lines outside section 13 are not pitfalls.
    assert dangling("pitfall 1", "## 12. Table\n1. x\n## 13. Pitfalls\n") == ["pitfall 1"]
