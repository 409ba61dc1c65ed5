//! rco-plugins: links every plugin crate so that their `inventory` registrations reach the
//! binary (the linker drops crates that nothing references).
//!
//! # Design
//! One `pub use` per plugin crate; [`link`] is called once by the binary so that the crates
//! are referenced whatever the linker decides.

pub use rco_plugin_burn as burn;
pub use rco_plugin_openai as openai;
pub use rco_plugin_process as process;
pub use rco_plugin_quickstart as quickstart;
pub use rco_plugin_verify as verify;

/// Keeps every plugin crate linked; call it once before reading the registry.
pub fn link() {
    std::hint::black_box((
        rco_plugin_burn::config::placement as fn(_, _, _) -> _,
        rco_plugin_quickstart::tasks::solve as fn(&str, &str) -> _,
        rco_plugin_openai::config::parse_retry_after as fn(&str) -> _,
        rco_plugin_verify::math::verdict as fn(bool, bool) -> _,
        rco_plugin_process::protocol::Request::id as fn(&_) -> &str,
    ));
}
