//! The code rasn-compiler generated from the ITU-T modules; see each file's header. Never edited
//! by hand: `h323-asn1/generate/` rewrites this folder except this file.

pub mod h225;
pub mod h235;
pub mod h245;
