//! How much session state a connection sheds before its next borrower.

/// What a connection's reset runs before it is lent again.
///
/// The reset is sent at checkout without waiting for its answer: the
/// borrower's first request follows it on the socket, so it costs the
/// borrower no round trip, only the server's work. Its answer is read
/// before that request's result is returned; a reset that failed marks the
/// connection broken (destroyed when given back).
///
/// The default is [`Reset::Rollback`]: the next borrower never inherits a
/// transaction, and a pool whose borrowers open none pays nothing (as
/// HikariCP rolls back only a connection whose commit state is dirty).
/// Session settings, temporary tables, `LISTEN` and advisory locks do
/// carry over, as they do in deadpool-postgres, pgxpool and HikariCP by
/// default; [`Reset::Clean`] clears them too, at the price of a few
/// server statements on every checkout of a used connection, which on a
/// machine that also runs the server slows short queries several times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reset {
    /// Nothing: the next borrower may see what the last one left. A
    /// connection returned inside a transaction is still destroyed.
    None,
    /// `ROLLBACK`, after the borrower sent SQL with the word `BEGIN` or
    /// `START` in it (a transaction block opened with raw SQL ends).
    #[default]
    Rollback,
    /// `ROLLBACK`, then `CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT;
    /// RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD
    /// TEMP; DISCARD SEQUENCES` and `DEALLOCATE` of every SQL-level
    /// prepared statement; the pool's own statements stay. After any use.
    Clean,
    /// `ROLLBACK`, then `DISCARD ALL` (the statement cache is emptied too).
    DiscardAll,
    /// `ROLLBACK`, then this SQL (one or more statements).
    Custom(String),
}

/// Ends a transaction the last borrower opened with raw SQL (outside one,
/// it only warns).
pub(crate) const ROLLBACK: &str = "ROLLBACK";

/// [`Reset::Clean`]'s statements, one simple query.
pub(crate) const CLEAN: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
    UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; \
    DO $cenote$ DECLARE s record; BEGIN \
    FOR s IN SELECT name FROM pg_prepared_statements WHERE from_sql LOOP \
    EXECUTE format('DEALLOCATE %I', s.name); END LOOP; END $cenote$";

/// [`Reset::DiscardAll`]'s statement: alone in its query, since `DISCARD
/// ALL` cannot run inside the implicit transaction of a multi-statement
/// query.
pub(crate) const DISCARD_ALL: &str = "DISCARD ALL";

impl Reset {
    /// The queries to send after the rollback, each as one simple query.
    pub(crate) fn statements(&self) -> Option<&str> {
        match self {
            Reset::None | Reset::Rollback => None,
            Reset::Clean => Some(CLEAN),
            Reset::DiscardAll => Some(DISCARD_ALL),
            Reset::Custom(sql) => Some(sql),
        }
    }
}

/// Whether statements are named and prepared once per connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Statements {
    /// Named statements, each prepared once per connection and kept
    /// ([`Client::prepare_cached`](crate::Client::prepare_cached)).
    #[default]
    Cached,
    /// No named statement is ever sent, for PgBouncer in transaction mode:
    /// queries run as unnamed statements (tokio-postgres's `query_typed`),
    /// so each parameter's type is given with it
    /// ([`Client::query_typed`](crate::Client::query_typed)), and
    /// [`Client::prepare_cached`](crate::Client::prepare_cached) and the
    /// `&str` query methods with parameters return
    /// [`Error::NamedStatementsOff`](crate::Error::NamedStatementsOff).
    Unnamed,
}
