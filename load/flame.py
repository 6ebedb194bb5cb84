"""Summarise py-spy's collapsed stacks ("f1;f2;f3 count" per line): own time per function."""

import re
from collections import Counter

_LINE = re.compile(r":\d+\)$")  # "fn (file.py:123)" -> aggregate over line numbers


def top_frames(collapsed: str, limit: int = 40) -> list[tuple[str, float]]:
    """The functions where samples were taken (own time), with their share of all samples."""
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = _LINE.sub(")", stack.rsplit(";", 1)[-1])
        own[leaf] += int(count)
        total += int(count)
    return [(frame, n / total) for frame, n in own.most_common(limit)] if total else []
