//! The failures users see, each with the one line and the hint the contract names.

/// A failure the CLI explains in its own words. Anything else is reported as
/// `[x] <context>: <cause>`.
#[derive(Debug, thiserror::Error)]
pub enum Fail {
    #[error("Agent not configured")]
    NotConfigured,
    #[error("Cannot connect to hub at {0}")]
    HubUnreachable(String),
    #[error("Share code not found, expired or revoked")]
    ShareNotFound,
    #[error("Invalid expires format. Use: 1h, 4h, 24h, 7d, etc.")]
    InvalidExpires,
    #[error("{0}")]
    Hub(String),
    #[error("{0}")]
    Usage(String),
    /// A local file or program failed; `what` says what was being done.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("The hub sent a key that the share code does not vouch for; refusing to connect")]
    ForgedSharer,
    #[error("The agent is not running")]
    NotRunning,
    #[error("Wrong password for the share's SSH key")]
    WrongSshPassword,
    #[error("This share does not offer SSH")]
    NoSsh,
    /// `share --public-name`: a live share holds the name (the hub's words).
    #[error("{0}")]
    NameTaken(String),
    /// `share --approve`: the sharer refused this join.
    #[error("The sharer denied this join")]
    JoinDenied,
    /// `share --revoke` ended the share here, but telling the hub failed (its words).
    #[error("{0}")]
    EndedHereOnly(String),
}

impl Fail {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Fail {
        let what = what.into();
        move |source| Fail::Io { what, source }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Fail::NotConfigured => Some("Run: connect up --auth-key KEY (once), then try again."),
            Fail::HubUnreachable(_) => Some(
                "Make sure the hub is running and accessible.\nCheck:\n  - Internet connection\n  - Hub URL is correct (--hub or CONNECT_HUB)\n  - Agent is authenticated: connect up",
            ),
            Fail::ShareNotFound => Some("Ask your teammate for a fresh code: connect share"),
            Fail::InvalidExpires => Some("Use valid format: connect share --expires 14d"),
            Fail::NotRunning => Some("Start it with: connect up"),
            Fail::WrongSshPassword => {
                Some("Ask your teammate for the password they gave `connect share --ssh`.")
            }
            Fail::NoSsh => Some("Ask your teammate to share with: connect share --ssh"),
            Fail::NameTaken(_) => {
                Some("Pick another with --public-name, or leave it out for a random one.")
            }
            Fail::EndedHereOnly(_) => Some(
                "The share is ended on this machine and its joiners are cut off; the running agent tells the hub when it can reach it.",
            ),
            Fail::JoinDenied => {
                Some("Ask your teammate to approve you: connect share --approve-join CODE NAME")
            }
            Fail::Hub(_) | Fail::Usage(_) | Fail::Io { .. } | Fail::ForgedSharer => None,
        }
    }
}
