//! [`ConfigWatcher`]: a policy file that reloads itself when it changes, or on SIGHUP.
//!
//! The watch is on the file's directory, never on the file's inode: editors replace a file
//! by writing a temporary one and renaming it over the old, and Kubernetes mounts a
//! ConfigMap as `config.toml -> ..data/config.toml` with `..data` a symlink swapped
//! atomically to a new timestamped directory; an inode watch would see neither. Each burst
//! of events is debounced, then the file is read again through its path (so symlinks are
//! resolved anew) and applied when its text changed. A file written in place is read once
//! its writer has closed it (on Linux, which reports the close; at most 10 s on), so a
//! writer pausing mid-file has nothing applied: a prefix of a valid file is often valid
//! (`rate = 1` of `rate = 1000`), and no check could refuse it.
//!
//! A watched directory deleted (and perhaps made again), or a symlink swapped in a
//! directory the path leads through that nobody watches, sends no event at all: every
//! second without one, the watcher checks that it still watches the directories the path
//! resolves to (watching them again when not) and that the file's text is the one last
//! read; a change found so is debounced and applied like an event's.
//!
//! The events are handled on a thread of the watcher's own, not on a runtime: a reload is
//! a short synchronous call, and the file watch then works with or without Tokio. Only
//! SIGHUP needs a Tokio runtime (its signal driver).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::ReliabilityConfig;
use crate::config_error::ConfigFileError;
use crate::policies::{Policies, Trigger};
use crate::profile::Profile;

/// A burst of events that never pauses is applied at the latest after this many debounce
/// periods, so a file rewritten continuously still reloads.
const MAX_DEBOUNCE_PERIODS: u32 = 10;

/// The longest a change waits, beyond its debounce, for the file written in place to be
/// closed (Linux reports the close): a writer pausing mid-file must not have its first
/// half applied, and one that never closes the file must not hold the reload for ever.
const MAX_OPEN_WRITE: Duration = Duration::from_secs(10);

/// How often the watcher checks, without an event, that it still watches the directories
/// the path leads through: a watch ends with its directory (deleted and made again, or a
/// symlink swapped in a directory not watched), and no event says what replaced it.
const RECHECK: Duration = Duration::from_secs(1);

/// Why a [`ConfigWatcher`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// SIGHUP reloads were asked for outside a Tokio runtime, or in one built without IO
    /// (the signal driver comes with `enable_io` / `enable_all`).
    #[error("reloading on SIGHUP needs a Tokio runtime with IO enabled (`enable_all`)")]
    NoRuntime,
    /// The file's directory could not be watched (it does not exist, or the system's
    /// limit of watches is reached).
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SIGHUP handler could not be installed.
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
    /// The watcher's thread could not be started.
    #[error("cannot start the config watcher's thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The debounce is longer than [`ConfigWatcherBuilder::MAX_DEBOUNCE`].
    #[error("invalid config watch debounce {0:?}: at most one hour")]
    Debounce(Duration),
}

/// Watches a policy file and reloads it into running [`Policies`] when it changes, and
/// optionally on SIGHUP. Made by [`Policies::watch`] or [`Policies::watcher`]; dropping it
/// stops watching (and listening for SIGHUP) before `drop` returns.
#[derive(Debug)]
#[must_use = "dropping the watcher stops watching"]
pub struct ConfigWatcher {
    path: PathBuf,
    control: Sender<Message>,
    thread: Option<JoinHandle<()>>,
    sighup: Option<tokio::task::JoinHandle<()>>,
}

impl ConfigWatcher {
    /// The watched file, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        if let Some(task) = self.sighup.take() {
            task.abort();
        }
        // The thread owns the file watch: when it ends, the watch is gone.
        let _ = self.control.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            // A reload in progress is a short synchronous call: this waits for it at
            // most. A panic in the thread was already reported by the panic hook.
            let _ = thread.join();
        }
    }
}

/// How to watch a policy file: [`Policies::watcher`], then [`start`](Self::start).
#[derive(Debug)]
#[must_use = "a watcher builder does nothing until `start`"]
pub struct ConfigWatcherBuilder<P: Profile> {
    policies: Policies<P>,
    path: PathBuf,
    debounce: Duration,
    sighup: bool,
}

impl<P: Profile> ConfigWatcherBuilder<P> {
    /// The debounce of [`Policies::watch`]: a burst of events is applied once, this long
    /// after its last event.
    pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

    /// The longest debounce [`start`](Self::start) accepts: one hour.
    pub const MAX_DEBOUNCE: Duration = Duration::from_secs(3600);

    /// How long the file must stay quiet after an event before it is read and applied
    /// ([`DEFAULT_DEBOUNCE`](Self::DEFAULT_DEBOUNCE) unless set; at most
    /// [`MAX_DEBOUNCE`](Self::MAX_DEBOUNCE), else `start` refuses it): a write in several
    /// steps, or an editor's write-then-rename, is applied once.
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// Also reload when the process receives SIGHUP (off unless set). A SIGHUP reapplies
    /// the file even when its text has not changed: it is an operator's explicit request,
    /// e.g. to undo a layer reconfigured by hand.
    ///
    /// Needs a Tokio runtime with IO enabled when [`start`](Self::start) is called (else
    /// [`WatchError::NoRuntime`]); the listener runs as a task of that runtime. Once a
    /// SIGHUP handler is installed, SIGHUP no longer terminates the process, even after
    /// the watcher is dropped (a property of process signal handlers).
    #[cfg(unix)]
    #[cfg_attr(docsrs, doc(cfg(unix)))]
    pub fn sighup(mut self, enabled: bool) -> Self {
        self.sighup = enabled;
        self
    }

    /// Starts watching. A file that says something else than the config the policies last
    /// applied (edited since they were built, or never theirs) is applied within a second,
    /// or its refusal reported, as any change after the start is.
    pub fn start(self) -> Result<ConfigWatcher, WatchError> {
        if self.debounce > Self::MAX_DEBOUNCE {
            // Refused here: the watcher's thread adds it to the clock, and an overflow
            // there would end the thread and every reload with it, silently.
            return Err(WatchError::Debounce(self.debounce));
        }
        let (control, messages) = mpsc::channel();
        let sighup = if self.sighup {
            Some(listen_for_sighup(control.clone())?)
        } else {
            None
        };
        // From here on, an error must not leave the SIGHUP task behind.
        let abort = |error| {
            if let Some(task) = &sighup {
                task.abort();
            }
            error
        };
        let events = control.clone();
        let watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only once the watcher is stopping.
            let _ = events.send(Message::Fs(event));
        })
        .map_err(|e| {
            abort(WatchError::Watch {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })
        })?;
        let mut watch =
            Watch::new(self.policies, self.path.clone(), watcher, self.debounce).map_err(abort)?;
        let thread = std::thread::Builder::new()
            .name("prism-config-watch".to_owned())
            .spawn(move || watch.run(&messages))
            .map_err(|e| abort(WatchError::Thread(e)))?;
        tracing::info!(path = ?self.path, debounce = ?self.debounce, sighup = self.sighup, "watching config file");
        Ok(ConfigWatcher {
            path: self.path,
            control,
            thread: Some(thread),
            sighup,
        })
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "watch")))]
impl<P: Profile> Policies<P> {
    /// Reloads the policy file at `path` into these policies whenever it changes, until the
    /// returned [`ConfigWatcher`] is dropped. The same as
    /// `self.watcher(path).start()`; see [`watcher`](Self::watcher) for the options.
    ///
    /// Rewritten in place, replaced by a rename, or a Kubernetes ConfigMap volume whose
    /// `..data` symlink is swapped: each change is debounced
    /// ([`ConfigWatcherBuilder::DEFAULT_DEBOUNCE`]), the file read again through its path,
    /// and applied as by [`reload_file`](Self::reload_file) when its text changed: a bad file is refused
    /// (a `warn` event says why, the error is counted) and the running config stays.
    ///
    /// ```no_run
    /// use tower_prism::{Policies, ReliabilityConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = "/etc/my-service/reliability.toml";
    /// let policies = Policies::new(&ReliabilityConfig::from_file(path)?)?;
    /// let _watcher = policies.watch(path)?; // keep it: dropping it stops watching
    /// let payments = policies.get("payments")?; // stack services with it
    /// # Ok(()) }
    /// ```
    pub fn watch(&self, path: impl AsRef<Path>) -> Result<ConfigWatcher, WatchError> {
        self.watcher(path).start()
    }

    /// A watcher of the policy file at `path`, to configure (debounce, SIGHUP) and
    /// [`start`](ConfigWatcherBuilder::start).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_prism::{Policies, ReliabilityConfig};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = "reliability.toml";
    /// let policies = Policies::new(&ReliabilityConfig::from_file(path)?)?;
    /// let _watcher = policies
    ///     .watcher(path)
    ///     .debounce(Duration::from_millis(500))
    ///     .sighup(true) // in a Tokio runtime
    ///     .start()?;
    /// # Ok(()) }
    /// ```
    pub fn watcher(&self, path: impl AsRef<Path>) -> ConfigWatcherBuilder<P> {
        ConfigWatcherBuilder {
            policies: self.clone(),
            path: path.as_ref().to_owned(),
            debounce: ConfigWatcherBuilder::<P>::DEFAULT_DEBOUNCE,
            sighup: false,
        }
    }
}

/// What the watcher's thread is told.
enum Message {
    /// A file system event in a watched directory.
    Fs(notify::Result<Event>),
    /// The process received SIGHUP.
    #[cfg_attr(not(unix), allow(dead_code))]
    Sighup,
    /// The [`ConfigWatcher`] was dropped.
    Stop,
}

/// Installs the SIGHUP listener as a task of the current runtime.
#[cfg(unix)]
fn listen_for_sighup(control: Sender<Message>) -> Result<tokio::task::JoinHandle<()>, WatchError> {
    use tokio::signal::unix::{signal, SignalKind};

    let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
    // Tokio panics, rather than erring, in a runtime built without IO: that is a typed
    // error here, not a panic of the caller.
    let hangup = std::panic::catch_unwind(|| signal(SignalKind::hangup()))
        .map_err(|_| WatchError::NoRuntime)?
        .map_err(WatchError::Signal)?;
    let mut hangup = hangup;
    Ok(runtime.spawn(async move {
        while hangup.recv().await.is_some() {
            if control.send(Message::Sighup).is_err() {
                break;
            }
        }
    }))
}

#[cfg(not(unix))]
fn listen_for_sighup(_control: Sender<Message>) -> Result<tokio::task::JoinHandle<()>, WatchError> {
    unreachable!("`sighup` is only settable on unix")
}

/// The watcher thread's state: the watches, the file's names and the text last applied.
struct Watch<P: Profile> {
    policies: Policies<P>,
    path: PathBuf,
    watcher: RecommendedWatcher,
    debounce: Duration,
    /// The directory that holds the path (watched for as long as the watcher lives), and
    /// which directory it was when watched (`None`: not watched now, it was missing).
    dir: PathBuf,
    dir_id: Option<DirId>,
    /// The directory of the file the path resolves to, when a symlink leads elsewhere
    /// (watched too, so an in-place edit of the target is seen; re-resolved on each event),
    /// and which directory it was when watched.
    target_dir: Option<PathBuf>,
    target_id: Option<DirId>,
    /// The file name the path resolves to.
    target_name: Option<std::ffi::OsString>,
    /// The text last read, applied or refused: the same text is not applied again.
    last_text: Option<String>,
}

impl<P: Profile> Watch<P> {
    fn new(
        policies: Policies<P>,
        path: PathBuf,
        mut watcher: RecommendedWatcher,
        debounce: Duration,
    ) -> Result<Watch<P>, WatchError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let dir_id = dir_id(&dir);
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| WatchError::Watch {
                path: dir.clone(),
                source: std::io::Error::other(e),
            })?;
        // The text in force: the file's, if it says what the policies run. A file edited
        // since they were built (or one they were never built from) is not: the first
        // check (within `RECHECK`) applies it, or reports why not, so the watcher
        // converges on the file whenever it was written.
        let last_text = std::fs::read_to_string(&path).ok().filter(|text| {
            ReliabilityConfig::from_toml(text).is_ok_and(|config| policies.is_applied(&config))
        });
        let mut watch = Watch {
            policies,
            path,
            watcher,
            debounce,
            dir,
            dir_id,
            target_dir: None,
            target_id: None,
            target_name: None,
            last_text,
        };
        watch.resolve_target();
        Ok(watch)
    }

    /// Handles messages until told to stop.
    fn run(&mut self, messages: &Receiver<Message>) {
        // Due whatever else arrives: a directory busy with other files' events must not
        // put the check off for ever.
        let mut recheck_at = Instant::now() + RECHECK;
        loop {
            let wait = recheck_at.saturating_duration_since(Instant::now());
            let mut writing = false;
            let trigger = match messages.recv_timeout(wait) {
                Ok(Message::Fs(event)) if self.is_relevant(&event) => {
                    writing = self.written_in_place(&event);
                    Some(Trigger::FileChanged)
                }
                Ok(Message::Fs(_)) | Err(RecvTimeoutError::Timeout) => None,
                Ok(Message::Sighup) => Some(Trigger::Sighup),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            };
            let trigger = match trigger {
                Some(trigger) => trigger,
                None if Instant::now() < recheck_at => continue,
                None => {
                    recheck_at = Instant::now() + RECHECK;
                    if !self.changed_unseen() {
                        continue;
                    }
                    Trigger::FileChanged
                }
            };
            let trigger = match trigger {
                Trigger::FileChanged => match self.settle(messages, writing) {
                    Some(trigger) => trigger,
                    None => return,
                },
                other => other,
            };
            self.rewatch_dir();
            self.resolve_target();
            self.reload(trigger);
        }
    }

    /// Waits until the directory has been quiet for the debounce period (bounded), and
    /// says what to reload for, or `None` when told to stop meanwhile. `writing`: the file
    /// is being written in place and not closed yet; then the reload also waits for the
    /// close (up to [`MAX_OPEN_WRITE`]), so a writer pausing mid-file has nothing applied.
    fn settle(&self, messages: &Receiver<Message>, mut writing: bool) -> Option<Trigger> {
        let start = Instant::now();
        let latest = start + self.debounce * MAX_DEBOUNCE_PERIODS;
        let latest_close = start + MAX_OPEN_WRITE.max(self.debounce * MAX_DEBOUNCE_PERIODS);
        let mut due = start + self.debounce;
        loop {
            let now = Instant::now();
            if now >= due {
                if !writing || now >= latest_close {
                    return Some(Trigger::FileChanged);
                }
                due = (now + self.debounce).min(latest_close);
                continue;
            }
            match messages.recv_timeout(due - now) {
                Ok(Message::Fs(event)) => {
                    if self.is_relevant(&event) {
                        if is_close_of_a_write(&event) {
                            writing = false;
                        } else if self.written_in_place(&event) {
                            writing = true;
                        }
                        due = (Instant::now() + self.debounce).min(latest);
                    }
                }
                // An explicit request does not wait for the file to settle.
                Ok(Message::Sighup) => return Some(Trigger::Sighup),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return None,
                // due: looked at again above
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Whether an event may have changed what the path reads: a write, create, rename or
    /// removal of the file, of its symlink's target, or of a `..`-named entry (the
    /// ConfigMap's `..data` and timestamped directories). Reads (ours included) are not.
    fn is_relevant(&self, event: &notify::Result<Event>) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                // Events may have been lost: look at the file again.
                tracing::warn!(path = ?self.path, %error, "config file watch error");
                return true;
            }
        };
        if let EventKind::Access(kind) = event.kind {
            if kind != AccessKind::Close(AccessMode::Write) {
                return false;
            }
        }
        if event.need_rescan() || event.paths.is_empty() {
            return true;
        }
        let link_name = self.path.file_name();
        event.paths.iter().any(|p| {
            let name = p.file_name();
            name.is_some()
                && (name == link_name
                    || name == self.target_name.as_deref()
                    || name.is_some_and(is_kubernetes_entry)
                    || Some(p.as_path()) == self.target_dir.as_deref())
        })
    }

    /// Whether `event` writes the watched file's data in place (on Linux, which reports
    /// the close that ends the write; elsewhere nothing would say the write ended).
    fn written_in_place(&self, event: &notify::Result<Event>) -> bool {
        if !cfg!(target_os = "linux") {
            return false;
        }
        let Ok(event) = event else {
            return false;
        };
        let names = [self.path.file_name(), self.target_name.as_deref()];
        matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
        ) && event
            .paths
            .iter()
            .any(|p| p.file_name().is_some() && names.contains(&p.file_name()))
    }

    /// Whether the file may have changed without an event saying so: a watched directory
    /// was replaced (its watch ended with it), or the text differs from the one last read
    /// (a watch lost some other way). Either way the change then settles like an event's.
    fn changed_unseen(&mut self) -> bool {
        let own_dir_changed = self.rewatch_dir();
        let target_dir_changed = self.resolve_target();
        let text_changed = match std::fs::read_to_string(&self.path) {
            Ok(text) => self.last_text.as_ref() != Some(&text),
            // Missing since the last read: reported once, by the reload.
            Err(_) => self.last_text.is_some(),
        };
        own_dir_changed || target_dir_changed || text_changed
    }

    /// Watches the path's own directory again if it is no longer the one watched (deleted,
    /// or deleted and made again). Whether it changed.
    fn rewatch_dir(&mut self) -> bool {
        let now = dir_id(&self.dir);
        if now == self.dir_id {
            return false;
        }
        // The old watch ended with its directory; a failed unwatch says only that.
        let _ = self.watcher.unwatch(&self.dir);
        self.dir_id = None;
        if now.is_some() {
            match self.watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.dir_id = now,
                Err(error) => {
                    tracing::warn!(dir = ?self.dir, %error, "cannot watch the config file's directory again")
                }
            }
        }
        true
    }

    /// Resolves the path's symlinks again and, when the file now lives in another
    /// directory than the one watched (another path, or the same path made again), watches
    /// that directory instead of the old one. Whether the file's directory changed.
    fn resolve_target(&mut self) -> bool {
        let Ok(real) = std::fs::canonicalize(&self.path) else {
            return false; // missing for now (mid-rename): the next event resolves again
        };
        self.target_name = real.file_name().map(ToOwned::to_owned);
        let real_dir = real.parent().map(Path::to_path_buf);
        let own_dir = std::fs::canonicalize(&self.dir).ok();
        let wanted = real_dir.filter(|d| Some(d) != own_dir.as_ref());
        let wanted_id = wanted.as_deref().and_then(dir_id);
        if wanted == self.target_dir && wanted_id == self.target_id {
            return false;
        }
        if let Some(old) = self.target_dir.take() {
            // It may be gone already (a swapped ConfigMap directory is deleted).
            let _ = self.watcher.unwatch(&old);
        }
        self.target_id = None;
        if let Some(dir) = wanted {
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.target_dir = Some(dir);
                    self.target_id = wanted_id;
                }
                Err(error) => {
                    tracing::debug!(dir = ?dir, %error, "cannot watch the config symlink's target directory")
                }
            }
        }
        true
    }

    /// Reads the file and applies it when its text changed (or on SIGHUP, always).
    fn reload(&mut self, trigger: Trigger) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(source) => {
                self.last_text = None;
                let path = self.path.clone();
                let _ = self
                    .policies
                    .reload_observed(Some(&self.path), trigger, || {
                        Err::<ReliabilityConfig, _>(ConfigFileError::Io { path, source })
                    });
                return;
            }
        };
        if matches!(trigger, Trigger::FileChanged) && self.last_text.as_ref() == Some(&text) {
            tracing::debug!(path = ?self.path, "config file unchanged; not reapplied");
            return;
        }
        // Refused or not, this text has had its attempt: the same text again is not
        // another one (its error was counted and logged once).
        let _ = self
            .policies
            .reload_observed(Some(&self.path), trigger, || {
                ReliabilityConfig::from_toml(&text)
            });
        self.last_text = Some(text);
    }
}

/// Which directory a path names: its device and inode, so that a directory deleted and
/// made again under the same name is told from the one watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirId(u64, u64);

/// The directory `path` names now, or `None` when there is none.
#[cfg(unix)]
fn dir_id(path: &Path) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    metadata
        .is_dir()
        .then(|| DirId(metadata.dev(), metadata.ino()))
}

/// Whether `path` names a directory now (elsewhere, a directory made again under the same
/// name passes for the old one).
#[cfg(not(unix))]
fn dir_id(path: &Path) -> Option<DirId> {
    path.is_dir().then_some(DirId(0, 0))
}

/// Kubernetes' atomic writer names its entries `..data`, `..data_tmp` and
/// `..<timestamp>`.
fn is_kubernetes_entry(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"..") && name != ".."
}

/// Whether `event` is a file written to being closed (Linux's `IN_CLOSE_WRITE`).
fn is_close_of_a_write(event: &notify::Result<Event>) -> bool {
    matches!(event, Ok(event) if event.kind == EventKind::Access(AccessKind::Close(AccessMode::Write)))
}
