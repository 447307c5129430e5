"""Where and how the ``taskqueue`` command prints a view (see :mod:`taskqueue.cli.views`):

- on a terminal: rich tables, coloured states, progress bars;
- piped: plain aligned columns with a header row (``awk``/``cut`` friendly, no escape codes);
- ``--json``: the JSON documents the REST API returns, so a script can switch between the CLI
  and the API without rewriting its parsing.

Results go to stdout; notes, prompts and progress bars to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from taskqueue.cli.views import Cell, Details, Listing, View

if TYPE_CHECKING:
    from rich.progress import Progress

#: Columns no wider than this keep their width on a narrow terminal; wider ones share the rest.
_KEPT_WIDTH = 12
#: The narrowest a shared (free-text) column is squeezed to: narrower says too little to keep.
_MIN_SHARED_WIDTH = 16
#: Optional columns are hidden until the free text gets this much, if that is enough.
_COMFORTABLE_WIDTH = 32


def _cell_text(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def fit_widths(
    widest: Sequence[int], available: int, optional: Sequence[int] = ()
) -> dict[int, int] | None:
    """Which columns to show, and how wide, for a table of one line per row in ``available``
    characters; None: the table fits as it is.

    The first column (an id) and short columns keep their width; the longer, free-text ones
    (details, descriptions, type lists) share what is left, cut with an ellipsis, so an id or
    a state is never cut. Columns that cannot fit even so are left out: the ``optional`` ones
    first, in their order, then the others from the right.
    """
    if sum(widest) + 3 * len(widest) - 1 <= available:
        return None
    # First hide optional columns to give the free text a comfortable width; failing that,
    # hide what it takes for a readable one.
    everything = [*optional, *range(len(widest) - 1, 0, -1)]
    return (
        _fit(widest, available, optional, _COMFORTABLE_WIDTH)
        or _fit(widest, available, everything, _MIN_SHARED_WIDTH)
        or {0: min(widest[0], available)}
    )


def _fit(
    widest: Sequence[int], available: int, hideable: Sequence[int], minimum: int
) -> dict[int, int] | None:
    """The widths with the fewest of ``hideable`` hidden (in order) that leave each free-text
    column ``minimum`` characters on average; None if hiding them all is not enough."""
    shown = list(range(len(widest)))
    for hidden in [None, *hideable]:
        if hidden is not None:
            if hidden not in shown:
                continue
            shown.remove(hidden)
        # Padding on each side of a column, a space between columns, none at the edges.
        room = available - 3 * len(shown) + 1
        shared = [i for i in shown if i > 0 and widest[i] > _KEPT_WIDTH]
        spare = room - sum(widest[i] for i in shown if i not in shared)
        if spare >= max(0, minimum * len(shared)):
            widths = {i: widest[i] for i in shown}
            # The narrowest first: a column that needs less than an even share leaves the
            # rest to the wider ones.
            for n, i in enumerate(sorted(shared, key=lambda i: widest[i])):
                widths[i] = min(widest[i], spare // (len(shared) - n))
                spare -= widths[i]
            return widths
    return None


def _rich(view: View, width: int) -> RenderableType:
    if isinstance(view, Details):
        table = Table(
            box=box.SIMPLE_HEAD, show_header=False, title=view.title, title_justify="left"
        )
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for name, value in view.pairs:
            table.add_row(name, value)
        return table
    if not view.rows:
        empty = Text(f"  {view.empty}\n", style="dim")
        return Text.assemble((view.title, "italic"), "\n", empty) if view.title else empty
    cells = [view.columns, *view.rows]
    widest = [max(len(_cell_text(row[i])) for row in cells) for i in range(len(view.columns))]
    fitted = fit_widths(widest, width, view.optional)
    shown = list(fitted) if fitted is not None else list(range(len(view.columns)))
    title = view.title
    if len(shown) < len(view.columns):
        hidden = ", ".join(c for i, c in enumerate(view.columns) if i not in shown)
        title = f"{title or ''} ({hidden} hidden: the terminal is too narrow)".strip()
    table = Table(
        box=box.SIMPLE_HEAD,
        title=title,
        title_justify="left",
        header_style="bold",
        pad_edge=False,
    )
    for index in shown:
        table.add_column(
            view.columns[index],
            justify="right" if index in view.numeric else "left",
            no_wrap=True,
            width=None if fitted is None else fitted[index],
            overflow="ellipsis",
        )
    for row in view.rows:
        table.add_row(*(row[i] for i in shown))
    return table


def _plain(view: View) -> str:
    """Aligned text, no styles. The last column is never padded, so lines carry no trailing
    spaces; a multi-line value in details is indented under its name."""
    if isinstance(view, Details):
        width = max((len(name) for name, _ in view.pairs), default=0) + 1
        lines: list[str] = []
        for name, value in view.pairs:
            text = value.plain if isinstance(value, Text) else value
            first, *rest = text.splitlines() or [""]
            label = f"{name}:" if name else ""  # "": a further line of the value above
            lines.append(f"{label:<{width}} {first}".rstrip())
            lines += [f"  {line}".rstrip() for line in rest]
        return "\n".join(lines)
    cells = [view.columns] + [
        tuple(c.plain if isinstance(c, Text) else c for c in row) for row in view.rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(view.columns))]
    out: list[str] = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            if i in view.numeric:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell if last else cell.ljust(widths[i]))
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


class ProgressBars(Protocol):
    """What a command may do with a progress bar, whether or not one is drawn."""

    def advance(self, amount: int = 1, *, bar: int = 0) -> None: ...


class _Bars:
    def __init__(self, progress: Progress | None, ids: list[Any]) -> None:
        self._progress = progress
        self._ids = ids

    def advance(self, amount: int = 1, *, bar: int = 0) -> None:
        if self._progress is not None:
            self._progress.advance(self._ids[bar], amount)


class Output:
    """Where and how a command prints. ``json_mode`` wins; otherwise stdout being a terminal
    picks rich over plain (``FORCE_COLOR``/``NO_COLOR`` are honoured, as rich reads them).

    Results go to stdout; notes, prompts and progress bars go to stderr, so ``--json`` output
    and piped ids stay clean while a person still sees what is happening.
    """

    def __init__(
        self, *, json_mode: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self.console = Console(file=stdout or sys.stdout, highlight=False, soft_wrap=False)
        self.err = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
        self.rich = not json_mode and self.console.is_terminal

    def json(self, value: Any, *, compact: bool = False) -> None:
        """One JSON document; ``compact`` puts it on one line (JSON lines, for --watch)."""
        text = json.dumps(value, ensure_ascii=False, indent=None if compact else 2)
        self.console.file.write(text + "\n")
        self.console.file.flush()

    def line(self, text: Cell) -> None:
        """One line of result on stdout (styled on a terminal, plain when piped)."""
        if self.rich:
            self.console.print(text)
        else:
            self.console.file.write((text.plain if isinstance(text, Text) else text) + "\n")
            self.console.file.flush()

    def lines(self, texts: Iterable[str]) -> None:
        """Many plain lines at once (ids for ``xargs``), written in one go."""
        self.console.file.write("".join(f"{text}\n" for text in texts))
        self.console.file.flush()

    def note(self, text: Cell) -> None:
        """A remark for the person at the terminal, on stderr: never part of the result."""
        self.err.print(text)

    def show(self, *views: View) -> None:
        if self.rich:
            self.console.print(self.renderable(views))
        else:
            self.console.file.write(self.plain(views) + "\n")
            self.console.file.flush()

    def renderable(self, views: Sequence[View], header: Cell | None = None) -> RenderableType:
        parts: list[RenderableType] = [] if header is None else [header]
        parts += [_rich(v, self.console.width) for v in views]
        return Group(*parts)

    def plain(self, views: Sequence[View]) -> str:
        blocks = []
        for view in views:
            title = view.title if isinstance(view, Listing) and len(views) > 1 else None
            blocks.append((f"# {title}\n" if title else "") + _plain(view))
        return "\n\n".join(blocks)

    def toml(self, text: str) -> None:
        if self.rich:
            from rich.syntax import Syntax  # pygments: imported only when it colours

            self.console.print(Syntax(text, "toml", theme="ansi_dark", background_color="default"))
        else:
            self.console.file.write(text)
            self.console.file.flush()

    @contextmanager
    def progress(self, *bars: tuple[str, int]) -> Iterator[ProgressBars]:
        """Progress bars of ``(description, total)`` on stderr, drawn only when stderr is a
        terminal: a pipe or a log file gets nothing rather than a stream of redraws."""
        if not self.err.is_terminal:
            yield _Bars(None, [])
            return
        # Imported only when a bar is drawn: most commands never draw one.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.err,
            transient=False,
        )
        with progress:
            ids = [progress.add_task(description, total=total) for description, total in bars]
            yield _Bars(progress, ids)
