"""Summarise py-spy's collapsed stacks (``py-spy record -f raw``): where a server spends its time.

    .venv/bin/python benchmarks/stacks.py benchmarks/results/ingest-prodloop-sqlite.folded
    .venv/bin/python benchmarks/stacks.py FILE --focus write_spans     # only samples under this function

Prints, for the samples taken, the share of each function as "self" (the frame on top of the stack)
and "inclusive" (anywhere on the stack, counted once per sample).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match.group("file")
    parts = Path(file).parts
    for anchor in ("site-packages", "lib"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    return f"{match.group('func')} ({'/'.join(parts[-3:])})"


def _package(name: str) -> str:
    """The package of a frame name as made by :func:`_frame_name`: ``sqlalchemy``, ``prodloop``,
    or ``stdlib:asyncio`` for the standard library."""
    where = name.rpartition("(")[2].rstrip(")")
    parts = where.split("/")
    if len(parts) == 1:
        return "stdlib:" + parts[0].removesuffix(".py")
    if parts[0] in ("asyncio", "json", "concurrent", "email", "http", "urllib", "re"):
        return "stdlib:" + parts[0]
    return parts[0]


def summarise(path: Path, focus: str | None, top: int) -> str:
    self_time: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if "(" in f and not f.startswith(("process ", "thread "))]
        names = [_frame_name(f) for f in frames]
        if focus is not None:
            index = next((i for i, n in enumerate(names) if n.startswith(focus + " ")), None)
            if index is None:
                continue
            names = names[index:]
        if not names:
            continue
        total += count
        self_time[names[-1]] += count
        by_package[_package(names[-1])] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples" + (f" under {focus}" if focus else ""), "", "self %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in self_time.most_common(top)]
    lines += ["", "self %  package"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in by_package.most_common(top)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--focus", default=None, help="Only samples with this function on the stack.")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(summarise(args.file, args.focus, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
