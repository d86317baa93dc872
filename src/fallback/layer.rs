//! [`FallbackLayer`] and its builder.

use std::sync::Arc;

use tower_layer::Layer;
use tower_prism_core::ConfigError;

use super::answer::{AnswerFn, AnswerService, AnswerValue, OnResponse};
use super::config::FallbackConfig;
use super::handle::FallbackHandle;
use super::http_answer::{HttpAnswer, HttpParts, HttpSlot};
use super::service::Fallback;
use crate::error::{Error, ErrorKind};

/// What every service of one layer shares: the stage's handle and its answer, behind one
/// `Arc` so that a call clones one pointer.
#[derive(Debug)]
pub(crate) struct Stage<A> {
    pub(crate) handle: FallbackHandle,
    pub(crate) answer: A,
}

/// Answers the errors of the services it wraps, for the kinds it is set to, with `A` (an
/// [`Answer`](super::Answer)): the configured HTTP response ([`HttpAnswer`], the
/// default), a closure, a value or another service. Every service it makes (and every
/// clone of those) shares one [`FallbackHandle`].
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_prism::fallback::FallbackLayer;
/// use tower_prism::ErrorKind;
///
/// # tokio_test::block_on(async {
/// let layer = FallbackLayer::value([ErrorKind::Inner], "cached");
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_: ()| async { Err::<&str, _>("upstream down") }));
/// assert_eq!(svc.oneshot(()).await.unwrap(), "cached");
/// # });
/// ```
#[derive(Debug)]
pub struct FallbackLayer<A = HttpAnswer> {
    stage: Arc<Stage<A>>,
}

impl<A> Clone for FallbackLayer<A> {
    fn clone(&self) -> Self {
        FallbackLayer {
            stage: self.stage.clone(),
        }
    }
}

impl FallbackLayer {
    /// A layer that answers the config's kinds with its HTTP answer (for services of
    /// `http::Response<B>`, `B: From<String>`).
    pub fn from_config(config: &FallbackConfig) -> Result<Self, ConfigError> {
        Self::builder(config.clone()).build()
    }

    /// A builder for what a config file cannot say: the name, and an answer given in
    /// code (a closure, a value, a service) instead of the configured HTTP one.
    pub fn builder(config: FallbackConfig) -> FallbackLayerBuilder {
        let http = HttpSlot::new();
        FallbackLayerBuilder {
            config,
            name: "default".to_owned(),
            answer: HttpAnswer { slot: http.clone() },
            http,
        }
    }

    /// A layer that answers errors of `kinds` (none: every kind) with `f(&error)`.
    ///
    /// ```
    /// use tower_prism::fallback::FallbackLayer;
    /// use tower_prism::{Error, ErrorKind};
    ///
    /// let layer = FallbackLayer::answer_with([ErrorKind::RateLimited], |error: &Error| {
    ///     format!("busy ({})", error.kind())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn answer_with<F, Res>(
        kinds: impl IntoIterator<Item = ErrorKind>,
        f: F,
    ) -> FallbackLayer<AnswerFn<F>>
    where
        F: Fn(&Error) -> Res,
    {
        Self::with_kinds(kinds).answer_with(f).build_default()
    }

    /// A layer that answers errors of `kinds` (none: every kind) with a clone of `value`.
    pub fn value<V: Clone>(
        kinds: impl IntoIterator<Item = ErrorKind>,
        value: V,
    ) -> FallbackLayer<AnswerValue<V>> {
        Self::with_kinds(kinds).value(value).build_default()
    }

    /// A layer that answers errors of `kinds` (none: every kind) by calling `service`
    /// with the error (see [`Answer`](super::Answer) for why the error and not the
    /// request).
    pub fn service<S: Clone>(
        kinds: impl IntoIterator<Item = ErrorKind>,
        service: S,
    ) -> FallbackLayer<AnswerService<S>> {
        Self::with_kinds(kinds).service(service).build_default()
    }

    fn with_kinds(kinds: impl IntoIterator<Item = ErrorKind>) -> FallbackLayerBuilder {
        Self::builder(FallbackConfig::default()).on(kinds)
    }
}

impl<A> FallbackLayer<A> {
    /// The fallback stage's shared state: name, config, snapshot, reconfigure.
    pub fn handle(&self) -> &FallbackHandle {
        &self.stage.handle
    }
}

impl<S, A> Layer<S> for FallbackLayer<A> {
    type Service = Fallback<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            stage: self.stage.clone(),
        }
    }
}

/// Builds a [`FallbackLayer`] from a [`FallbackConfig`] and what only code can give: a
/// name and an answer. Without an answer set, the layer gives the config's HTTP answer
/// ([`HttpAnswer`]).
///
/// ```
/// use tower_prism::fallback::{FallbackConfig, FallbackLayer};
/// use tower_prism::ErrorKind;
///
/// let layer = FallbackLayer::builder(FallbackConfig::default())
///     .name("catalog")
///     .on([ErrorKind::CircuitOpen, ErrorKind::Timeout])
///     .value(Vec::<u32>::new())
///     .build()
///     .unwrap();
/// assert_eq!(layer.handle().name(), "catalog");
/// ```
#[derive(Debug, Clone)]
pub struct FallbackLayerBuilder<A = HttpAnswer> {
    config: FallbackConfig,
    name: String,
    /// The configured HTTP answer's slot, filled at build; the handle keeps it even when
    /// the answer is given in code, so `reconfigure` and `config` behave the same.
    http: Arc<HttpSlot>,
    answer: A,
}

impl<A> FallbackLayerBuilder<A> {
    /// The policy name for metrics and events (default `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The kinds answered (none: every kind): a shorthand for the config's
    /// [`on`](FallbackConfig::on), replacing it.
    pub fn on(mut self, kinds: impl IntoIterator<Item = ErrorKind>) -> Self {
        self.config.on = kinds.into_iter().collect();
        self
    }

    /// Answers with `f(&error)` ([`AnswerFn`]).
    pub fn answer_with<F>(self, f: F) -> FallbackLayerBuilder<AnswerFn<F>> {
        self.answer(AnswerFn::new(f))
    }

    /// Answers with a clone of `value` ([`AnswerValue`]).
    pub fn value<V: Clone>(self, value: V) -> FallbackLayerBuilder<AnswerValue<V>> {
        self.answer(AnswerValue::new(value))
    }

    /// Answers by calling `service` with the error ([`AnswerService`]).
    pub fn service<S: Clone>(self, service: S) -> FallbackLayerBuilder<AnswerService<S>> {
        self.answer(AnswerService::new(service))
    }

    /// Answers the inner service's responses for which `handles` is true as well, as
    /// failures (Polly's `ShouldHandle` on results): the answer is given an
    /// [`Error`] of kind [`Inner`](ErrorKind::Inner) holding a
    /// [`FailedResponse`](super::FailedResponse), and the response is dropped. Set the
    /// answer first: this wraps it ([`OnResponse`]). For the configured HTTP answer, the
    /// config's [`on_status`](FallbackConfig::on_status) does the same by status.
    pub fn on_response<F>(self, handles: F) -> FallbackLayerBuilder<OnResponse<A, F>> {
        FallbackLayerBuilder {
            config: self.config,
            name: self.name,
            http: self.http,
            answer: OnResponse::new(self.answer, handles),
        }
    }

    /// Answers with an [`Answer`](super::Answer) of your own.
    pub fn answer<A2>(self, answer: A2) -> FallbackLayerBuilder<A2> {
        FallbackLayerBuilder {
            config: self.config,
            name: self.name,
            http: self.http,
            answer,
        }
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<FallbackLayer<A>, ConfigError> {
        let parts = HttpParts::from_config(&self.config)?;
        self.http.store(parts, &self.config);
        let handle = FallbackHandle::new(self.name, &self.config, self.http);
        Ok(FallbackLayer {
            stage: Arc::new(Stage {
                handle,
                answer: self.answer,
            }),
        })
    }
}

impl<A> FallbackLayerBuilder<A> {
    /// Builds a layer whose config is the default with typed kinds: nothing in it can be
    /// invalid, so there is no error to return.
    fn build_default(self) -> FallbackLayer<A> {
        debug_assert_eq!(self.config.status, FallbackConfig::default().status);
        let handle = FallbackHandle::new(self.name, &self.config, self.http);
        FallbackLayer {
            stage: Arc::new(Stage {
                handle,
                answer: self.answer,
            }),
        }
    }
}
