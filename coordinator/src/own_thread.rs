//! The hub's packet thread: one thread with a single-threaded runtime of its own for the
//! packet paths (the relay and the hub's own tunnel). A wake-up per datagram that also
//! crosses the API runtime's threads costs more than the datagram: profiling showed the
//! relay mostly in task switches, and its own thread nearly doubled relayed throughput.
//! The hub's tunnel shares that thread, because every datagram it sends or receives goes
//! through the relay: on one thread the hand-over is a function call away, not a task
//! switch (profiling the public URL under load showed the two threads waking each other
//! for most of their time).

/// Starts the thread named `name` and returns its runtime's handle; tasks spawned on it
/// run there. The thread lives as long as the process.
///
/// # Errors
/// When the runtime or the thread cannot be made.
pub fn runtime(name: &str) -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}
