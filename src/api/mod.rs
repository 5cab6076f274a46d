//! The adapters: the only code that knows gRPC. They validate requests, call
//! the [`Engine`](crate::engine::Engine) and map its errors.

mod auth;
mod convert;
mod go_model;
mod grpc;
mod limits;
mod policy;
pub mod proto;
mod rest;
mod serve;
mod server;
mod status;
mod tls_listener;

pub use grpc::GrpcService;
pub use limits::ServerLimits;
pub use server::{Server, ServerHandle};
pub use status::{code_of, rest_codes};
