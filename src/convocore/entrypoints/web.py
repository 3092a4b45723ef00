"""The browser chat page: ``/`` and its script and style under ``/static/`` (no build step)."""

from pathlib import Path

from litestar import MediaType, get
from litestar.datastructures import CacheControlHeader
from litestar.response import File
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).parent / "static"
REVALIDATE = CacheControlHeader(no_cache=True)  # a new release shows up on the next load


@get("/", include_in_schema=False, media_type=MediaType.HTML, cache_control=REVALIDATE)
async def index() -> File:
    page = STATIC / "index.html"
    return File(page, filename=page.name, content_disposition_type="inline", media_type=MediaType.HTML)


static_files = create_static_files_router(path="/static", directories=[STATIC], cache_control=REVALIDATE)
