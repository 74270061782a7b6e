/*!
The OpenAI trigger provider: the trigger actions (triggers.md §4) as a
[`dify_plugin::TriggerProvider`], which the runtime's typed trigger layer serves
([`OpenAiTrigger::plugin`]). Each action reads the clock once: dispatch verifies and
routes a webhook and answers the sender, without IO and without waiting ([`crate::dispatch`]);
invoke turns one routed event into workflow variables and, where the node asks for it, adds the
object the event is about from OpenAI ([`crate::invoke`]); the constructor actions create, check
and delete the OpenAI webhook endpoint of API-key subscriptions ([`crate::constructor`]).
*/

use std::sync::Arc;
use std::time::Duration;

use dify_plugin::trigger::{
    self, CredentialsRequest, DispatchRequest, DispatchResponse, InvokeRequest, InvokeResponse, OptionsRequest,
    ParameterOption, StoredRequest, SubscribeRequest, TriggerCall, TriggerPlugin, TriggerProvider, Unsubscribed,
};
use dify_plugin::{ErrorData, Reply, Request, Session};

use crate::constructor::{Constructor, Stored};
use crate::dedupe::ReplayGuard;
use crate::dispatch::{Dispatcher, Payload};
use crate::invoke::Invoker;
use crate::openai::OpenAi;
use crate::shared_dedupe::SharedReplay;
use crate::subscription::SubscriptionProperties;

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

    /// This provider as the plugin the runtime serves, under [`PROVIDER`].
    pub fn plugin(self) -> TriggerPlugin<Self> {
        TriggerPlugin::new(PROVIDER, self)
    }

    /// Runs one action in a session without a daemon to call back (no shared replay memory): the
    /// reply chunk, or the error the daemon would be sent.
    pub async fn handle_request(&self, request: &Request) -> Reply {
        trigger::answer(self, TriggerCall::parse(request)?, &Session::detached()).await
    }

    /// `dispatch_trigger_event` alone, synchronously: it does no IO and never waits.
    ///
    /// Errors: the request's, or a request that is not a dispatch.
    pub fn dispatch_request(&self, request: &Request) -> Reply {
        match TriggerCall::parse(request)? {
            TriggerCall::Dispatch(dispatch) => dify_plugin::reply(&self.dispatcher((self.clock)()).dispatch(&dispatch)),
            _ => Err(ErrorData::new("TriggerError", "not a dispatch_trigger_event request")),
        }
    }

    fn dispatcher(&self, now: i64) -> Dispatcher<'_> {
        Dispatcher { replay: &self.replay, shared: &self.shared, now }
    }

    /// The constructor actions at this action's `now` (the one clock read of the action).
    fn constructor(&self) -> Constructor<'_> {
        Constructor { api: &self.api, now: (self.clock)(), budget: self.api_budget }
    }
}

/// The trigger actions (triggers.md §4). Each reads the clock once, at its start.
impl TriggerProvider for OpenAiTrigger {
    type Properties = SubscriptionProperties;
    type Payload = Payload;

    async fn dispatch(
        &self,
        request: DispatchRequest<'_, SubscriptionProperties>,
        session: &Session,
    ) -> Result<DispatchResponse<Payload>, ErrorData> {
        let dispatcher = self.dispatcher((self.clock)());
        // Without a daemon to call back (a detached or serverless session) the process's memory is
        // the only replay memory.
        if session.can_call_back() {
            Ok(Box::pin(dispatcher.dispatch_shared(&request, session)).await)
        } else {
            Ok(dispatcher.dispatch(&request))
        }
    }

    async fn invoke(
        &self,
        request: InvokeRequest<'_, SubscriptionProperties>,
        _session: &Session,
    ) -> Result<InvokeResponse, ErrorData> {
        let invoker = Invoker { api: &self.api, now: (self.clock)(), budget: self.api_budget };
        Ok(invoker.invoke(request).await?)
    }

    async fn validate_credentials(&self, request: CredentialsRequest, _session: &Session) -> Result<(), ErrorData> {
        Ok(self.constructor().validate(request).await?)
    }

    async fn subscribe(&self, request: SubscribeRequest, _session: &Session) -> Result<Stored, ErrorData> {
        Ok(self.constructor().subscribe(request).await?)
    }

    async fn unsubscribe(
        &self,
        request: StoredRequest<SubscriptionProperties>,
        _session: &Session,
    ) -> Result<Unsubscribed, ErrorData> {
        Ok(self.constructor().unsubscribe(request).await)
    }

    async fn refresh(
        &self,
        request: StoredRequest<SubscriptionProperties>,
        _session: &Session,
    ) -> Result<Stored, ErrorData> {
        Ok(self.constructor().refresh(request).await?)
    }

    async fn parameter_options(
        &self,
        request: OptionsRequest,
        _session: &Session,
    ) -> Result<Vec<ParameterOption>, ErrorData> {
        Ok(self.constructor().options(request).await?)
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it): the one reading of the system
/// clock, behind [`OpenAiTrigger::with_system_clock`] (and the commands' signing times).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
