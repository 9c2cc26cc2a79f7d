//! A refused request ([`Rejection`]): the one error type every `CCM_POST` step returns, with the
//! reason a person reads in the log, the rejection table and the answer's body.

/// A refused request: the reason goes to the log, the rejection table and the 403 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    /// The endpoint, once the header was read.
    pub endpoint: Option<String>,
    /// A fault of ours (database), answered 500 rather than 403.
    pub internal: bool,
    /// Answered as a real MP answers it: HTTP 200 with an empty body, the message dropped (the
    /// reason is still logged and recorded, so a person can see why nothing arrived).
    pub quiet: bool,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Rejection {
        Rejection {
            reason: reason.into(),
            endpoint: None,
            internal: false,
            quiet: false,
        }
    }

    pub fn internal(reason: impl Into<String>) -> Rejection {
        Rejection {
            internal: true,
            ..Rejection::new(reason)
        }
    }

    /// The same refusal answered 200 with an empty body (see [`Rejection::quiet`]); a fault of
    /// ours stays a 500.
    pub fn quietly(mut self) -> Rejection {
        self.quiet = !self.internal;
        self
    }

    /// Names the endpoint, unless an earlier step already did.
    pub fn at(mut self, endpoint: &str) -> Rejection {
        self.endpoint.get_or_insert_with(|| endpoint.to_string());
        self
    }
}

macro_rules! rejection_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Rejection {
            fn from(e: $t) -> Rejection {
                Rejection::new(e.to_string())
            }
        }
    )*};
}
rejection_from!(
    super::envelope::EnvelopeError,
    super::messages::XmlError,
    super::verify::VerifyError
);
