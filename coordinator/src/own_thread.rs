//! A task on a thread and single-threaded runtime of its own, for the hub's packet paths
//! (the relay, the hub's own tunnel): a wake-up per datagram that also crosses the API
//! runtime's threads costs more than the datagram. Profiling showed the relay mostly in
//! task switches; its own thread nearly doubled relayed throughput.

use std::future::Future;

/// Runs `task()` to completion on a new thread named `name` with its own runtime.
///
/// # Errors
/// When the runtime or the thread cannot be made.
pub fn spawn<F, Fut>(name: &str, task: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(task()))
}
