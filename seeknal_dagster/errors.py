"""The product's exceptions: one root, a subclass per kind of failure.

Every message names where the problem is (file, key, node or environment), what was found and
ends with how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class SeeknalError(Exception):
    """Root of every error the product raises on purpose; the CLI prints these without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One validation finding: where it is, what is wrong and how to fix it."""

    file: str
    key: str
    message: str
    fix: str = ""
    line: int | None = None

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.key:
            where = f"{where} [{self.key}]"
        text = f"{where}: {self.message}"
        if self.fix:
            text = f"{text}. Fix: {self.fix}"
        return text


class ProjectError(SeeknalError):
    """The project or its node files are invalid; carries every problem found in one pass."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0, p.key))
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} found in the project"
        super().__init__("\n".join([header, *(f"  - {p.render()}" for p in self.problems)]))


class SqlError(SeeknalError):
    """A node's SQL cannot be analysed (it does not parse, or its last statement is not a query)."""


class StateError(SeeknalError):
    """A state file under target/ is missing, corrupt, of an unknown version, or locked."""


class PlanError(SeeknalError):
    """A plan or environment request cannot be honoured (stale plan, unknown environment, ...)."""


class ExecutionError(SeeknalError):
    """A node failed while running; names the node and carries the engine's message."""

    def __init__(self, node_id: str, message: str):
        self.node_id = node_id
        super().__init__(f"{node_id}: {message}")
