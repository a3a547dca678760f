//! Small helpers shared by components.
