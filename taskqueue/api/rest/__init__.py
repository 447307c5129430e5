"""The REST API under ``/api/v1`` (plus ``/healthz``, ``/readyz``, ``/metrics``).

:func:`create_rest_app` builds it; :mod:`taskqueue.api.rest.openapi` documents it; the route
modules (``tasks``, ``admin``, ``sse``, ``health``) declare what it serves.
"""

from taskqueue.api.rest.app import all_routes, create_rest_app

__all__ = ["all_routes", "create_rest_app"]
