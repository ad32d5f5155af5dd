//! The pure protocol core: no sockets, threads or files. Bytes in, replies out; the time of day
//! behind a trait; every limit with its default. The server and the client tools build on it;
//! it imports from nothing else in the crate.

pub mod address;
pub mod clock;
pub mod codec;
pub mod config;
pub mod protocol;
pub mod responder;
pub mod service;
