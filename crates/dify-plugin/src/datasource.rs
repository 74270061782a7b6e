/*!
Typed datasources (plugin-kinds.md §6): the knowledge-pipeline sources a datasource provider
offers, by `provider_type`. A [`DatasourcePlugin`] serves one provider: its credential check, its
OAuth (§8), and each datasource by name with the trait of its variant:

| action | request input | trait method | answer |
|---|---|---|---|
| `validate_datasource_credentials` | – | [`DatasourceProvider::validate_credentials`] | `{"result":true}` |
| `invoke_website_datasource_get_crawl` | [`CrawlInput`] | [`WebsiteCrawl::crawl`] through [`CrawlOutput`] | [`CrawlProgress`] snapshots, the last `completed` |
| `invoke_online_document_datasource_get_pages` | [`CrawlInput`] (its parameters) | [`OnlineDocument::pages`] | `{"result":[`[`DocumentWorkspace`]`]}` |
| `invoke_online_document_datasource_get_page_content` | [`PageInput`] | [`OnlineDocument::page_content`] through [`DatasourceOutput`] | messages |
| `invoke_online_drive_browse_files` | [`BrowseInput`] | [`OnlineDrive::browse`] | `{"result":[`[`DriveBucket`]`]}` |
| `invoke_online_drive_download_file` | [`DownloadInput`] | [`OnlineDrive::download`] through [`DatasourceOutput`] | messages (a blob, whole) |

`result` lists are never `null` (the daemon refuses it, §6.2). Dify does not merge `blob_chunk`s
for datasources (§6.2, open question 1), so [`DatasourceOutput`] sends a blob whole: a file over
about 3.7 MiB cannot fit one line, and is refused with `OutputTooLargeError` rather than dropped.
*/

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::action::Action;
use crate::declaration::{Declaration, Mismatch, ProviderKind};
pub use crate::lenient::NoInput;
use crate::lenient::{Object, object_or_null};
use crate::oauth::OAuthProvider;
use crate::router::{BoxFuture, DynOAuth};
use crate::session::{Plugin, Reply, Request, Session, reply};
use crate::tool::{Credentials, Parameters, ToolMessage};
use crate::wire::ErrorData;

/// One datasource request: provider, datasource, credentials, and the action's `input`, which it
/// dereferences to.
#[derive(Debug, Clone)]
pub struct DatasourceRequest<I> {
    pub provider: String,
    /// The datasource's `identity.name` (empty for the credential check).
    pub datasource: String,
    pub credentials: Credentials,
    pub input: I,
}

impl<I> Deref for DatasourceRequest<I> {
    type Target = I;

    fn deref(&self) -> &I {
        &self.input
    }
}

/// The user's `datasource_parameters` (website crawl, online document pages).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CrawlInput {
    #[serde(default, deserialize_with = "object_or_null")]
    pub datasource_parameters: Object,
}

impl CrawlInput {
    /// The parameters, with the typed readers tools use.
    pub fn parameters(&self) -> Parameters {
        Parameters(self.datasource_parameters.clone())
    }
}

/// Which page of an online document source (`get_page_content`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageRef {
    #[serde(default)]
    pub workspace_id: String,
    #[serde(default)]
    pub page_id: String,
    /// `page`, `database`, … as the source lists it.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// `invoke_online_document_datasource_get_page_content`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PageInput {
    #[serde(default)]
    pub page: PageRef,
}

/// One page of an online drive listing request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrowseRequest {
    /// `null` at the top level of a drive without buckets.
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: String,
    /// At most this many entries (the daemon refuses 0).
    #[serde(default)]
    pub max_keys: u64,
    /// What the previous page's [`DriveBucket::next_page_parameters`] said.
    #[serde(default)]
    pub next_page_parameters: Option<Object>,
}

/// `invoke_online_drive_browse_files`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BrowseInput {
    #[serde(default)]
    pub request: BrowseRequest,
}

/// Which file to download.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DownloadRequest {
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub id: String,
}

/// `invoke_online_drive_download_file`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DownloadInput {
    #[serde(default)]
    pub request: DownloadRequest,
}

/// A crawl's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrawlStatus {
    Processing,
    Completed,
}

/// One crawled page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebInfo {
    pub source_url: String,
    pub content: String,
    pub title: String,
    pub description: String,
}

/// One progress snapshot of a crawl (`{"result":{status, web_info_list, total, completed}}`):
/// `processing` ones as the crawl goes, a `completed` one last with every page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrawlProgress {
    pub status: CrawlStatus,
    pub web_info_list: Vec<WebInfo>,
    /// Pages to crawl, as far as known.
    pub total: u64,
    /// Pages crawled.
    pub completed: u64,
}

/// Where a crawl reports its progress.
#[derive(Debug, Clone)]
pub struct CrawlOutput {
    session: Session,
}

impl CrawlOutput {
    /// Sends one snapshot.
    ///
    /// Errors: `OutputTooLargeError` when the snapshot passes the line limit (cap each page's
    /// content), or when the output is closed.
    pub async fn send(&self, progress: &CrawlProgress) -> Result<(), ErrorData> {
        stream_value(&self.session, &json!({ "result": progress })).await
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// One page of an online document workspace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentPage {
    pub page_id: String,
    pub page_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_icon: Option<Value>,
    #[serde(rename = "type")]
    pub kind: String,
    pub last_edited_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// One workspace of an online document source and its pages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentWorkspace {
    pub workspace_id: String,
    pub workspace_name: String,
    pub workspace_icon: String,
    pub total: u64,
    pub pages: Vec<DocumentPage>,
}

/// One file or folder of an online drive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriveFile {
    pub id: String,
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// `file` or `folder`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One bucket's listing page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriveBucket {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub files: Vec<DriveFile>,
    pub is_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_parameters: Option<Object>,
}

/// Where page content and downloads go: messages as tools send them, blobs whole (§6.2).
#[derive(Debug, Clone)]
pub struct DatasourceOutput {
    session: Session,
}

impl DatasourceOutput {
    /// Sends `message` (a blob in one `blob` message, not chunked: Dify does not merge chunks
    /// for datasources).
    ///
    /// Errors: `OutputTooLargeError` when it passes the line limit, or the output is closed.
    pub async fn send(&self, message: ToolMessage) -> Result<(), ErrorData> {
        let raw = serde_json::value::RawValue::from_string(message.whole_chunk())
            .map_err(|_| ErrorData::new("InternalError", "a message could not be encoded"))?;
        Ok(self.session.stream(&raw).await?)
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
}

async fn stream_value(session: &Session, value: &Value) -> Result<(), ErrorData> {
    let raw = serde_json::value::to_raw_value(value)
        .map_err(|_| ErrorData::new("InternalError", "a chunk could not be encoded"))?;
    Ok(session.stream(&raw).await?)
}

/// The datasource provider: its credential check.
pub trait DatasourceProvider: Send + Sync + 'static {
    /// `Ok` answers `{"result":true}`; refuse with `ToolProviderCredentialValidationError` (what
    /// the Python SDK raises) and a message the UI shows.
    fn validate_credentials(
        &self,
        request: DatasourceRequest<NoInput>,
        session: &Session,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send;
}

/// A `website_crawl` datasource.
pub trait WebsiteCrawl: Send + Sync + 'static {
    /// Crawls, sending [`CrawlProgress`] snapshots; the last one `completed` with every page.
    fn crawl(
        &self,
        request: DatasourceRequest<CrawlInput>,
        out: CrawlOutput,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send;
}

/// An `online_document` datasource.
pub trait OnlineDocument: Send + Sync + 'static {
    fn pages(
        &self,
        request: DatasourceRequest<CrawlInput>,
        session: &Session,
    ) -> impl Future<Output = Result<Vec<DocumentWorkspace>, ErrorData>> + Send;

    fn page_content(
        &self,
        request: DatasourceRequest<PageInput>,
        out: DatasourceOutput,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send;
}

/// An `online_drive` datasource.
pub trait OnlineDrive: Send + Sync + 'static {
    fn browse(
        &self,
        request: DatasourceRequest<BrowseInput>,
        session: &Session,
    ) -> impl Future<Output = Result<Vec<DriveBucket>, ErrorData>> + Send;

    fn download(
        &self,
        request: DatasourceRequest<DownloadInput>,
        out: DatasourceOutput,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send;
}

trait DynProvider: Send + Sync + 'static {
    fn validate<'a>(&'a self, r: DatasourceRequest<NoInput>, s: &'a Session) -> BoxFuture<'a, Result<(), ErrorData>>;
}

impl<P: DatasourceProvider> DynProvider for P {
    fn validate<'a>(&'a self, r: DatasourceRequest<NoInput>, s: &'a Session) -> BoxFuture<'a, Result<(), ErrorData>> {
        Box::pin(self.validate_credentials(r, s))
    }
}

trait DynSource: Send + Sync + 'static {
    fn serve<'a>(&'a self, action: &'a Action, data: &'a Value, session: &'a Session) -> BoxFuture<'a, Reply>;
}

struct Crawl<T>(T);
struct Document<T>(T);
struct Drive<T>(T);

fn wrong_variant(action: &Action, variant: &str) -> ErrorData {
    ErrorData::new(
        "ValueError",
        format!("action {action} does not apply to a {variant} datasource (plugin-kinds.md §6.2)"),
    )
}

impl<T: WebsiteCrawl> DynSource for Crawl<T> {
    fn serve<'a>(&'a self, action: &'a Action, data: &'a Value, session: &'a Session) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            if *action != Action::InvokeWebsiteDatasourceGetCrawl {
                return Err(wrong_variant(action, "website_crawl"));
            }
            self.0.crawl(request_of(data)?, CrawlOutput { session: session.clone() }).await?;
            session.mark_streamed();
            reply(&Value::Null)
        })
    }
}

impl<T: OnlineDocument> DynSource for Document<T> {
    fn serve<'a>(&'a self, action: &'a Action, data: &'a Value, session: &'a Session) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            match action {
                Action::InvokeOnlineDocumentDatasourceGetPages => {
                    reply(&json!({"result": self.0.pages(request_of(data)?, session).await?}))
                }
                Action::InvokeOnlineDocumentDatasourceGetPageContent => {
                    self.0.page_content(request_of(data)?, DatasourceOutput { session: session.clone() }).await?;
                    session.mark_streamed();
                    reply(&Value::Null)
                }
                other => Err(wrong_variant(other, "online_document")),
            }
        })
    }
}

impl<T: OnlineDrive> DynSource for Drive<T> {
    fn serve<'a>(&'a self, action: &'a Action, data: &'a Value, session: &'a Session) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            match action {
                Action::InvokeOnlineDriveBrowseFiles => {
                    reply(&json!({"result": self.0.browse(request_of(data)?, session).await?}))
                }
                Action::InvokeOnlineDriveDownloadFile => {
                    self.0.download(request_of(data)?, DatasourceOutput { session: session.clone() }).await?;
                    session.mark_streamed();
                    reply(&Value::Null)
                }
                other => Err(wrong_variant(other, "online_drive")),
            }
        })
    }
}

fn request_of<I: DeserializeOwned>(data: &Value) -> Result<DatasourceRequest<I>, ErrorData> {
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let input = I::deserialize(data).map_err(|err| {
        ErrorData::new(
            "InvalidRequestError",
            format!("the datasource request has a field of the wrong type ({})", crate::lenient::expected_of(&err)),
        )
    })?;
    Ok(DatasourceRequest {
        provider: text("provider"),
        datasource: text("datasource"),
        credentials: Credentials::from_data(data)?,
        input,
    })
}

/// A [`Plugin`] serving one datasource provider.
pub struct DatasourcePlugin {
    provider_name: String,
    provider: Box<dyn DynProvider>,
    sources: HashMap<String, Arc<dyn DynSource>>,
    oauth: Option<Box<dyn DynOAuth>>,
}

impl DatasourcePlugin {
    /// A plugin for provider `name` (its `identity.name`).
    pub fn new(name: impl Into<String>, provider: impl DatasourceProvider) -> Self {
        DatasourcePlugin {
            provider_name: name.into(),
            provider: Box::new(provider),
            sources: HashMap::new(),
            oauth: None,
        }
    }

    /// Serves the `website_crawl` datasource `name`.
    #[must_use]
    pub fn website_crawl(mut self, name: &str, source: impl WebsiteCrawl) -> Self {
        self.sources.insert(name.to_owned(), Arc::new(Crawl(source)));
        self
    }

    /// Serves the `online_document` datasource `name`.
    #[must_use]
    pub fn online_document(mut self, name: &str, source: impl OnlineDocument) -> Self {
        self.sources.insert(name.to_owned(), Arc::new(Document(source)));
        self
    }

    /// Serves the `online_drive` datasource `name`.
    #[must_use]
    pub fn online_drive(mut self, name: &str, source: impl OnlineDrive) -> Self {
        self.sources.insert(name.to_owned(), Arc::new(Drive(source)));
        self
    }

    /// Serves the provider's `oauth` actions (plugin-kinds.md §8).
    #[must_use]
    pub fn oauth(mut self, oauth: impl OAuthProvider) -> Self {
        self.oauth = Some(Box::new(oauth));
        self
    }

    /// Checks that every declared datasource has a handler and every handler a declaration.
    ///
    /// Errors: [`Mismatch`] listing each difference.
    pub fn check(&self, declaration: &Declaration) -> Result<(), Mismatch> {
        let declared: Vec<String> = declaration
            .providers_of(ProviderKind::Datasource)
            .flat_map(|p| p["datasources"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s.pointer("/identity/name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let mut problems = Vec::new();
        for name in &declared {
            if !self.sources.contains_key(name) {
                problems.push(format!("datasource {name} is declared but has no handler"));
            }
        }
        for name in self.sources.keys() {
            if !declared.contains(name) {
                problems.push(format!("datasource {name} has a handler but is not declared"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Mismatch(problems)) }
    }
}

impl Plugin for DatasourcePlugin {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        let Some(action) = request.action().cloned() else {
            return Err(ErrorData::new("NotImplementedError", "the request has no action"));
        };
        if matches!(action, Action::GetAuthorizationUrl | Action::GetCredentials | Action::RefreshCredentials) {
            return match &self.oauth {
                Some(oauth) => oauth.serve(&request, session).await,
                None => Err(ErrorData::new(
                    "ValueError",
                    format!("Provider `{}` does not support OAuth", self.provider_name),
                )),
            };
        }
        let data: Value = request.parse().map_err(|err| {
            ErrorData::new(
                "InvalidRequestError",
                format!("the datasource request is not valid JSON (line {}, column {})", err.line(), err.column()),
            )
        })?;
        let provider = data.get("provider").and_then(Value::as_str).unwrap_or_default();
        if provider != self.provider_name {
            return Err(ErrorData::new(
                "ValueError",
                format!("Provider `{}` not found", crate::wire::truncate(provider, 128)),
            ));
        }
        if action == Action::ValidateDatasourceCredentials {
            self.provider.validate(request_of(&data)?, session).await?;
            return reply(&json!({"result": true}));
        }
        let datasource = data.get("datasource").and_then(Value::as_str).unwrap_or_default();
        let Some(source) = self.sources.get(datasource).cloned() else {
            if matches!(action, Action::Other(_)) || !is_datasource_action(&action) {
                return Err(ErrorData::new(
                    "NotImplementedError",
                    format!("action {action} is not served by a datasource plugin"),
                ));
            }
            return Err(ErrorData::new(
                "ValueError",
                format!("Datasource `{}` not found", crate::wire::truncate(datasource, 128)),
            ));
        };
        source.serve(&action, &data, session).await
    }
}

fn is_datasource_action(action: &Action) -> bool {
    matches!(
        action,
        Action::InvokeWebsiteDatasourceGetCrawl
            | Action::InvokeOnlineDocumentDatasourceGetPages
            | Action::InvokeOnlineDocumentDatasourceGetPageContent
            | Action::InvokeOnlineDriveBrowseFiles
            | Action::InvokeOnlineDriveDownloadFile
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_and_listings_have_the_shapes_dify_reads() {
        let progress = CrawlProgress { status: CrawlStatus::Processing, web_info_list: vec![], total: 3, completed: 1 };
        assert_eq!(
            serde_json::to_value(&progress).unwrap(),
            json!({"status": "processing", "web_info_list": [], "total": 3, "completed": 1})
        );
        let bucket = DriveBucket {
            bucket: None,
            files: vec![DriveFile { id: "f".into(), name: "a.txt".into(), size: 3, kind: "file".into() }],
            is_truncated: false,
            next_page_parameters: None,
        };
        assert_eq!(
            serde_json::to_value(&bucket).unwrap(),
            json!({"files": [{"id": "f", "name": "a.txt", "size": 3, "type": "file"}], "is_truncated": false})
        );
    }

    #[test]
    fn requests_read_leniently() {
        let data = json!({"provider": "p", "datasource": "d", "credentials": null,
            "request": {"bucket": null, "prefix": "docs/", "max_keys": 20, "next_page_parameters": null}});
        let request: DatasourceRequest<BrowseInput> = request_of(&data).unwrap();
        assert_eq!(request.request.prefix, "docs/");
        assert_eq!(request.request.max_keys, 20);
        let request: DatasourceRequest<CrawlInput> = request_of(&json!({"datasource_parameters": null})).unwrap();
        assert!(request.datasource_parameters.is_empty());
        let err = request_of::<PageInput>(&json!({"page": "secret-token"})).unwrap_err();
        assert!(!err.message.contains("secret-token"), "{}", err.message);
    }
}
