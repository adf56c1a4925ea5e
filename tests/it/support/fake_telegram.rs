//! Placeholder: the fake Bot API server lands here.
