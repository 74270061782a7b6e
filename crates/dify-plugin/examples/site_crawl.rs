//! A datasource plugin of the simplest variant, `website_crawl`, mirroring the Python SDK's
//! `firecrawl_datasource` example (plugin-kinds.md §6.4): instead of a crawling service, the crawl
//! runs here, over HTTP — breadth-first from the start URL, following links on the same site only,
//! at most `limit` pages — and reports progress as the Dify knowledge pipeline expects:
//! `processing` snapshots with counts, then one `completed` snapshot with every page (its title,
//! meta description and text). Its YAML is in `examples/site_crawl/`.
//!
//! The credential `access_token` (it must start with `crawl-`) is sent to the site as a bearer
//! token, so private sites can be crawled.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use dify_plugin::datasource::{
    CrawlInput, CrawlOutput, CrawlProgress, CrawlStatus, DatasourcePlugin, DatasourceProvider, DatasourceRequest,
    NoInput, WebInfo, WebsiteCrawl,
};
use dify_plugin::{ErrorData, ServeOptions, Session};
use reqwest::Url;

/// Characters of text kept per page, and of a title or description.
const MAX_CONTENT: usize = 32 * 1024;
const MAX_LABEL: usize = 1024;
/// Bytes of pages (as JSON) the `completed` snapshot may carry: it is one line, and the daemon
/// kills a plugin over 5 MiB (plugin-kinds.md §6.2; the runtime refuses lines of 4 MiB). The crawl
/// stops when the next page would pass it.
const MAX_SNAPSHOT: usize = 3 << 20;
/// Bytes read per page.
const MAX_PAGE: usize = 2 << 20;

struct Provider;

impl DatasourceProvider for Provider {
    async fn validate_credentials(&self, request: DatasourceRequest<NoInput>, _: &Session) -> Result<(), ErrorData> {
        match request.credentials.get("access_token") {
            Some(token) if token.starts_with("crawl-") => Ok(()),
            _ => Err(ErrorData::new(
                "ToolProviderCredentialValidationError",
                "the access token must start with \"crawl-\"",
            )),
        }
    }
}

struct Crawler {
    http: reqwest::Client,
}

/// What one page gave: its info and the links on it.
struct Page {
    info: WebInfo,
    links: Vec<Url>,
}

impl Crawler {
    fn new() -> Crawler {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .expect("the HTTP client builds");
        Crawler { http }
    }

    /// Fetches `url`; `None` for a page that is not HTML. Errors name the URL and the status.
    async fn fetch(&self, url: &Url, token: &str) -> Result<Option<Page>, String> {
        let shown = shown(url);
        let mut response = self.http.get(url.clone()).bearer_auth(token).send().await.map_err(|err| {
            let why = if err.is_redirect() {
                "too many redirects"
            } else if err.is_timeout() {
                "timed out"
            } else if err.is_builder() {
                "is not a request we can send (a bad URL or access token)"
            } else {
                "could not be reached"
            };
            format!("{shown}: {why}")
        })?;
        if !response.status().is_success() {
            return Err(format!("{shown} answered HTTP {}", response.status().as_u16()));
        }
        // A redirect off the site: not this site's page.
        if response.url().origin() != url.origin() {
            return Ok(None);
        }
        let url = response.url().clone();
        let html_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if !html_type {
            return Ok(None);
        }
        let mut body = Vec::new();
        while let Some(piece) = response.chunk().await.map_err(|_| format!("{shown} broke off while it was read"))? {
            body.extend_from_slice(&piece);
            if body.len() > MAX_PAGE {
                break;
            }
        }
        let html = String::from_utf8_lossy(&body);
        let links = links(&html).into_iter().filter_map(|href| url.join(&href).ok()).collect();
        let info = WebInfo {
            source_url: url.to_string(),
            content: truncate(&text_of(&html), MAX_CONTENT),
            title: truncate(&element_text(&html, "title").unwrap_or_default(), MAX_LABEL),
            description: truncate(&meta_description(&html).unwrap_or_default(), MAX_LABEL),
        };
        Ok(Some(Page { info, links }))
    }
}

/// A URL as errors show it: without user name and password.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

/// Every quoted `href` value of the page, outside `<script>` and `<style>`.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let visible = without(html, &["script", "style"]);
    let mut rest = visible.as_str();
    while let Some(at) = rest.find("href=") {
        rest = &rest[at + 5..];
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
        let Some(end) = rest[1..].find(quote) else { break };
        out.push(rest[1..1 + end].to_owned());
        rest = &rest[1 + end..];
    }
    out
}

/// `html` without the elements named in `skipped` (their content included).
fn without(html: &str, skipped: &[&str]) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut i = 0;
    while let Some(at) = lower[i..].find('<') {
        let start = i + at;
        out.push_str(&html[i..start]);
        let tag = skipped.iter().find(|tag| lower[start + 1..].starts_with(**tag));
        let end = match tag {
            Some(tag) => lower[start..]
                .find(&format!("</{tag}"))
                .and_then(|c| lower[start + c..].find('>').map(|e| start + c + e + 1)),
            None => lower[start..].find('>').map(|e| {
                out.push_str(&html[start..start + e + 1]);
                start + e + 1
            }),
        };
        i = end.unwrap_or(html.len());
    }
    if i < html.len() {
        out.push_str(&html[i..]);
    }
    out
}

/// The text inside the first `<tag …>…</tag>`.
fn element_text(html: &str, tag: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find(&format!("<{tag}"))?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find(&format!("</{tag}"))?;
    Some(collapse(&decode(&html[open_end..close])))
}

fn meta_description(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("<meta") {
        let start = from + at;
        let end = start + lower[start..].find('>')?;
        let tag = &html[start..end];
        if tag.to_ascii_lowercase().contains("name=\"description\"") {
            let content = tag.find("content=\"")? + 9;
            let close = tag[content..].find('"')?;
            return Some(decode(&tag[content..content + close]));
        }
        from = end;
    }
    None
}

/// Elements that start a new line of text; the others (`<a>`, `<b>`, `<span>`, …) run on.
const BLOCKS: [&str; 24] = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "td",
    "th",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "main",
    "blockquote",
    "pre",
];

/// The page's visible text: tags removed (block elements separate words, inline ones do not),
/// `<script>`, `<style>` and `<head>` skipped, whitespace collapsed.
fn text_of(html: &str) -> String {
    let visible = without(html, &["script", "style", "head"]);
    let lower = visible.to_ascii_lowercase();
    let mut text = String::new();
    let mut i = 0;
    while let Some(at) = lower[i..].find('<') {
        let start = i + at;
        text.push_str(&visible[i..start]);
        let name: String =
            lower[start + 1..].trim_start_matches('/').chars().take_while(char::is_ascii_alphanumeric).collect();
        if BLOCKS.contains(&name.as_str()) {
            text.push(' ');
        }
        i = lower[start..].find('>').map_or(visible.len(), |e| start + e + 1);
    }
    if i < visible.len() {
        text.push_str(&visible[i..]);
    }
    collapse(&decode(&text))
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

impl WebsiteCrawl for Crawler {
    async fn crawl(&self, request: DatasourceRequest<CrawlInput>, out: CrawlOutput) -> Result<(), ErrorData> {
        let parameters = request.parameters();
        let start: String = parameters.parse("url")?;
        let limit: f64 = parameters.optional("limit")?.unwrap_or(10.0);
        let limit = (limit as u64).clamp(1, 100);
        let token = request.credentials.get("access_token").unwrap_or_default().to_owned();
        let start = Url::parse(&start)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ErrorData::new("ValueError", "the start URL must be an http(s) URL"))?;
        let origin = start.origin();

        let mut queue = VecDeque::from([start.clone()]);
        let mut seen = HashSet::from([start.clone()]);
        let mut pages: Vec<WebInfo> = Vec::new();
        let mut snapshot_bytes = 0usize;
        let progress = |pages: &[WebInfo], total: usize| CrawlProgress {
            status: CrawlStatus::Processing,
            web_info_list: Vec::new(),
            total: total as u64,
            completed: pages.len() as u64,
        };
        out.send(&progress(&pages, 1)).await?;
        while let Some(url) = queue.pop_front() {
            if pages.len() as u64 >= limit {
                break;
            }
            let page = match self.fetch(&url, &token).await {
                Ok(page) => page,
                // The start page is the crawl: its failure is the answer. Others are skipped.
                Err(why) if url == start => return Err(ErrorData::new("ValueError", why)),
                Err(_) => None,
            };
            let Some(page) = page else { continue };
            for mut link in page.links {
                link.set_fragment(None);
                if link.origin() == origin && seen.len() < 10_000 && seen.insert(link.clone()) {
                    queue.push_back(link);
                }
            }
            let size = serde_json::to_string(&page.info).map_or(usize::MAX, |json| json.len());
            if snapshot_bytes + size > MAX_SNAPSHOT {
                break;
            }
            snapshot_bytes += size;
            pages.push(page.info);
            let total = (pages.len() + queue.len()).min(limit as usize);
            out.send(&progress(&pages, total)).await?;
        }
        let done = pages.len() as u64;
        out.send(&CrawlProgress { status: CrawlStatus::Completed, web_info_list: pages, total: done, completed: done })
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let declaration = dify_plugin::build::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/site_crawl"))
        .expect("the example's YAML is valid")
        .declaration;
    let plugin = DatasourcePlugin::new("site_crawl", Provider).website_crawl("crawl", Crawler::new());
    plugin.check(&declaration).expect("every declared datasource has a handler, and only those");
    dify_plugin::run(Arc::new(plugin), move || declaration, ServeOptions::default()).await
}
