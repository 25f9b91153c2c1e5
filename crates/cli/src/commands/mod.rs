pub mod ca;
pub mod certificate;
pub mod renew;
pub mod server;
pub mod token;
