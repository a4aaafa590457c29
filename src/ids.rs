//! Typed identifiers, so that a user id can never be passed where a unit id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! typed_id {
    ($name:ident, $what:literal) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses an id from client input or from a stored column.
            pub fn parse(s: &str) -> Result<Self, crate::AppError> {
                Uuid::from_str(s.trim())
                    .map(Self)
                    .map_err(|_| crate::AppError::invalid("id", concat!("not a valid ", $what, " id")))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

typed_id!(AgencyId, "agency");
typed_id!(UnitId, "unit");
typed_id!(UserId, "user");
typed_id!(TemplateId, "template");
typed_id!(AssessmentId, "assessment");
typed_id!(CommentId, "comment");
