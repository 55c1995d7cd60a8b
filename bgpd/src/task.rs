//! Task handles that cancel their task when dropped: the shared [`twill_utils::task`],
//! re-exported where the speaker's modules have always found it.

pub use twill_utils::task::TaskGuard;
