"""The web dashboard, served on the API port at ``/ui`` (``/`` redirects there).

The pages are static files (:mod:`~taskqueue.api.ui.static`, plain ES modules and CSS, no
build step) whose scripts read and act through the REST API itself; the server side only
serves them and turns a token entered on the login page into a session cookie
(:mod:`~taskqueue.api.ui.session`), which the REST app accepts in place of a bearer token.
Nothing here is an API route, so none of it is in the OpenAPI document.
"""
