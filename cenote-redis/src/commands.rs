//! What a command does to a connection's session, read from its name:
//! whether it opens or ends a `MULTI`, watches keys, changes the database
//! or the client name, turns the connection into a subscriber, or blocks
//! (and for how long).

use std::time::Duration;

use redis::{Arg, Cmd};

/// A command's effect on the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    Multi,
    /// `EXEC` or `DISCARD`: ends a `MULTI` and unwatches.
    EndMulti,
    Watch,
    Unwatch,
    Select,
    SetName,
    /// `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` or `MONITOR`: the connection
    /// is no longer a plain request-reply one.
    Subscribe,
}

/// The command's name, upper-cased (and the subcommand for `CLIENT`).
fn name(cmd: &Cmd) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(b) => Some(b.to_ascii_uppercase()),
        Arg::Cursor => None,
    });
    (args.next().unwrap_or_default(), args.next())
}

pub(crate) fn effect(cmd: &Cmd) -> Effect {
    let (name, sub) = name(cmd);
    match name.as_slice() {
        b"MULTI" => Effect::Multi,
        b"EXEC" | b"DISCARD" => Effect::EndMulti,
        b"WATCH" => Effect::Watch,
        b"UNWATCH" => Effect::Unwatch,
        b"SELECT" | b"SWAPDB" => Effect::Select,
        b"CLIENT" if sub.as_deref() == Some(b"SETNAME") => Effect::SetName,
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"MONITOR" => Effect::Subscribe,
        _ => Effect::None,
    }
}

/// How long a blocking command may block (`None`: not a blocking
/// command; `Some(None)`: blocks forever).
pub(crate) fn block_time(cmd: &Cmd) -> Option<Option<Duration>> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(b) => Some(b),
            Arg::Cursor => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    let secs = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<f64>().ok();
    let millis = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<u64>().ok();
    let forever_if_zero = |d: Duration| if d.is_zero() { None } else { Some(d) };
    match name.as_slice() {
        // The timeout in seconds is the last argument.
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BZPOPMIN" | b"BZPOPMAX" => {
            let s = secs(args.last()?)?;
            Some(forever_if_zero(Duration::from_secs_f64(s.max(0.0))))
        }
        // The timeout in seconds comes first.
        b"BLMPOP" | b"BZMPOP" => {
            let s = secs(args.get(1)?)?;
            Some(forever_if_zero(Duration::from_secs_f64(s.max(0.0))))
        }
        // BLOCK milliseconds, anywhere among the options.
        b"XREAD" | b"XREADGROUP" => {
            let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"BLOCK"))?;
            let ms = millis(args.get(at + 1)?)?;
            Some(forever_if_zero(Duration::from_millis(ms)))
        }
        // WAIT numreplicas timeout-ms; WAITAOF numlocal numreplicas timeout-ms.
        b"WAIT" | b"WAITAOF" => {
            let ms = millis(args.last()?)?;
            Some(forever_if_zero(Duration::from_millis(ms)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_block_times() {
        assert_eq!(effect(&redis::cmd("multi")), Effect::Multi);
        assert_eq!(
            effect(redis::cmd("CLIENT").arg("setname").arg("x")),
            Effect::SetName
        );
        assert_eq!(effect(redis::cmd("CLIENT").arg("ID")), Effect::None);
        assert_eq!(effect(redis::cmd("subscribe").arg("c")), Effect::Subscribe);
        assert_eq!(block_time(redis::cmd("GET").arg("k")), None);
        assert_eq!(
            block_time(redis::cmd("BLPOP").arg("a").arg("b").arg(1.5)),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(block_time(redis::cmd("BLPOP").arg("a").arg(0)), Some(None));
        assert_eq!(
            block_time(
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(250)
                    .arg("STREAMS")
                    .arg("s")
                    .arg("$")
            ),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(
            block_time(redis::cmd("BLMPOP").arg(2).arg(1).arg("k").arg("LEFT")),
            Some(Some(Duration::from_secs(2)))
        );
    }
}
