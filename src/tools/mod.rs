//! The client tools behind `jam`: the client, its reply parser, the load generator and the
//! grader. They build on the protocol core and never run the server.

pub mod bench;
pub mod check;
pub mod client;
pub mod reply;
