//! A watched policy file, changed on disk the ways files really change: rewritten in place,
//! replaced by a rename, a Kubernetes ConfigMap's `..data` symlink swapped; a bad file; and
//! SIGHUP. Real files in a temp directory and real time (the OS notifies): each test waits
//! by polling the running layer, with a bound.

#![cfg(feature = "watch")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tower_prism::{ConfigWatcher, Policies, ReliabilityConfig, ReliabilityLayer, WatchError};
use tower_prism_testkit::metrics::Capture;

const DEBOUNCE: Duration = Duration::from_millis(30);
const PATIENCE: Duration = Duration::from_secs(4);

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "prism-watch-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The canonical path, so that symlinks below it compare as the watcher sees them.
        TempDir(std::fs::canonicalize(dir).unwrap())
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn policy(rate: u32) -> String {
    format!("[policy.api.rate_limit]\nrate = {rate}\n")
}

/// The running rate, rounded: the limiter keeps it as a time per token, so 30 reads back
/// as 29.9999994.
fn rate(layer: &ReliabilityLayer) -> f64 {
    (layer.snapshot().rate_limit.unwrap().rate_per_second * 1000.0).round() / 1000.0
}

/// Whether the layer runs `rate` and the reload that set it has been counted (the count
/// follows the change).
fn applied(layer: &ReliabilityLayer, capture: &Capture, rate_now: f64, reloads: u64) -> bool {
    rate(layer) == rate_now && capture.counter(SUCCESS) == reloads
}

/// Polls `done` every few milliseconds for at most [`PATIENCE`].
fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Policies built from the file at `path`, their `api` policy, and their metrics captured.
fn built(path: &Path) -> (Policies, ReliabilityLayer, Capture) {
    let capture = Capture::default();
    let policies = metrics::with_local_recorder(&capture, || {
        Policies::new(&ReliabilityConfig::from_file(path).unwrap()).unwrap()
    });
    let api = policies.get("api").unwrap();
    (policies, api, capture)
}

/// [`built`], and a watcher on the file.
fn watched(path: &Path) -> (Policies, ReliabilityLayer, Capture, ConfigWatcher) {
    let (policies, api, capture) = built(path);
    let watcher = policies.watcher(path).debounce(DEBOUNCE).start().unwrap();
    (policies, api, capture, watcher)
}

const SUCCESS: &str = "prism_config_reloads_total{result=success}";
const ERROR: &str = "prism_config_reloads_total{result=error}";
const LAST_SUCCESS: &str = "prism_config_last_reload_success_timestamp_seconds{}";

#[test]
fn a_file_rewritten_in_place_is_applied() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (_policies, api, capture, watcher) = watched(&path);
    assert_eq!(watcher.path(), path);

    std::fs::write(&path, policy(20)).unwrap();
    eventually("the rewrite", || applied(&api, &capture, 20.0, 1));
    std::fs::write(&path, policy(30)).unwrap();
    eventually("the second rewrite", || applied(&api, &capture, 30.0, 2));
    assert_eq!(capture.counter(ERROR), 0);
}

/// A file edited between the policies' build and the watcher's start is applied (within
/// the watcher's one-second check): its text was taken as the running config, and the
/// edit waited for the next one. A file that says what runs is not reloaded.
#[test]
fn a_file_edited_before_the_watcher_starts_is_applied() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (policies, api, capture) = built(&path);
    std::fs::write(&path, policy(20)).unwrap();
    let _watcher = policies.watcher(&path).debounce(DEBOUNCE).start().unwrap();
    eventually("the edit made before the start", || {
        applied(&api, &capture, 20.0, 1)
    });

    // started on a file that says what runs: nothing to apply
    let again = policies.watcher(&path).debounce(DEBOUNCE).start().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(capture.counter(SUCCESS), 1);
    drop(again);
}

/// A file rewritten in place by a writer that pauses mid-file for longer than the debounce
/// (and its cap) is applied when the writer closes it, not half written: `rate = 1000`
/// written as `rate = 1` then `000` ran at 1 in between. (Linux reports the close; other
/// systems apply what is there once the change settles.)
#[cfg(target_os = "linux")]
#[test]
fn a_file_still_being_written_is_not_applied_half_written() {
    use std::io::Write;

    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(100)).unwrap();
    let (_policies, api, capture, _watcher) = watched(&path);
    let mut file = std::fs::File::create(&path).unwrap(); // truncates
    file.write_all(b"[policy.api.rate_limit]\nrate = 1")
        .unwrap();
    file.flush().unwrap();
    // ten debounce periods (the cap of a burst of events) and then some
    let pause = Instant::now();
    while pause.elapsed() < DEBOUNCE * 15 {
        assert_eq!(rate(&api), 100.0, "half a file applied");
        std::thread::sleep(Duration::from_millis(5));
    }
    file.write_all(b"000\n").unwrap();
    drop(file);
    eventually("the whole file", || applied(&api, &capture, 1000.0, 1));
}

#[test]
fn a_file_replaced_by_a_rename_is_applied() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (_policies, api, _capture, _watcher) = watched(&path);

    // What editors and config tools do: write a temp file beside it, rename it over.
    for rate_now in [20, 30] {
        let temp = dir.join(".reliability.toml.swp");
        std::fs::write(&temp, policy(rate_now)).unwrap();
        std::fs::rename(&temp, &path).unwrap();
        eventually("the renamed file", || rate(&api) == f64::from(rate_now));
    }
}

#[cfg(unix)]
#[test]
fn a_configmap_data_symlink_swap_is_applied() {
    use std::os::unix::fs::symlink;

    // Kubernetes' layout: config.toml -> ..data/config.toml, ..data -> ..<timestamp>.
    let dir = TempDir::new();
    let version = |n: u32, rate: u32| {
        let name = format!("..2026_11_30_05_00_0{n}.000000001");
        std::fs::create_dir(dir.join(&name)).unwrap();
        std::fs::write(dir.join(&name).join("config.toml"), policy(rate)).unwrap();
        name
    };
    let first = version(1, 10);
    symlink(&first, dir.join("..data")).unwrap();
    symlink("..data/config.toml", dir.join("config.toml")).unwrap();
    let path = dir.join("config.toml");
    let (_policies, api, capture, _watcher) = watched(&path);
    assert_eq!(rate(&api), 10.0);

    // The atomic writer: a new directory, a `..data_tmp` link to it renamed over `..data`,
    // the old directory removed. Twice, so the watch follows the swapped target.
    let mut old = first;
    for (n, rate_now) in [(2, 20), (3, 30)] {
        let new = version(n, rate_now);
        symlink(&new, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(dir.join(&old)).unwrap();
        let reloads = u64::from(n - 1);
        eventually("the swapped ConfigMap", || {
            applied(&api, &capture, f64::from(rate_now), reloads)
        });
        old = new;
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_to_another_directory_follows_its_target() {
    use std::os::unix::fs::symlink;

    // config/reliability.toml -> ../shared/a.toml, edited in place, then repointed.
    let dir = TempDir::new();
    std::fs::create_dir(dir.join("config")).unwrap();
    std::fs::create_dir(dir.join("shared")).unwrap();
    std::fs::write(dir.join("shared/a.toml"), policy(10)).unwrap();
    std::fs::write(dir.join("shared/b.toml"), policy(50)).unwrap();
    let path = dir.join("config/reliability.toml");
    symlink("../shared/a.toml", &path).unwrap();
    let (_policies, api, capture, _watcher) = watched(&path);

    // Only the target's directory sees this write.
    std::fs::write(dir.join("shared/a.toml"), policy(20)).unwrap();
    eventually("the edited target", || applied(&api, &capture, 20.0, 1));

    let temp = dir.join("config/.reliability.toml.new");
    symlink("../shared/b.toml", &temp).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    eventually("the repointed link", || applied(&api, &capture, 50.0, 2));
    // The new target is followed by name: its edits are seen.
    std::fs::write(dir.join("shared/b.toml"), policy(60)).unwrap();
    eventually("the new target's edit", || applied(&api, &capture, 60.0, 3));
}

/// The file's own directory deleted and made again: the watch on the old directory ended
/// with it, and nothing was watched any more (the change after it was never applied).
#[test]
fn a_directory_deleted_and_made_again_is_watched_again() {
    let dir = TempDir::new();
    let conf = dir.join("conf");
    std::fs::create_dir(&conf).unwrap();
    let path = conf.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (_policies, api, capture, _watcher) = watched(&path);

    std::fs::remove_dir_all(&conf).unwrap();
    std::thread::sleep(DEBOUNCE * 5);
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(&path, policy(30)).unwrap();
    eventually("the file in the new directory", || {
        applied(&api, &capture, 30.0, 1)
    });
    // And the new directory's later changes, by event.
    std::fs::write(&path, policy(40)).unwrap();
    eventually("its next change", || applied(&api, &capture, 40.0, 2));
}

/// Symlinks the watcher does not see change: the link's target directory deleted and made
/// again, then a link in a third directory (one the path leads through, watched by nobody)
/// repointed.
#[cfg(unix)]
#[test]
fn symlinks_changed_outside_the_watched_directories_are_followed() {
    use std::os::unix::fs::symlink;

    // etc/reliability.toml -> ../srv/current/r.toml, srv/current -> v1.
    let dir = TempDir::new();
    for sub in ["etc", "srv", "srv/v1", "srv/v2"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("srv/v1/r.toml"), policy(10)).unwrap();
    std::fs::write(dir.join("srv/v2/r.toml"), policy(20)).unwrap();
    symlink("v1", dir.join("srv/current")).unwrap();
    let path = dir.join("etc/reliability.toml");
    symlink("../srv/current/r.toml", &path).unwrap();
    let (_policies, api, capture, _watcher) = watched(&path);

    let temp = dir.join("srv/current.new");
    symlink("v2", &temp).unwrap();
    std::fs::rename(&temp, dir.join("srv/current")).unwrap();
    eventually("the repointed link", || applied(&api, &capture, 20.0, 1));

    std::fs::remove_dir_all(dir.join("srv/v2")).unwrap();
    std::fs::create_dir(dir.join("srv/v2")).unwrap();
    std::fs::write(dir.join("srv/v2/r.toml"), policy(30)).unwrap();
    eventually("the target's directory made again", || {
        applied(&api, &capture, 30.0, 2)
    });
    std::fs::write(dir.join("srv/v2/r.toml"), policy(40)).unwrap();
    eventually("its next change", || applied(&api, &capture, 40.0, 3));
}

#[test]
fn a_debounce_over_an_hour_is_a_typed_error() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let policies = Policies::new(&ReliabilityConfig::from_file(&path).unwrap()).unwrap();
    // It was accepted, and the watcher's thread died of an overflow at the first change.
    let err = policies
        .watcher(&path)
        .debounce(Duration::MAX)
        .start()
        .unwrap_err();
    assert!(
        matches!(err, WatchError::Debounce(d) if d == Duration::MAX),
        "{err}"
    );
    let hour = Duration::from_secs(3600);
    drop(policies.watcher(&path).debounce(hour).start().unwrap());
}

#[test]
fn a_bad_file_keeps_the_running_config_and_is_counted_then_a_good_one_applies() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (_policies, api, capture, _watcher) = watched(&path);
    let built_at = capture.gauge(LAST_SUCCESS);
    assert!(built_at > 1.0e9, "the gauge holds unix seconds: {built_at}");

    // Out of range, then not TOML: each refused once, and the running config stays.
    std::fs::write(&path, policy(0)).unwrap();
    eventually("the refused value", || capture.counter(ERROR) == 1);
    std::fs::write(&path, "[policy.api.rate_limit\nrate = ").unwrap();
    eventually("the refused text", || capture.counter(ERROR) == 2);
    assert_eq!(rate(&api), 10.0);
    assert_eq!(capture.counter(SUCCESS), 0);
    assert_eq!(capture.gauge(LAST_SUCCESS), built_at);

    std::fs::write(&path, policy(40)).unwrap();
    eventually("the good file", || applied(&api, &capture, 40.0, 1));
    assert_eq!(capture.counter(ERROR), 2);
    assert!(capture.gauge(LAST_SUCCESS) >= built_at);
}

#[test]
fn an_unchanged_text_is_not_reapplied() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (_policies, api, capture, _watcher) = watched(&path);

    // Touched with the same text: the watcher reads it, and has nothing to apply. A few
    // debounce periods let it do so before the real change below.
    std::fs::write(&path, policy(10)).unwrap();
    std::thread::sleep(DEBOUNCE * 5);
    std::fs::write(&path, policy(20)).unwrap();
    eventually("the changed text", || applied(&api, &capture, 20.0, 1));
    std::thread::sleep(DEBOUNCE * 2);
    assert_eq!(capture.counter(SUCCESS), 1);
    assert_eq!(capture.counter(ERROR), 0);
}

#[test]
fn dropping_the_watcher_stops_watching() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (_policies, api, capture, watcher) = watched(&path);
    std::fs::write(&path, policy(20)).unwrap();
    eventually("the rewrite", || applied(&api, &capture, 20.0, 1));

    drop(watcher); // returns once the watcher's thread has ended
    std::fs::write(&path, policy(30)).unwrap();
    std::thread::sleep(DEBOUNCE * 5);
    assert_eq!(rate(&api), 20.0);
    assert_eq!(capture.counter(SUCCESS), 1);
}

#[test]
fn a_directory_that_does_not_exist_is_a_typed_error() {
    let dir = TempDir::new();
    let policies = Policies::new(&ReliabilityConfig::from_toml(&policy(10)).unwrap()).unwrap();
    let missing = dir.join("no-such-dir").join("reliability.toml");
    let err = policies.watch(&missing).unwrap_err();
    assert!(
        matches!(&err, WatchError::Watch { path, .. } if path == &dir.join("no-such-dir")),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn sighup_outside_a_runtime_is_a_typed_error_not_a_panic() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let policies = Policies::new(&ReliabilityConfig::from_file(&path).unwrap()).unwrap();
    let err = policies.watcher(&path).sighup(true).start().unwrap_err();
    assert!(matches!(err, WatchError::NoRuntime), "{err}");
    // In a runtime without IO (no signal driver): the same error, no panic.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let err = runtime
        .block_on(async { policies.watcher(&path).sighup(true).start() })
        .unwrap_err();
    assert!(matches!(err, WatchError::NoRuntime), "{err}");
}

/// The one test that raises SIGHUP: only after its handler is installed (else the signal
/// would end the test process).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn sighup_reapplies_the_file_even_when_unchanged() {
    let dir = TempDir::new();
    let path = dir.join("reliability.toml");
    std::fs::write(&path, policy(10)).unwrap();
    let (policies, api, capture) = built(&path);
    let _watcher = policies
        .watcher(&path)
        .debounce(DEBOUNCE)
        .sighup(true)
        .start()
        .unwrap();

    // Changed by hand (a game day): the file has not changed, so only SIGHUP restores it.
    let by_hand = ReliabilityConfig::from_toml(&policy(99)).unwrap();
    api.reconfigure(&by_hand.policy["api"]).unwrap();
    assert_eq!(rate(&api), 99.0);

    // The shell's own `kill`: no libc binding needed, and no procps on a minimal machine.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", std::process::id())])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    while !applied(&api, &capture, 10.0, 1) {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for SIGHUP");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(capture.counter(SUCCESS), 1);
}
