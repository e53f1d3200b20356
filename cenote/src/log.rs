//! cenote's log lines: `tracing` events with the `tracing` feature (on by
//! default), nothing at all without it. Every line goes through these
//! macros, so the crate builds and behaves the same either way; without
//! the feature the arguments are type-checked but never evaluated.

#[cfg(feature = "tracing")]
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {
        ::tracing::$level!($($arg)+)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{
        if false {
            $crate::log::swallow!($($arg)+);
        }
    }};
}

/// Without `tracing`: type-checks an event's arguments (fields, then the
/// format string and its arguments) so the variables they name count as
/// used.
#[cfg(not(feature = "tracing"))]
macro_rules! swallow {
    ($field:ident = %$value:expr, $($rest:tt)+) => {{
        let _ = &$value;
        $crate::log::swallow!($($rest)+)
    }};
    ($field:ident = $value:expr, $($rest:tt)+) => {{
        let _ = &$value;
        $crate::log::swallow!($($rest)+)
    }};
    ($field:ident = ?$value:expr, $($rest:tt)+) => {{
        let _ = &$value;
        $crate::log::swallow!($($rest)+)
    }};
    (?$field:ident, $($rest:tt)+) => {{
        let _ = &$field;
        $crate::log::swallow!($($rest)+)
    }};
    (%$field:ident, $($rest:tt)+) => {{
        let _ = &$field;
        $crate::log::swallow!($($rest)+)
    }};
    ($field:ident, $($rest:tt)+) => {{
        let _ = &$field;
        $crate::log::swallow!($($rest)+)
    }};
    ($($fmt:tt)+) => {{
        let _ = format_args!($($fmt)+);
    }};
}

macro_rules! error {
    ($($arg:tt)+) => { $crate::log::event!(error, $($arg)+) };
}

macro_rules! warning {
    ($($arg:tt)+) => { $crate::log::event!(warn, $($arg)+) };
}

#[allow(unused_macros)] // only the `tokio` pools log at debug level
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::event!(debug, $($arg)+) };
}

#[cfg(not(feature = "tracing"))]
pub(crate) use swallow;
#[allow(unused_imports)]
pub(crate) use {debug, error, event, warning};
