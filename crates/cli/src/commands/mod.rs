pub mod ca;
pub mod certificate;
