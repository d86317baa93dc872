//! [`Profile`]: what a stack's requests and responses are, so that the breaker, retry and
//! balance stages classify results and replay requests the right way, the deadline stage
//! finds a request's deadline and the fault stage builds a status answer.

use crate::retry_kind::{NoRetries, Retries, RetryKind};
use tower_prism_core::ConfigError;
use tower_prism_core::{DefaultClassifier, GrpcClassifier, GrpcCode, GrpcCodes, HttpClassifier};
use tower_prism_deadline::{AnyRequest, HttpRequest};
use tower_prism_fault::{EmptyHttpBody, FaultLayer, FaultLayerBuilder, GrpcStatus, NoStatus};
use tower_prism_limit::rate::{
    HttpHeaders, HttpKey, NoHeaders, RateLimitLayer, RateLimitLayerBuilder, SamePriority,
    UnitWeight, Unkeyed,
};
use tower_prism_retry::{
    CloneRequest, GrpcPushback, NoHint, ReplayBoxed, ReplayIdempotent, ReplayRequest,
    RetryAfterHeader,
};

/// How a stack's stages see its calls: the classifier the breaker, retry and balancer
/// share, how the retry stage copies a request, where it finds a response's retry-after
/// hint, where the deadline stage reads and writes a request's deadline, and how the fault
/// stage builds a response for a status fault.
///
/// Pick one with [`ReliabilityLayerBuilder::http`](crate::ReliabilityLayerBuilder::http),
/// [`http_server`](crate::ReliabilityLayerBuilder::http_server) or
/// [`classify`](crate::ReliabilityLayerBuilder::classify); [`Generic`] is the default.
/// Implement it for a protocol of your own.
pub trait Profile: Clone + Send + Sync + 'static {
    /// Decides what a result means
    /// ([`Classify`](tower_prism_core::Classify) over the response and a
    /// [`BoxError`](crate::BoxError)).
    type Classify: Clone + Send + Sync + 'static;
    /// Copies a request for a retry (a `ReplayRequest` of [`retry`](crate::retry)).
    type Replay: Clone + Send + Sync + 'static;
    /// Reads a retry-after hint off a response
    /// ([`ResponseHint`](tower_prism_retry::ResponseHint)).
    type Hint: Clone + Send + Sync + 'static;
    /// Reads and writes a request's deadline (a [`Carrier`](crate::deadline::Carrier));
    /// with [`AnyRequest`], which reads and writes none, a policy's `deadline.header` is
    /// refused at build and at reload.
    type Carrier: Clone + Send + Sync + 'static;
    /// Builds the response of a status fault (an
    /// [`InjectStatus`](crate::fault::InjectStatus)); [`NoStatus`] refuses status faults,
    /// and a `grpc_code` is refused unless [`fault_layer`](Self::fault_layer) says the
    /// builder answers gRPC statuses.
    type FaultStatus: Clone + Send + Sync + 'static;
    /// Picks a request's rate-limit bucket (a [`KeyFn`](crate::limit::rate::KeyFn)):
    /// [`Unkeyed`] when the profile cannot read keys off its requests, [`HttpKey`] (from
    /// the policy's `rate_limit.key`) for HTTP ones.
    type RateKey: Clone + Send + Sync + 'static;
    /// What the rate-limit stage writes on responses
    /// ([`RateHeaders`](crate::limit::rate::RateHeaders)): [`NoHeaders`] (a policy's
    /// `rate_limit.headers` is then refused, at build and at reload), or [`HttpHeaders`]
    /// (rate-limit headers, and rejections an HTTP 429 can describe).
    type RateHeaders: Send + Sync + 'static;
    /// Whether the stack has a retry stage: [`Retries`], or [`NoRetries`] for a profile
    /// that cannot replay its requests (its stack then carries no retry state at all; pair
    /// it with [`can_retry`](Self::can_retry) returning `false`).
    type Retries: RetryKind;

    /// The classifier.
    fn classify(&self) -> Self::Classify;
    /// The request copier.
    fn replay(&self) -> Self::Replay;
    /// The response hint.
    fn hint(&self) -> Self::Hint;
    /// The deadline carrier.
    fn carrier(&self) -> Self::Carrier;
    /// The status-fault builder.
    fn fault_status(&self) -> Self::FaultStatus;
    /// Builds the fault stage's layer with [`fault_status`](Self::fault_status). By
    /// default with [`FaultLayerBuilder::status_with`]: a `grpc_code` status fault is
    /// refused with a [`ConfigError`] naming `status.grpc_code`. The gRPC profiles use
    /// [`grpc_status_with`](FaultLayerBuilder::grpc_status_with) and answer it.
    fn fault_layer(
        &self,
        builder: FaultLayerBuilder,
    ) -> Result<FaultLayer<Self::FaultStatus>, ConfigError> {
        builder.status_with(self.fault_status()).build()
    }
    /// Builds the rate-limit stage's layer: with the key and headers of this profile, or
    /// a [`ConfigError`] naming `key` when the policy keys requests this profile cannot
    /// read (see [`RateLimitLayerBuilder::build`] and
    /// [`build_http`](RateLimitLayerBuilder::build_http)).
    fn rate_limit(
        &self,
        builder: RateLimitLayerBuilder,
    ) -> Result<
        RateLimitLayer<Self::RateKey, SamePriority, UnitWeight, Self::RateHeaders>,
        ConfigError,
    >;
    /// Whether a retry stage makes sense for this profile (a server cannot replay the
    /// requests it receives); building a retry stage for a profile that says no fails.
    /// By default, whether its stack has one (`Retries`): a profile whose stack has none
    /// refuses a retry table whatever this says.
    fn can_retry(&self) -> bool {
        <Self::Retries as RetryKind>::HAS_STAGE
    }
    /// The most attempts per call the retry stage makes, whatever the policy's
    /// `retry.max_attempts` says (a larger value runs as this one, with a warning when the
    /// stage is built or reloaded), and per hedged round (the attempt and at most this
    /// less one hedges); `None` (the default) keeps the configured counts.
    /// [`Grpc`] caps at 5, as gRFC A6 has gRPC clients do.
    ///
    /// A profile with a cap hedges or retries, never both, as gRFC A6 has a method carry
    /// a retry policy or a hedging policy: a policy with `retry.hedge` and a
    /// `retry.max_attempts` over 1 is refused at build and at reload, naming
    /// `retry.max_attempts` (retried hedged rounds would make up to the cap's square).
    fn max_attempts_cap(&self) -> Option<u32> {
        None
    }
}

/// Any request type: `Err` is a retryable failure, every `Ok` a success; retries clone the
/// request (`Req: Clone`); the deadline stage reads no deadline off the request (its
/// timeout and an outer stage's ambient deadline apply; a `[deadline] header` is
/// refused); status faults are refused. The default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generic;

impl Profile for Generic {
    type Classify = DefaultClassifier;
    type Replay = CloneRequest;
    type Hint = NoHint;
    type Carrier = AnyRequest;
    type FaultStatus = NoStatus;
    type RateKey = Unkeyed;
    type RateHeaders = NoHeaders;
    type Retries = Retries;
    fn classify(&self) -> DefaultClassifier {
        DefaultClassifier
    }
    fn replay(&self) -> CloneRequest {
        CloneRequest
    }
    fn hint(&self) -> NoHint {
        NoHint
    }
    fn carrier(&self) -> AnyRequest {
        AnyRequest
    }
    fn fault_status(&self) -> NoStatus {
        NoStatus
    }
    fn rate_limit(
        &self,
        builder: RateLimitLayerBuilder,
    ) -> Result<
        RateLimitLayer<Self::RateKey, SamePriority, UnitWeight, Self::RateHeaders>,
        ConfigError,
    > {
        builder.build()
    }
}

/// Like [`Generic`], with your own classifier (a closure over `Result<&Res, &BoxError>`
/// or any [`Classify`](tower_prism_core::Classify)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Classified<C>(pub C);

impl<C: Clone + Send + Sync + 'static> Profile for Classified<C> {
    type Classify = C;
    type Replay = CloneRequest;
    type Hint = NoHint;
    type Carrier = AnyRequest;
    type FaultStatus = NoStatus;
    type RateKey = Unkeyed;
    type RateHeaders = NoHeaders;
    type Retries = Retries;
    fn classify(&self) -> C {
        self.0.clone()
    }
    fn replay(&self) -> CloneRequest {
        CloneRequest
    }
    fn hint(&self) -> NoHint {
        NoHint
    }
    fn carrier(&self) -> AnyRequest {
        AnyRequest
    }
    fn fault_status(&self) -> NoStatus {
        NoStatus
    }
    fn rate_limit(
        &self,
        builder: RateLimitLayerBuilder,
    ) -> Result<
        RateLimitLayer<Self::RateKey, SamePriority, UnitWeight, Self::RateHeaders>,
        ConfigError,
    > {
        builder.build()
    }
}

/// An HTTP client: responses classified by status ([`HttpClassifier`]: 5xx, 429 and 408
/// are failures), idempotent requests retried when their body is a
/// [`ReplayBody`](tower_prism_retry::ReplayBody) (wrap them with
/// [`retry::replayable`](crate::retry)), `Retry-After` honoured; the deadline stage reads
/// and writes the `RequestDeadline` extension and the configured header
/// ([`HttpRequest`](crate::deadline::HttpRequest)); a status fault answers with an empty
/// body of the types [`EmptyHttpBody`] knows (others fail the call with an injected error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Http;

impl Profile for Http {
    type Classify = HttpClassifier;
    type Replay = ReplayIdempotent;
    type Hint = RetryAfterHeader;
    type Carrier = HttpRequest;
    type FaultStatus = EmptyHttpBody;
    type RateKey = HttpKey;
    type RateHeaders = HttpHeaders;
    type Retries = Retries;
    fn classify(&self) -> HttpClassifier {
        HttpClassifier
    }
    fn replay(&self) -> ReplayIdempotent {
        ReplayIdempotent
    }
    fn hint(&self) -> RetryAfterHeader {
        RetryAfterHeader
    }
    fn carrier(&self) -> HttpRequest {
        HttpRequest
    }
    fn fault_status(&self) -> EmptyHttpBody {
        EmptyHttpBody
    }
    fn rate_limit(
        &self,
        builder: RateLimitLayerBuilder,
    ) -> Result<
        RateLimitLayer<Self::RateKey, SamePriority, UnitWeight, Self::RateHeaders>,
        ConfigError,
    > {
        builder.build_http()
    }
}

/// An HTTP server (axum, hyper): responses classified by status, deadlines and status
/// faults like [`Http`], any request body type; no retry stage (a server cannot replay
/// what it received).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpServer;

/// Never copies a request: every request is sent once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOnce;

impl<Req> ReplayRequest<Req> for SendOnce {
    fn replay(&self, _request: &Req) -> Option<Req> {
        None
    }

    fn can_replay(&self, _request: &Req) -> bool {
        false
    }
}

impl Profile for HttpServer {
    type Classify = HttpClassifier;
    type Replay = SendOnce;
    type Hint = RetryAfterHeader;
    type Carrier = HttpRequest;
    type FaultStatus = EmptyHttpBody;
    type RateKey = HttpKey;
    type RateHeaders = HttpHeaders;
    type Retries = NoRetries;
    fn classify(&self) -> HttpClassifier {
        HttpClassifier
    }
    fn replay(&self) -> SendOnce {
        SendOnce
    }
    fn hint(&self) -> RetryAfterHeader {
        RetryAfterHeader
    }
    fn carrier(&self) -> HttpRequest {
        HttpRequest
    }
    fn fault_status(&self) -> EmptyHttpBody {
        EmptyHttpBody
    }
    fn rate_limit(
        &self,
        builder: RateLimitLayerBuilder,
    ) -> Result<
        RateLimitLayer<Self::RateKey, SamePriority, UnitWeight, Self::RateHeaders>,
        ConfigError,
    > {
        builder.build_http()
    }
}

/// A gRPC client (tonic): results classified by `grpc-status`
/// ([`GrpcClassifier`]: `UNAVAILABLE` and `RESOURCE_EXHAUSTED` retried, plus the codes
/// given to [`retry_on`](Grpc::retry_on)), `grpc-retry-pushback-ms` honoured like
/// `Retry-After` (negative or malformed: not retried), requests replayed when they came
/// through a [`BoxedReplayLayer`](tower_prism_retry::BoxedReplayLayer)
/// ([`ReplayBoxed`]: every method, since gRPC retries by status); the deadline stage reads
/// and writes `grpc-timeout` when the policy's `[deadline]` sets `header =
/// "grpc-timeout"` ([`HttpRequest`](crate::deadline::HttpRequest)); a status fault with
/// a `grpc_code` answers with that gRPC status, Trailers-Only, as a server failing the call
/// would ([`GrpcStatus`]), and one with an HTTP `code` with that HTTP status and an empty
/// body, which a gRPC client reads as gRPC's HTTP mapping says (503 is `UNAVAILABLE`).
///
/// At most 5 attempts per call, as gRFC A6 has a gRPC client treat a `maxAttempts` over
/// 5: a policy's `retry.max_attempts` above that runs as 5, and a hedged round sends at
/// most 5 too (`retry.hedge.max_hedged` above 4 runs as 4), with a warning when the stage
/// is built or reloaded ([`max_attempts_cap`](Profile::max_attempts_cap)). A call is
/// retried or hedged, never both, as gRFC A6's retry and hedging policies: a policy with
/// `retry.hedge` sets `retry.max_attempts = 1`, or is refused at build and at reload.
///
/// A status in trailers after a message is not seen (see [`GrpcClassifier`]): such a
/// call counts as a success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grpc {
    classify: GrpcClassifier,
}

impl Grpc {
    /// Retries `UNAVAILABLE` and `RESOURCE_EXHAUSTED`.
    pub const fn new() -> Self {
        Grpc {
            classify: GrpcClassifier::new(),
        }
    }

    /// Also retries `code` (for example `ABORTED`, for calls safe to run twice).
    #[must_use]
    pub const fn retry_on(self, code: GrpcCode) -> Self {
        Grpc {
            classify: self.classify.retry_on(code),
        }
    }

    /// Retries exactly `codes`, replacing the defaults (a set read from a config file:
    /// [`GrpcCodes`] deserializes from a list of code names).
    #[must_use]
    pub const fn with_retryable(self, codes: GrpcCodes) -> Self {
        Grpc {
            classify: self.classify.with_retryable(codes),
        }
    }
}

impl Profile for Grpc {
    type Classify = GrpcClassifier;
    type Replay = ReplayBoxed;
    type Hint = GrpcPushback;
    type Carrier = HttpRequest;
    type FaultStatus = GrpcStatus;
    type RateKey = HttpKey;
    type RateHeaders = NoHeaders;
    type Retries = Retries;
    fn classify(&self) -> GrpcClassifier {
        self.classify
    }
    fn replay(&self) -> ReplayBoxed {
        ReplayBoxed
    }
    fn hint(&self) -> GrpcPushback {
        GrpcPushback
    }
    fn carrier(&self) -> HttpRequest {
        HttpRequest
    }
    fn fault_status(&self) -> GrpcStatus {
        GrpcStatus
    }
    fn fault_layer(
        &self,
        builder: FaultLayerBuilder,
    ) -> Result<FaultLayer<GrpcStatus>, ConfigError> {
        builder.grpc_status_with(GrpcStatus).build()
    }
    fn rate_limit(
        &self,
        builder: RateLimitLayerBuilder,
    ) -> Result<
        RateLimitLayer<Self::RateKey, SamePriority, UnitWeight, Self::RateHeaders>,
        ConfigError,
    > {
        // gRPC answers rejections with statuses, not HTTP headers: keys only.
        Ok(builder.build_http()?.headers::<NoHeaders>())
    }
    fn max_attempts_cap(&self) -> Option<u32> {
        // gRFC A6's client-side maximum: a service config (or here a policy file) asking
        // for more must not turn one call into a burst of attempts.
        Some(5)
    }
}

/// A gRPC server (tonic): results classified by `grpc-status` like [`Grpc`], deadlines
/// read from `grpc-timeout` when the policy's `[deadline]` names it, status faults answered
/// like [`Grpc`]'s, no retry stage (a server cannot replay what it received). Answer the stack's rejections as gRPC statuses
/// with [`GrpcErrorLayer`](crate::GrpcErrorLayer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcServer;

impl Profile for GrpcServer {
    type Classify = GrpcClassifier;
    type Replay = SendOnce;
    type Hint = GrpcPushback;
    type Carrier = HttpRequest;
    type FaultStatus = GrpcStatus;
    type RateKey = HttpKey;
    type RateHeaders = NoHeaders;
    type Retries = NoRetries;
    fn classify(&self) -> GrpcClassifier {
        GrpcClassifier::new()
    }
    fn replay(&self) -> SendOnce {
        SendOnce
    }
    fn hint(&self) -> GrpcPushback {
        GrpcPushback
    }
    fn carrier(&self) -> HttpRequest {
        HttpRequest
    }
    fn fault_status(&self) -> GrpcStatus {
        GrpcStatus
    }
    fn fault_layer(
        &self,
        builder: FaultLayerBuilder,
    ) -> Result<FaultLayer<GrpcStatus>, ConfigError> {
        builder.grpc_status_with(GrpcStatus).build()
    }
    fn rate_limit(
        &self,
        builder: RateLimitLayerBuilder,
    ) -> Result<
        RateLimitLayer<Self::RateKey, SamePriority, UnitWeight, Self::RateHeaders>,
        ConfigError,
    > {
        // gRPC answers rejections with statuses, not HTTP headers: keys only.
        Ok(builder.build_http()?.headers::<NoHeaders>())
    }
}
