"""Which route a method and path name: the route templates compiled once into a matcher.

Fixed paths are one dict lookup; templated ones (``/api/v1/tasks/{task_id}``) are regular
expressions built from the converters their parameters name (:data:`~.routing.CONVERTERS`),
so ``{task_id}`` matches task ids only. A GET route answers HEAD too (hypercorn drops the
body), as the ``Allow`` header of a 405 says. Repeated slashes count as one, so a client
joining a base URL that ends in ``/`` with a path that starts with one is still served.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from taskqueue.api.rest.routing import CONVERTERS, Operation, Route

_NO_PARAMS: Mapping[str, str] = {}
_SLASHES = re.compile("/{2,}")


class Match:
    """What a request names: its route and path parameters; or, with no route, the methods
    its path allows (none: no such path)."""

    __slots__ = ("allowed", "params", "route")

    def __init__(
        self,
        route: Route | None,
        params: Mapping[str, str] = _NO_PARAMS,
        allowed: tuple[str, ...] = (),
    ) -> None:
        self.route = route
        self.params = params
        self.allowed = allowed


class UrlMap:
    """The routes, by path then method."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._fixed: dict[str, dict[str, Route]] = {}
        templated: dict[str, dict[str, Route]] = {}
        for route in routes:
            op = route.operation
            table = templated if op.path_params else self._fixed
            methods = table.setdefault(op.path, {})
            if op.method in methods:
                raise ValueError(f"two routes for {op.method} {op.path}")
            methods[op.method] = route
            if op.method == "GET":
                methods.setdefault("HEAD", route)
        self._templated = [
            (_compile(next(iter(methods.values())).operation), methods)
            for methods in templated.values()
        ]

    def match(self, method: str, path: str) -> Match:
        """The route for ``method`` on ``path`` (a :func:`canonical` one)."""
        methods = self._fixed.get(path)
        if methods is not None:
            route = methods.get(method)
            if route is not None:
                return Match(route)
        allowed: set[str] = set(methods or ())
        for pattern, candidates in self._templated:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            route = candidates.get(method)
            if route is not None:
                return Match(route, found.groupdict())
            allowed.update(candidates)
        return Match(None, allowed=tuple(sorted(allowed)))


def canonical(path: str) -> str:
    """``path`` with one leading slash and no repeated ones, as routes are matched and named."""
    if "//" in path or not path.startswith("/"):
        path = _SLASHES.sub("/", "/" + path)
    return path


def _compile(op: Operation) -> re.Pattern[str]:
    """``op``'s path template as a regular expression, a named group per parameter."""
    pattern = re.escape(op.path)
    for param in op.path_params:
        placeholder = re.escape(f"{{{param.name}}}")
        if placeholder not in pattern:
            raise ValueError(f"{op.path} has no {{{param.name}}}")
        group = f"(?P<{param.name}>{CONVERTERS[param.converter]})"
        pattern = pattern.replace(placeholder, group)
    return re.compile(pattern)
