"""The HTML data docs of a quality run: where GE writes them and which page to link.

Docs are a convenience next to the quality result, with their own failure mode (GE's renderers
raise anything): keeping them here keeps that best-effort handling out of validation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

logger = logging.getLogger(__name__)

DOCS_SITE = "playbook"


def use_docs_site(context: AbstractDataContext, docs_dir: Path) -> None:
    """Make ``docs_dir`` the context's only data docs site (it replaces GE's ``local_site``)."""
    for site in list(context.list_data_docs_sites()):
        context.delete_data_docs_site(site)
    docs_dir.mkdir(parents=True, exist_ok=True)
    context.add_data_docs_site(
        DOCS_SITE,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )


def build_docs(context: AbstractDataContext) -> str | None:
    """Write the data docs and return this validation's page (else the index), or None.

    Docs are a convenience: a rendering error is logged and must not hide the quality result.
    """
    try:
        index = context.build_data_docs(site_names=[DOCS_SITE]).get(DOCS_SITE)
        keys = context.validation_results_store.list_keys()
        urls = (
            context.get_docs_sites_urls(resource_identifier=keys[-1], site_name=DOCS_SITE)
            if keys
            else []
        )
    except Exception:  # GE renderers raise anything; the quality result matters more
        logger.warning("quality: building data docs failed", exc_info=True)
        return None
    for url in [*(entry.get("site_url") for entry in urls), index]:
        path = url_to_path(url)
        if path is not None and Path(path).is_file():
            return path
    return None


def url_to_path(url: str | None) -> str | None:
    """A local path from GE's ``file://`` site URL."""
    if not url:
        return None
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else None
