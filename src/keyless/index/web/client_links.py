"""Links that publishing clients print after an upload, pointing at paths keyless does not own.

hatch treats any index but PyPI as devpi and prints `{upload URL}{name}/{version}/`, i.e.
`/{index}/legacy/{name}/{version}/`; flit prints `https://{host}/project/{name}/`, PyPI's
project page at the host's root, with no index in it. Both are sent on to the page they mean,
so the link a user clicks in the terminal works. (hatch's other devpi path, the `+simple`
page it reads to skip files already there, is served by routes/simple.py.)
"""

from __future__ import annotations

from packaging.utils import canonicalize_name
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..routes.common import services
from .render import redirect


async def hatch_release(request: Request) -> Response:
    index, name, version = (request.path_params[k] for k in ("index", "project", "version"))
    # The release page answers an unknown index, project or version with a page saying so.
    return redirect(request, f"/{index}/project/{name}/{version}/")


async def flit_project(request: Request) -> Response:
    name = request.path_params["project"]
    normalized = canonicalize_name(name)
    svc = services(request)
    holders = await run_in_threadpool(svc.catalog.indexes_holding, normalized)
    names = [index.name for index in svc.indexes.values() if index.id in holders]
    if len(names) == 1:
        return redirect(request, f"/{names[0]}/project/{normalized}/")
    # On no index, or on several (the link cannot say which was meant): the search over all
    # indexes, which lists each one holding it, or says none does.
    return redirect(request, "/", q=name)


# After the API routes: `/{index}/simple/` of an index named `project` wins over flit's link
# (index names cannot hold a `/`, so nothing else can match these shapes).
routes = [
    Route("/{index}/legacy/{project}/{version}/", hatch_release, methods=["GET", "HEAD"]),
    Route("/project/{project}/", flit_project, methods=["GET", "HEAD"]),
]
