//! The HTTP gateway (in progress).
