"""The `crawl` datasource, as `crates/dify-plugin/examples/site_crawl.rs`: breadth-first from the
start URL over HTTP, following links on the same site (scheme, host and port) only, at most `limit`
pages, with `processing` snapshots as it goes and one `completed` snapshot with every page."""

from collections import deque
from collections.abc import Generator, Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import requests

from dify_plugin.entities.datasource import WebsiteCrawlMessage, WebSiteInfo, WebSiteInfoDetail
from dify_plugin.interfaces.datasource.website import WebsiteCrawlDatasource

# Text kept per page: 100 pages stay well under the daemon's 5 MiB line.
MAX_CONTENT = 32 * 1024
# Bytes read per page.
MAX_PAGE = 2 << 20
TIMEOUT = (10, 30)

_http = requests.Session()
_http.max_redirects = 5


class _Page(HTMLParser):
    """Title, meta description, visible text (outside <head>, <script>, <style>; block elements
    separate words, inline ones do not) and hrefs."""

    SKIPPED = {"script", "style", "head"}
    # Elements that start a new line of text; the others (<a>, <b>, <span>, ...) run on.
    BLOCKS = {
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td", "th", "table",
        "section", "article", "header", "footer", "nav", "main", "blockquote", "pre",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.text: list[str] = []
        self.title: list[str] | None = None
        self.description = ""
        self._skipping: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "title" and self.title is None:
            self.title, self._in_title = [], True
        elif tag == "meta" and (values.get("name") or "").lower() == "description" and not self.description:
            self.description = values.get("content") or ""
        if tag in self.SKIPPED:
            self._skipping.append(tag)
        if values.get("href") and not (self._skipping and self._skipping[-1] in ("script", "style")):
            self.links.append(values["href"] or "")
        if tag in self.BLOCKS:
            self.text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self._skipping:
            last = len(self._skipping) - 1 - self._skipping[::-1].index(tag)
            del self._skipping[last:]
        if tag in self.BLOCKS:
            self.text.append(" ")

    def handle_data(self, data: str) -> None:
        if self._in_title and self.title is not None:
            self.title.append(data)
        if not self._skipping:
            self.text.append(data)


def collapse(text: str) -> str:
    return " ".join(text.split())


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), port


def normalise(url: str) -> str:
    url = urldefrag(url)[0]
    parts = urlsplit(url)
    return url if parts.path else parts._replace(path="/").geturl()


class CrawlDatasource(WebsiteCrawlDatasource):
    def _fetch(self, url: str, token: str) -> tuple[WebSiteInfoDetail, list[str]] | None:
        """Fetches `url`; None for a page that is not HTML. Errors name the URL and the status."""
        try:
            response = _http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT, stream=True)
        except requests.RequestException as e:
            raise ValueError(f"{url} could not be fetched") from e
        with response:
            if not 200 <= response.status_code < 300:
                raise ValueError(f"{url} answered HTTP {response.status_code}")
            if not response.headers.get("content-type", "").startswith("text/html"):
                return None
            body = b""
            try:
                for piece in response.iter_content(chunk_size=65536):
                    body += piece
                    if len(body) > MAX_PAGE:
                        break
            except requests.RequestException as e:
                raise ValueError(f"{url} broke off") from e
        page = _Page()
        page.feed(body.decode(response.encoding or "utf-8", "replace"))
        page.close()
        info = WebSiteInfoDetail(
            source_url=url,
            content=collapse("".join(page.text))[:MAX_CONTENT],
            title=collapse("".join(page.title or [])),
            description=page.description,
        )
        return info, [urljoin(url, href) for href in page.links]

    def _get_website_crawl(self, datasource_parameters: Mapping[str, Any]) -> Generator[WebsiteCrawlMessage, None, None]:
        start = str(datasource_parameters.get("url") or "")
        limit = min(max(int(float(datasource_parameters.get("limit") or 10)), 1), 100)
        token = str(self.runtime.credentials.get("access_token") or "")
        if urlsplit(start).scheme not in ("http", "https") or not urlsplit(start).hostname:
            raise ValueError("the start URL must be an http(s) URL")
        start = normalise(start)
        site = origin(start)

        queue = deque([start])
        seen = {start}
        pages: list[WebSiteInfoDetail] = []
        yield self.create_crawl_message(WebSiteInfo(status="processing", web_info_list=[], total=1, completed=0))
        while queue and len(pages) < limit:
            url = queue.popleft()
            try:
                fetched = self._fetch(url, token)
            except ValueError:
                # The start page is the crawl: its failure is the answer. Others are skipped.
                if url == start:
                    raise
                fetched = None
            if fetched is None:
                continue
            info, links = fetched
            for link in links:
                if not link.startswith(("http://", "https://")):
                    continue
                link = normalise(link)
                if origin(link) == site and len(seen) < 10_000 and link not in seen:
                    seen.add(link)
                    queue.append(link)
            pages.append(info)
            total = min(len(pages) + len(queue), limit)
            yield self.create_crawl_message(
                WebSiteInfo(status="processing", web_info_list=[], total=total, completed=len(pages))
            )
        yield self.create_crawl_message(
            WebSiteInfo(status="completed", web_info_list=pages, total=len(pages), completed=len(pages))
        )
