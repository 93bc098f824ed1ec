"""The one place user-facing output goes: styled on a terminal, plain when piped, or JSON."""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, TextIO

RULE = "=" * 60


class Console:
    """Writes what the user reads. Diagnostics go to `logging`, never here."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        self.format = fmt
        self.stream = stream or sys.stdout
        self.styled = (
            fmt == "text"
            and self.stream.isatty()
            and not os.environ.get("NO_COLOR")
            and not os.environ.get("CI")
        )
        self._rich: Any = None

    @property
    def is_json(self) -> bool:
        return self.format == "json"

    def line(self, text: str = "", style: str | None = None) -> None:
        """One line of text output (ignored in JSON mode, where only `document` prints)."""
        if self.is_json:
            return
        if self.styled and style:
            if self._rich is None:
                from rich.console import Console as RichConsole

                self._rich = RichConsole(file=self.stream, highlight=False, soft_wrap=True)
            self._rich.print(text, style=style, markup=False)
            return
        self.stream.write(text + "\n")

    def status(self, text: str) -> None:
        """A transient one-line status on a terminal (nothing when piped or in JSON mode)."""
        if self.styled:
            self.stream.write("\r\x1b[2K" + text[: shutil.get_terminal_size().columns - 1])
            self.stream.flush()

    def clear_status(self) -> None:
        if self.styled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def heading(self, title: str) -> None:
        self.line(title, style="bold")
        self.line(RULE)

    def success(self, text: str) -> None:
        self.line(f"✓ {text}", style="green")

    def warn(self, text: str) -> None:
        """A warning: on stderr in JSON mode so the document stays parseable."""
        if self.is_json:
            sys.stderr.write(f"warning: {text}\n")
        else:
            self.line(f"⚠ {text}", style="yellow")

    def error(self, text: str) -> None:
        sys.stderr.write(f"Error: {text}\n")

    def document(self, payload: Any) -> None:
        """A machine-readable document (JSON mode only)."""
        if self.is_json:
            self.stream.write(json.dumps(payload, indent=2, default=str) + "\n")
