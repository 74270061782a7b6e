/*!
The OpenAI trigger provider: the trigger actions (triggers.md §4) as a [`dify_plugin::Plugin`].
[`OpenAiTrigger::handle_in`] reads the clock once per action and routes it: dispatch verifies and
routes a webhook and answers the sender, without IO and without waiting ([`crate::dispatch`]);
invoke turns one routed event into workflow variables and, where the node asks for it, adds the
object the event is about from OpenAI ([`crate::invoke`]); the constructor actions create, check
and delete the OpenAI webhook endpoint of API-key subscriptions ([`crate::constructor`]).
*/

use std::sync::Arc;
use std::time::Duration;

use dify_plugin::{Action, ErrorData, Plugin, Reply, Request, Session};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::constructor::{self, Constructor};
use crate::dedupe::ReplayGuard;
use crate::dispatch::Dispatcher;
use crate::error::PluginError;
use crate::invoke::{InvokeRequest, Invoker};
use crate::openai::OpenAi;
use crate::shared_dedupe::SharedReplay;

pub use crate::dispatch::MAX_BODY_BYTES;

/// Provider name as declared in `provider/openai_trigger.yaml`.
pub const PROVIDER: &str = "openai_trigger";
/// What one action may spend on OpenAI (an invoke fetching details, a subscribe, a refresh…), all
/// attempts and waits included, unless `OPENAI_TRIGGER_API_TIMEOUT` says otherwise. Well inside the
/// daemon's own timeout.
pub const DEFAULT_API_BUDGET: Duration = Duration::from_secs(20);

/// Seconds since the Unix epoch; injected so tests control time. Each action reads it once, at
/// its start, and everything the action decides by the time uses that one `now`.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The provider: its replay memory (in process, and shared through the daemon's storage), its
/// clock and its OpenAI client.
pub struct OpenAiTrigger {
    replay: ReplayGuard,
    shared: SharedReplay,
    clock: Clock,
    api: OpenAi,
    api_budget: Duration,
}

impl OpenAiTrigger {
    pub fn new(clock: Clock) -> Self {
        OpenAiTrigger {
            replay: ReplayGuard::default(),
            shared: SharedReplay::default(),
            clock,
            api: OpenAi::default(),
            api_budget: DEFAULT_API_BUDGET,
        }
    }

    pub fn with_system_clock() -> Self {
        Self::new(Arc::new(unix_now))
    }

    /// The time one action may spend on OpenAI (all retries and waits included).
    pub fn with_api_budget(mut self, budget: Duration) -> Self {
        self.api_budget = budget;
        self
    }

    /// Runs one action without a daemon to call back (no shared replay memory): the reply chunk,
    /// or why there is none.
    pub async fn handle_request(&self, request: &Request) -> Result<Box<RawValue>, PluginError> {
        self.handle_in(request, None).await
    }

    /// Runs one action in `session`, whose storage holds the replay memory shared by every process.
    pub async fn handle_in(&self, request: &Request, session: Option<&Session>) -> Result<Box<RawValue>, PluginError> {
        let Some(action) = request.action() else {
            return Err(PluginError::MissingField { action: Action::Other(String::new()), field: "action" });
        };
        // The one clock read of this action.
        let now = (self.clock)();
        let constructor = Constructor { api: &self.api, now, budget: self.api_budget };
        let shape = |err: serde_json::Error| PluginError::wrong_shape(action, &err);
        // The actions that may call OpenAI or the daemon are boxed: their futures are large, and
        // every session's future (which the runtime allocates and moves) would otherwise carry them.
        match action {
            Action::DispatchTriggerEvent => match session {
                Some(session) => to_raw(&self.dispatcher(now).dispatch_shared(request, session).await?),
                None => to_raw(&self.dispatcher(now).dispatch(request)?),
            },
            Action::InvokeTriggerEvent => {
                let data: InvokeRequest<'_> = request.parse().map_err(shape)?;
                let invoker = Invoker { api: &self.api, now, budget: self.api_budget };
                to_raw(&Box::pin(invoker.invoke(data)).await?)
            }
            Action::ValidateTriggerCredentials => {
                to_raw(&Box::pin(constructor.validate(request.parse().map_err(shape)?)).await?)
            }
            Action::SubscribeTrigger => {
                to_raw(&Box::pin(constructor.subscribe(request.parse().map_err(shape)?)).await?)
            }
            Action::UnsubscribeTrigger => {
                let data = request.parse().map_err(shape)?;
                to_raw(&UnsubscribeResponse { subscription: Box::pin(constructor.unsubscribe(data)).await })
            }
            Action::RefreshTrigger => to_raw(&Box::pin(constructor.refresh(request.parse().map_err(shape)?)).await?),
            Action::FetchParameterOptions => {
                to_raw(&Box::pin(constructor.options(request.parse().map_err(shape)?)).await?)
            }
            other => Err(PluginError::UnknownAction { action: other.as_str().to_owned() }),
        }
    }

    /// `dispatch_trigger_event` alone, synchronously: it does no IO and never waits.
    pub fn dispatch_request(&self, request: &Request) -> Result<Box<RawValue>, PluginError> {
        to_raw(&self.dispatcher((self.clock)()).dispatch(request)?)
    }

    fn dispatcher(&self, now: i64) -> Dispatcher<'_> {
        Dispatcher { replay: &self.replay, shared: &self.shared, now }
    }
}

impl Plugin for OpenAiTrigger {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        self.handle_in(&request, Some(session)).await.map_err(ErrorData::from)
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it): the one reading of the system
/// clock, behind [`OpenAiTrigger::with_system_clock`] (and the commands' signing times).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `unsubscribe_trigger`'s answer: the result under `subscription` (triggers.md §4.5).
#[derive(Serialize)]
struct UnsubscribeResponse {
    subscription: constructor::Unsubscribed,
}

fn to_raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, PluginError> {
    // Our response types have string keys only: this cannot fail, and if it did it would be an
    // error answer, not a panic.
    serde_json::value::to_raw_value(value).map_err(|err| PluginError::Encoding { detail: err.to_string() })
}
