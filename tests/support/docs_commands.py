"""The shell commands of README.md and docs/*.md: every fenced block without a language or marked `sh`, one
command a line (a trailing backslash continues it, a comment after two spaces is dropped)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"", "sh"}  # a block of commands; any other block names what it holds
OTHER = {"text", "yaml", "json", "promql"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, int, str, str]]:
    """(document, line, language, text) of every fenced block."""
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for m in FENCE.finditer(text):
            found.append((str(path.relative_to(ROOT)), text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)))
    return found


def commands(text: str) -> list[str]:
    """The commands of one block, as a shell would read them."""
    joined = re.sub(r"\\\n\s*", "", text)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def documented() -> dict[str, list[str]]:
    """{document: its commands, in order}."""
    out: dict[str, list[str]] = {}
    for document, _, language, text in blocks():
        if language in SHELL:
            out.setdefault(document, []).extend(commands(text))
    return out


def block_after(document: str, marker: str) -> list[str]:
    """The commands of the first shell block after `marker` in the document."""
    text = (ROOT / document).read_text().split(marker, 1)[1]
    return commands(FENCE.search(text).group(2))
