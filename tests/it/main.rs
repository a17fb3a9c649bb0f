//! Integration tests, compiled into one binary to keep link time down.

mod validate;
mod cli;
mod store;
