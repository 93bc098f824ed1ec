"""The node DAG: edges, cycles, topological layers, up/downstream sets and `--select`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from seeknal_dagster.errors import SeeknalError


class SelectionError(SeeknalError):
    """A `--select` expression names nothing or is malformed."""


@dataclass(frozen=True)
class Graph:
    """Parents of every node (node id -> its input ids, in declared order)."""

    parents: Mapping[str, tuple[str, ...]]

    @cached_property
    def children(self) -> dict[str, tuple[str, ...]]:
        result: dict[str, list[str]] = {node: [] for node in self.parents}
        for node, inputs in self.parents.items():
            for parent in inputs:
                result.setdefault(parent, []).append(node)
        return {node: tuple(kids) for node, kids in result.items()}

    @property
    def edge_count(self) -> int:
        return sum(len(inputs) for inputs in self.parents.values())

    def find_cycle(self) -> list[str] | None:
        """A cycle as a path whose first and last node are the same, or None."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
        for start in sorted(self.parents):
            if start in state:
                continue
            path: list[str] = [start]
            stack = [iter(self.parents.get(start, ()))]
            state[start] = 1
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    state[path.pop()] = 2
                    stack.pop()
                    continue
                if child not in self.parents:
                    continue
                if state.get(child) == 1:
                    cycle = path[path.index(child) :] + [child]
                    # Report in data-flow order: a -> b means b reads a.
                    return list(reversed(cycle))
                if child not in state:
                    state[child] = 1
                    path.append(child)
                    stack.append(iter(self.parents.get(child, ())))
        return None

    @cached_property
    def layers(self) -> list[list[str]]:
        """Topological layers: a node sits one layer after its deepest input. Requires no cycle."""
        depth: dict[str, int] = {}
        for node in self.topological_order:
            depth[node] = 1 + max((depth[p] for p in self.parents[node] if p in depth), default=-1)
        result: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for node in self.topological_order:
            result[depth[node]].append(node)
        return result

    @cached_property
    def topological_order(self) -> list[str]:
        """Nodes in dependency order; ties keep the declared (file) order."""
        remaining = {n: sum(1 for p in ps if p in self.parents) for n, ps in self.parents.items()}
        position = {node: index for index, node in enumerate(self.parents)}
        ready = [n for n, count in remaining.items() if count == 0]
        order: list[str] = []
        while ready:
            ready.sort(key=position.__getitem__)
            batch, ready = ready, []
            for node in batch:
                order.append(node)
                for child in self.children.get(node, ()):
                    remaining[child] -= 1
                    if remaining[child] == 0:
                        ready.append(child)
        if len(order) != len(self.parents):
            raise SeeknalError("the graph has a cycle; call find_cycle() for its path")
        return order

    def upstream(self, nodes: Iterable[str]) -> set[str]:
        """All ancestors of the given nodes (not including them)."""
        return self._walk(nodes, self.parents)

    def downstream(self, nodes: Iterable[str]) -> set[str]:
        """All descendants of the given nodes (not including them)."""
        return self._walk(nodes, self.children)

    @staticmethod
    def _walk(start: Iterable[str], edges: Mapping[str, tuple[str, ...]]) -> set[str]:
        seen: set[str] = set()
        stack = [n for s in start for n in edges.get(s, ())]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(edges.get(node, ()))
        return seen


def select(graph: Graph, expressions: Iterable[str], tags: Mapping[str, Iterable[str]]) -> set[str]:
    """Resolves dbt-style selection terms to node ids; several terms mean their union.

    Terms: `name`, `kind.name`, `+name` (with upstream), `name+` (with downstream), `tag:x`,
    `kind:source`. A term may also be comma- or space-separated inside one string.

    Raises:
        SelectionError: a term matches no node.
    """
    selected: set[str] = set()
    terms = [term for expression in expressions for term in expression.replace(",", " ").split()]
    if not terms:
        raise SelectionError(
            "--select was given no node. Fix: name nodes, e.g. --select "
            "+training_data, or drop --select to run everything"
        )
    for term in terms:
        selected |= _select_term(graph, term, tags)
    return selected


def _select_term(graph: Graph, term: str, tags: Mapping[str, Iterable[str]]) -> set[str]:
    with_upstream = term.startswith("+")
    with_downstream = term.endswith("+")
    core = term.strip("+")
    if core.startswith("tag:"):
        wanted = core[4:]
        base = {node for node, node_tags in tags.items() if wanted in node_tags}
    elif core.startswith("kind:"):
        base = {node for node in graph.parents if node.split(".", 1)[0] == core[5:]}
    elif "." in core:
        base = {core} if core in graph.parents else set()
    else:
        base = {node for node in graph.parents if node.split(".", 1)[1] == core}
    if not base:
        from seeknal_dagster.specs import did_you_mean

        names = sorted(set(graph.parents) | {n.split(".", 1)[1] for n in graph.parents})
        raise SelectionError(
            f"--select {term!r} matches no node{did_you_mean(core, names)}. Fix: use a node "
            "name, kind.name, +name, name+, tag:x or kind:source"
        )
    result = set(base)
    if with_upstream:
        result |= graph.upstream(base)
    if with_downstream:
        result |= graph.downstream(base)
    return result
