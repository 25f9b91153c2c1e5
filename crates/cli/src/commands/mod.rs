pub mod agent;
pub mod ca;
pub mod certificate;
pub mod named;
pub mod node;
pub mod renew;
pub mod server;
pub mod token;
